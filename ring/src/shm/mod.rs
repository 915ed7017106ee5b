//! POSIX shared-memory segments: create, open, role leases, leaving.
//!
//! This module owns the mapping and the file descriptor; it hands the checked
//! region to [`crate::spsc`] through [`MemShared`](crate::mem::MemShared)
//! and never touches records.
//!
//! - [`lease`]: the kernel-held locks on bytes 0, 1 (the producer's and the
//!   consumer's role) and 2 (the name lock) of the segment file.
//! - [`segment`]: one file: exclusive create (mode 0600, every page
//!   preallocated, the header published by one Release store of the magic),
//!   open (waiting for a creator that is alive; checking type, owner, mode
//!   and allocation before trusting a byte), whether the name still refers
//!   to it, removal of stale names, `/dev/shm` scans.
//! - [`lifecycle`]: every lifecycle decision (create, wait for the creator,
//!   take a role and confirm the name, leave, reclaim, clean), generic over
//!   a [`Namespace`] of file and lock operations; [`Posix`] is the one that
//!   ships, the models crate runs the same functions over an in-memory one.
//! - [`endpoint`]: the two sides: taking a role, blocking calls, leaving.
//! - [`mpsc`]: the same for MPSC segments: producers in slots, the consumer
//!   and its [`Liveness`](crate::mpsc::Liveness) over the slot leases.
//! - [`temp_name`]: a unique name removed when it goes out of scope.
//!
//! The lifecycle rules (who waits for whom, who removes the name and when)
//! are written in `docs/LAYOUT.md` for peers in other languages.
//!
//! ```
//! use ringproof::shm::{OpenMode, ShmConsumer, ShmProducer};
//! # let feed = ringproof::shm::TempName::new("doc-feed");
//! # let feed = feed.name();
//!
//! let mut tx = ShmProducer::new(feed, OpenMode::CreateOrOpen { capacity: 1 << 20 })?;
//! let mut grant = tx.reserve(5)?; // zero-copy: write in place
//! grant.copy_from_slice(b"hello");
//! grant.commit(); // the single Release store
//! tx.close()?;
//!
//! let mut rx = ShmConsumer::new(feed, OpenMode::Open)?;
//! let msg = rx.read_blocking(None)?; // &[u8] in place
//! assert_eq!(&*msg, b"hello");
//! msg.release(); // gives the bytes back
//! # Ok::<(), ringproof::shm::ShmError>(())
//! ```

use std::fmt;
use std::string::{String, ToString};

use nix::errno::Errno;

use crate::spsc;
use crate::validate::AttachError;

pub mod endpoint;
pub mod lease;
pub mod lifecycle;
pub mod mpsc;
pub mod segment;
pub mod temp_name;

pub use crate::layout::RingKind;
pub use endpoint::{Claim, OpenMode, ShmConsumer, ShmProducer, View, claim};
pub use lease::{
    CONSUMER_LOCK_BYTE, Lease, NAME_LOCK_BYTE, PRODUCER_LOCK_BYTE, SLOT_LOCK_BASE, slot_lock_byte,
};
pub use lifecycle::{Namespace, Removal};
pub use mpsc::{
    MpscClaim, MpscInspection, ShmMpscConsumer, ShmMpscProducer, SlotLeases, SlotState,
};
pub use segment::{Entry, Inspection, Posix, PosixMpsc, Segment, list, remove_stale, scan, unlink};
pub use temp_name::TempName;

/// A side of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The writing side.
    Producer,
    /// The reading side.
    Consumer,
}

impl Role {
    /// The other side.
    pub fn other(self) -> Role {
        match self {
            Role::Producer => Role::Consumer,
            Role::Consumer => Role::Producer,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
        })
    }
}

/// Why a shared-memory operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShmError {
    /// The name is empty, too long, or holds `/` (other than first) or NUL.
    InvalidName(String),
    /// The capacity is not a power of two in the accepted range.
    InvalidCapacity(u64),
    /// No segment has this name.
    NotFound(String),
    /// A segment with this name exists already.
    AlreadyExists(String),
    /// The OS refused access (mode, owner).
    PermissionDenied(String),
    /// Another live process holds this role.
    RoleTaken(Role),
    /// `/dev/shm` has no room for the segment.
    NoSpace {
        /// Bytes the segment needs.
        needed: u64,
    },
    /// The segment's header is invalid.
    Attach(AttachError),
    /// A ring operation failed.
    Ring(spsc::Error),
    /// A blocking call waited its whole timeout.
    TimedOut,
    /// The producer went away without closing the ring (after every committed
    /// message was delivered).
    PeerDied(Role),
    /// Another OS error, with what was being done.
    Os(OsError),
    /// Something that is not a segment has the name.
    NotASegment {
        /// Normalised name.
        name: String,
        /// What it is ("a directory", "a symbolic link", "a FIFO", …).
        what: &'static str,
    },
    /// The segment file is not one this user can trust: another user owns
    /// it, or its mode lets other users in.
    Untrusted {
        /// Normalised name.
        name: String,
        /// Which check failed.
        reason: String,
    },
    /// The segment file has holes: writing there could kill us with `SIGBUS`.
    NotPreallocated {
        /// Normalised name.
        name: String,
        /// Size of the file.
        size: u64,
        /// Bytes allocated to it.
        allocated: u64,
    },
    /// The segment was never initialised and no process is initialising it
    /// (its creator died): `ringproof clean --name` removes it.
    NeverInitialised(String),
    /// The segment holds another kind of ring than the one asked for.
    WrongKind {
        /// Normalised name.
        name: String,
        /// The kind its header names.
        found: RingKind,
        /// The kind asked for.
        expected: RingKind,
    },
    /// Every producer slot of the MPSC segment is held by a live process.
    SlotsTaken {
        /// The segment's producer slots.
        max: u32,
    },
    /// The capacity or the producer count is not one an MPSC segment accepts.
    InvalidMpsc {
        /// The capacity asked for.
        capacity: u64,
        /// The producer slots asked for.
        producers: u32,
    },
    /// The MPSC segment's header is invalid.
    MpscAttach(crate::mpsc::validate::AttachError),
    /// An MPSC side could not be made.
    MpscOpen(crate::mpsc::OpenError),
    /// An MPSC push failed.
    MpscPush(crate::mpsc::PushError),
    /// An MPSC read failed.
    MpscRead(crate::mpsc::ReadError),
}

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShmError::InvalidName(name) => write!(
                f,
                "invalid segment name {name:?}: use 1 to 255 characters, no '/' except a leading one, no NUL"
            ),
            ShmError::InvalidCapacity(cap) => write!(
                f,
                "invalid ring size {cap}: must be a power of two from {} to {} bytes",
                crate::layout::MIN_CAPACITY,
                crate::layout::MAX_CAPACITY
            ),
            ShmError::NotFound(name) => write!(f, "no shared-memory segment named {name}"),
            ShmError::AlreadyExists(name) => write!(f, "segment {name} exists already"),
            ShmError::PermissionDenied(name) => write!(f, "permission denied for segment {name}"),
            ShmError::RoleTaken(role) => {
                write!(f, "the {role} role is held by another live process")
            }
            ShmError::NoSpace { needed } => write!(
                f,
                "not enough space in /dev/shm for a {needed}-byte segment (hint: use a smaller ring, or enlarge /dev/shm, e.g. docker run --shm-size=256m)"
            ),
            ShmError::Attach(e) => write!(f, "invalid segment: {e}"),
            ShmError::Ring(e) => e.fmt(f),
            ShmError::TimedOut => f.write_str("timed out"),
            ShmError::PeerDied(role) => write!(f, "the {role} died without closing the ring"),
            ShmError::Os(e) => e.fmt(f),
            ShmError::NotASegment { name, what } => {
                write!(f, "{name} is {what}, not a shared-memory segment")
            }
            ShmError::Untrusted { name, reason } => write!(
                f,
                "refusing segment {name}: {reason}; remove it if you did not create it"
            ),
            ShmError::NotPreallocated {
                name,
                size,
                allocated,
            } => write!(
                f,
                "refusing segment {name}: only {allocated} of its {size} bytes are allocated (it was not created by ringproof, which preallocates)"
            ),
            ShmError::NeverInitialised(name) => write!(
                f,
                "segment {name} was never initialised and its creator is gone (ringproof clean --name {name} removes it)"
            ),
            ShmError::WrongKind {
                name,
                found,
                expected,
            } => write!(
                f,
                "segment {name} holds an {found} ring, not an {expected} one (open it as {})",
                found.name()
            ),
            ShmError::SlotsTaken { max } => write!(
                f,
                "all {max} producer slots of the MPSC ring are held by live processes"
            ),
            ShmError::InvalidMpsc {
                capacity,
                producers,
            } => write!(
                f,
                "invalid MPSC ring: {capacity} bytes for {producers} producers (a power of two from {} to {} bytes, 1 to {} producers)",
                crate::layout::MIN_CAPACITY,
                crate::mpsc::layout::MAX_CAPACITY,
                crate::mpsc::layout::MAX_SLOTS
            ),
            ShmError::MpscAttach(e) => write!(f, "invalid MPSC segment: {e}"),
            ShmError::MpscOpen(e) => e.fmt(f),
            ShmError::MpscPush(e) => e.fmt(f),
            ShmError::MpscRead(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ShmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShmError::Os(e) => Some(e),
            ShmError::Attach(e) => Some(e),
            ShmError::Ring(e) => Some(e),
            ShmError::MpscAttach(e) => Some(e),
            ShmError::MpscOpen(e) => Some(e),
            ShmError::MpscPush(e) => Some(e),
            ShmError::MpscRead(e) => Some(e),
            _ => None,
        }
    }
}

impl ShmError {
    /// The OS error `errno` of the call that was doing `what`.
    pub(crate) fn os(what: &'static str, errno: Errno) -> Self {
        ShmError::Os(OsError::new(what, errno as i32))
    }
}

crate::from_ring_errors!(ShmError);

impl From<spsc::Error> for ShmError {
    fn from(e: spsc::Error) -> Self {
        ShmError::Ring(e)
    }
}

/// An OS call that failed: what was being done, and the error number, kept
/// as this error's [`source`](std::error::Error::source) (a
/// [`std::io::Error`]).
#[derive(Debug)]
pub struct OsError {
    what: &'static str,
    source: std::io::Error,
}

impl OsError {
    /// Error number `errno` of the call that was doing `what`.
    pub fn new(what: &'static str, errno: i32) -> Self {
        OsError {
            what,
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    /// What was being done.
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The OS error number (`errno`).
    pub fn raw_os_error(&self) -> i32 {
        self.source.raw_os_error().unwrap_or(0)
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let desc = Errno::from_raw(self.raw_os_error()).desc();
        write!(f, "{}: {desc}", self.what)
    }
}

impl std::error::Error for OsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Checks a segment name and returns it with its leading `/`.
pub fn validate_name(name: &str) -> Result<String, ShmError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.len() > 255 || bare.contains('/') || bare.contains('\0') {
        return Err(ShmError::InvalidName(name.to_string()));
    }
    if bare == "." || bare == ".." {
        return Err(ShmError::InvalidName(name.to_string()));
    }
    let mut out = String::with_capacity(bare.len() + 1);
    out.push('/');
    out.push_str(bare);
    Ok(out)
}

pub(crate) fn os_error(name: &str, what: &'static str, errno: Errno) -> ShmError {
    match errno {
        Errno::ENOENT => ShmError::NotFound(name.to_string()),
        Errno::EEXIST => ShmError::AlreadyExists(name.to_string()),
        Errno::EACCES | Errno::EPERM => ShmError::PermissionDenied(name.to_string()),
        Errno::ENOSPC => ShmError::NoSpace { needed: 0 },
        Errno::EINVAL | Errno::ENAMETOOLONG => ShmError::InvalidName(name.to_string()),
        // `shm_open` opens with `O_NOFOLLOW`.
        Errno::ELOOP => ShmError::NotASegment {
            name: name.to_string(),
            what: "a symbolic link",
        },
        Errno::EISDIR => ShmError::NotASegment {
            name: name.to_string(),
            what: "a directory",
        },
        other => ShmError::os(what, other),
    }
}
