//! POSIX shared-memory segments: create, open, role leases, unlink.
//!
//! This module owns the mapping and the file descriptor; it hands the checked
//! region to [`crate::spsc`] through [`MemShared`] and never touches records.
//!
//! - **Names** are validated ([`validate_name`]) and normalised to `/name`.
//! - **Create** is exclusive (`O_CREAT | O_EXCL`, mode 0600); the creator
//!   claims its role *before* sizing the segment, preallocates every page with
//!   `posix_fallocate` (a full `/dev/shm` is an [`ShmError::NoSpace`] now,
//!   never a `SIGBUS` later) and writes the magic last, so an opener sees
//!   either a whole header or "not initialised yet" (it waits a little).
//! - **Open** checks the real size (`fstat`) before mapping, then runs
//!   [`attach`] on the mapping.
//! - **Roles**: one producer and one consumer at a time, each an
//!   open-file-description write lock (`F_OFD_SETLK`) on one byte of the
//!   segment file ([`PRODUCER_LOCK_BYTE`], [`CONSUMER_LOCK_BYTE`]). The kernel
//!   drops the lock when the holder's descriptor closes, including when the
//!   process dies, so a dead side's role is free again. Each claim bumps the
//!   role's generation word in the header.
//! - **Unlink**: the side that leaves last removes the name, but only when the
//!   ring is closed and drained: a segment still holding messages stays for a
//!   consumer to come (`ringproof clean` removes it by hand).
#![allow(clippy::disallowed_types)] // generation words are bumped here, outside the protocol.

use std::ffi::c_void;
use std::fmt;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::string::{String, ToString};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::vec::Vec;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap, shm_open, shm_unlink};
use nix::sys::stat::{Mode, fstat};
use zerocopy::IntoBytes;

use crate::layout::{HEADER_SIZE, Header, MAGIC, capacity_ok, max_message, segment_size};
use crate::spsc::{self, Consumer, Producer, Read};
use crate::sync::{MemShared, Ordering, Shared};
use crate::validate::{AttachError, attach};

/// Byte of the segment file locked by the producer.
pub const PRODUCER_LOCK_BYTE: i64 = 0;
/// Byte of the segment file locked by the consumer.
pub const CONSUMER_LOCK_BYTE: i64 = 1;
/// How long an opener waits for a creator to finish initialising.
const INIT_WAIT: Duration = Duration::from_secs(2);
/// Longest single park in the blocking calls; between parks they check
/// whether the peer is still alive.
const PARK: Duration = Duration::from_millis(50);

/// A side of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The writing side.
    Producer,
    /// The reading side.
    Consumer,
}

impl Role {
    fn lock_byte(self) -> i64 {
        match self {
            Role::Producer => PRODUCER_LOCK_BYTE,
            Role::Consumer => CONSUMER_LOCK_BYTE,
        }
    }
    fn other(self) -> Role {
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
    /// The producer went away without closing the ring (after every committed
    /// message was delivered).
    PeerDied(Role),
    /// Another OS error, with what was being done.
    Os(&'static str, Errno),
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
            ShmError::PeerDied(role) => write!(f, "the {role} died without closing the ring"),
            ShmError::Os(what, errno) => write!(f, "{what}: {}", errno.desc()),
        }
    }
}

impl std::error::Error for ShmError {}

impl From<spsc::Error> for ShmError {
    fn from(e: spsc::Error) -> Self {
        ShmError::Ring(e)
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

fn os_error(name: &str, what: &'static str, errno: Errno) -> ShmError {
    match errno {
        Errno::ENOENT => ShmError::NotFound(name.to_string()),
        Errno::EEXIST => ShmError::AlreadyExists(name.to_string()),
        Errno::EACCES | Errno::EPERM => ShmError::PermissionDenied(name.to_string()),
        Errno::ENOSPC => ShmError::NoSpace { needed: 0 },
        Errno::EINVAL | Errno::ENAMETOOLONG => ShmError::InvalidName(name.to_string()),
        other => ShmError::Os(what, other),
    }
}

fn flock(kind: i32, byte: i64) -> libc::flock {
    // SAFETY: libc::flock is a plain C struct for which all-zero is valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = byte;
    lock.l_len = 1;
    lock.l_pid = 0; // required by F_OFD_* locks
    lock
}

/// Whether a live process holds `role` of the segment open as `fd`. Our own
/// OFD locks count too: they belong to other descriptions than `fd`'s.
fn role_held_on(fd: &OwnedFd, name: &str, role: Role) -> Result<bool, ShmError> {
    let mut lock = flock(libc::F_WRLCK, role.lock_byte());
    fcntl(fd.as_fd(), FcntlArg::F_OFD_GETLK(&mut lock))
        .map_err(|e| os_error(name, "fcntl(F_OFD_GETLK)", e))?;
    Ok(i32::from(lock.l_type) != libc::F_UNLCK)
}

/// A mapped segment: descriptor, mapping and checked header.
#[derive(Debug)]
pub struct Segment {
    name: String,
    fd: OwnedFd,
    map: NonNull<c_void>,
    len: usize,
}

// SAFETY: the mapping is process-wide memory; concurrent access to it goes
// through atomics and the ring protocol. The fd is an ordinary owned fd.
unsafe impl Send for Segment {}
// SAFETY: as above; `&Segment` exposes only raw pointers and fd queries.
unsafe impl Sync for Segment {}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `map`/`len` came from one successful mmap and are unmapped
        // once; no MemShared over it outlives the Arc that owns this Segment.
        let _ = unsafe { munmap(self.map, self.len) };
    }
}

/// What [`Segment::inspect`] reads from a live segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    /// Normalised name.
    pub name: String,
    /// Real size of the segment file.
    pub file_size: u64,
    /// Result of [`attach`] (`None` when it passed).
    pub error: Option<AttachError>,
    /// Data region size (0 when the header is invalid).
    pub capacity: u64,
    /// Largest message.
    pub max_message: u64,
    /// Released position.
    pub head: u64,
    /// Committed position.
    pub tail: u64,
    /// Committed bytes not yet released.
    pub used: u64,
    /// End-of-stream flag.
    pub closed: bool,
    /// Producer generation.
    pub producer_gen: u32,
    /// Consumer generation.
    pub consumer_gen: u32,
    /// Whether a live process holds the producer role.
    pub producer_held: bool,
    /// Whether a live process holds the consumer role.
    pub consumer_held: bool,
}

impl Inspection {
    /// No live process holds either role: nobody will ever use this segment
    /// unless a new process attaches.
    pub fn stale(&self) -> bool {
        !self.producer_held && !self.consumer_held
    }
}

impl Segment {
    fn map(name: String, fd: OwnedFd, len: usize) -> Result<Segment, ShmError> {
        let Some(length) = NonZeroUsize::new(len) else {
            return Err(ShmError::Attach(AttachError::TooSmall { len: 0 }));
        };
        // SAFETY: a fresh shared mapping of our own fd; no Rust object aliases it yet.
        let map = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                0,
            )
        }
        .map_err(|e| os_error(&name, "mmap", e))?;
        Ok(Segment { name, fd, map, len })
    }

    /// Opens an existing segment by name and checks its header (waiting up
    /// to two seconds for a creator that is still initialising it).
    pub fn open(name: &str) -> Result<Segment, ShmError> {
        let name = validate_name(name)?;
        let deadline = Instant::now() + INIT_WAIT;
        loop {
            let segment = Self::open_unchecked(&name)?;
            match segment.check() {
                Err(ShmError::Attach(AttachError::BadMagic { zero: true }))
                | Err(ShmError::Attach(AttachError::TooSmall { len: 0 }))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(segment),
            }
        }
    }

    /// Opens and maps a segment without checking its header (for `inspect`).
    /// An empty file maps nothing and reports `TooSmall`.
    fn open_unchecked(name: &str) -> Result<Segment, ShmError> {
        let fd = shm_open(name, OFlag::O_RDWR, Mode::empty())
            .map_err(|e| os_error(name, "shm_open", e))?;
        let stat = fstat(fd.as_fd()).map_err(|e| os_error(name, "fstat", e))?;
        let size = usize::try_from(stat.st_size).unwrap_or(0);
        if size < HEADER_SIZE {
            return Err(ShmError::Attach(AttachError::TooSmall { len: size }));
        }
        Self::map(name.to_string(), fd, size)
    }

    /// Runs [`attach`] on the mapping.
    fn check(&self) -> Result<(), ShmError> {
        // SAFETY: the mapping is readable for `len` bytes while self lives.
        unsafe { attach(self.map.as_ptr().cast(), self.len) }
            .map(|_| ())
            .map_err(ShmError::Attach)
    }

    /// Creates a fresh segment exclusively, claiming `role` before anything else.
    fn create(name: &str, capacity: u64, role: Role) -> Result<(Segment, Lease), ShmError> {
        let name = validate_name(name)?;
        if !capacity_ok(capacity) {
            return Err(ShmError::InvalidCapacity(capacity));
        }
        let len = segment_size(capacity);
        let fd = shm_open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| os_error(&name, "shm_open", e))?;
        let result = (|| {
            let lease = Lease::claim(&fd, role)?;
            let size =
                libc::off_t::try_from(len).map_err(|_| ShmError::InvalidCapacity(capacity))?;
            nix::unistd::ftruncate(fd.as_fd(), size)
                .map_err(|e| os_error(&name, "ftruncate", e))?;
            match nix::fcntl::posix_fallocate(fd.as_fd(), 0, size) {
                Ok(()) => {}
                Err(Errno::ENOSPC) => return Err(ShmError::NoSpace { needed: len }),
                Err(e) => return Err(os_error(&name, "posix_fallocate", e)),
            }
            let segment = Segment::map(name.clone(), fd, len as usize)?;
            segment.initialise(capacity);
            segment.bump_generation(role);
            Ok((segment, lease))
        })();
        if result.is_err() {
            let _ = shm_unlink(name.as_str());
        }
        result
    }

    /// Writes a fresh header, magic last.
    fn initialise(&self, capacity: u64) {
        let Some(header) = Header::new(capacity) else {
            return;
        };
        let bytes = header.as_bytes();
        let base: *mut u8 = self.map.as_ptr().cast();
        // SAFETY: the mapping is at least HEADER_SIZE bytes and nobody else
        // uses it yet (openers wait for the magic, written below).
        unsafe { std::ptr::copy_nonoverlapping(bytes[8..].as_ptr(), base.add(8), HEADER_SIZE - 8) };
        std::sync::atomic::fence(Ordering::Release);
        // SAFETY: as above; the magic goes last so that a non-zero magic
        // means a complete header.
        unsafe { std::ptr::copy_nonoverlapping(MAGIC.as_ptr(), base, 8) };
    }

    /// The checked view, for the protocol: what [`ShmProducer`] and
    /// [`ShmConsumer`] run over, for running the protocol over a wrapper
    /// (e.g. a crash-injection [`Shared`]) after [`claim`].
    pub fn shared(self: &Arc<Self>) -> Result<MemShared<Arc<Segment>>, ShmError> {
        // SAFETY: the mapping is readable for `len` bytes while self lives.
        let checked =
            unsafe { attach(self.map.as_ptr().cast(), self.len) }.map_err(ShmError::Attach)?;
        // SAFETY: the Arc clone keeps the mapping alive as long as the MemShared.
        Ok(unsafe { MemShared::new(checked, Arc::clone(self)) })
    }

    fn bump_generation(&self, role: Role) {
        if let Ok(checked) = {
            // SAFETY: the mapping is readable for `len` bytes while self lives.
            unsafe { attach(self.map.as_ptr().cast(), self.len) }
        } {
            // SAFETY: a temporary view over our own mapping, dropped at once.
            let shared = unsafe { MemShared::new(checked, ()) };
            // AcqRel: only the role holder bumps its generation; the survivor
            // reads it with Acquire to tell that its peer changed.
            shared
                .generation(role == Role::Producer)
                .fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Normalised name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a live process (this one included) holds `role`.
    pub fn role_held(&self, role: Role) -> Result<bool, ShmError> {
        role_held_on(&self.fd, &self.name, role)
    }

    /// Reads the header and the role leases.
    pub fn inspect(name: &str) -> Result<Inspection, ShmError> {
        let name = validate_name(name)?;
        let fd = shm_open(name.as_str(), OFlag::O_RDWR, Mode::empty())
            .map_err(|e| os_error(&name, "shm_open", e))?;
        let file_size = fstat(fd.as_fd())
            .map_err(|e| os_error(&name, "fstat", e))?
            .st_size as u64;
        let mut out = Inspection {
            name: name.clone(),
            file_size,
            error: None,
            capacity: 0,
            max_message: 0,
            head: 0,
            tail: 0,
            used: 0,
            closed: false,
            producer_gen: 0,
            consumer_gen: 0,
            producer_held: false,
            consumer_held: false,
        };
        out.producer_held = role_held_on(&fd, &name, Role::Producer)?;
        out.consumer_held = role_held_on(&fd, &name, Role::Consumer)?;
        if (file_size as usize) < HEADER_SIZE {
            out.error = Some(AttachError::TooSmall {
                len: file_size as usize,
            });
            return Ok(out);
        }
        let segment = Arc::new(Self::map(name, fd, file_size as usize)?);
        match segment.shared() {
            Err(ShmError::Attach(e)) => out.error = Some(e),
            Err(e) => return Err(e),
            Ok(shared) => {
                out.capacity = shared.capacity();
                out.max_message = max_message(out.capacity);
                // Acquire: pairs with the Release stores of the two sides; a snapshot.
                out.head = shared.head().load(Ordering::Acquire);
                // Acquire: as above.
                out.tail = shared.tail().load(Ordering::Acquire);
                out.used = out.tail.wrapping_sub(out.head);
                // Acquire: pairs with the Release store in `Producer::close`.
                out.closed = shared.closed().load(Ordering::Acquire) != 0;
                // Acquire: pairs with the bump in `bump_generation`.
                out.producer_gen = shared.generation(true).load(Ordering::Acquire);
                // Acquire: as above.
                out.consumer_gen = shared.generation(false).load(Ordering::Acquire);
            }
        }
        Ok(out)
    }
}

/// Removes a segment's name. Processes that have it mapped keep their mapping.
pub fn unlink(name: &str) -> Result<(), ShmError> {
    let name = validate_name(name)?;
    shm_unlink(name.as_str()).map_err(|e| os_error(&name, "shm_unlink", e))
}

/// Names (with a leading `/`) of every segment in `/dev/shm` that starts with
/// the ringproof magic.
pub fn list() -> Result<Vec<String>, ShmError> {
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| {
        ShmError::Os(
            "read_dir(/dev/shm)",
            Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        )
    })?;
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(file_name) = entry.file_name().into_string() else {
            continue;
        };
        let mut magic = [0u8; 8];
        let Ok(mut file) = std::fs::File::open(entry.path()) else {
            continue;
        };
        if std::io::Read::read_exact(&mut file, &mut magic).is_ok() && magic == MAGIC {
            out.push(std::format!("/{file_name}"));
        }
    }
    out.sort();
    Ok(out)
}

/// A held role: an OFD write lock on the role's byte, released on drop (or by
/// the kernel when the process dies).
#[derive(Debug)]
pub struct Lease {
    fd: OwnedFd,
    role: Role,
}

impl Lease {
    fn claim(fd: &OwnedFd, role: Role) -> Result<Lease, ShmError> {
        // A descriptor of its own: an OFD lock belongs to the open file
        // description, and `dup` shares it, so the lease outlives nothing but
        // its own fd.
        let fd = fd
            .try_clone()
            .map_err(|e| ShmError::Os("dup", Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        let lock = flock(libc::F_WRLCK, role.lock_byte());
        match fcntl(fd.as_fd(), FcntlArg::F_OFD_SETLK(&lock)) {
            Ok(_) => Ok(Lease { fd, role }),
            Err(Errno::EAGAIN) | Err(Errno::EACCES) => Err(ShmError::RoleTaken(role)),
            Err(e) => Err(ShmError::Os("fcntl(F_OFD_SETLK)", e)),
        }
    }

    /// The role held.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let lock = flock(libc::F_UNLCK, self.role.lock_byte());
        let _ = fcntl(self.fd.as_fd(), FcntlArg::F_OFD_SETLK(&lock));
    }
}

/// Opens `name`, creating it with `capacity` when absent. For a producer, a
/// segment that nobody holds and whose stream is closed and drained is
/// finished: it is removed and created afresh.
fn create_or_open(
    name: &str,
    capacity: u64,
    role: Role,
) -> Result<(Arc<Segment>, Lease), ShmError> {
    for _ in 0..3 {
        match Segment::create(name, capacity, role) {
            Ok((segment, lease)) => return Ok((Arc::new(segment), lease)),
            Err(ShmError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        match open_role(name, role) {
            Ok((segment, lease)) => {
                // A producer starts a new stream over a finished one; a
                // consumer must see that stream's end instead.
                if role == Role::Producer
                    && finished(&segment.shared()?)
                    && !segment.role_held(role.other())?
                {
                    drop(lease);
                    let _ = unlink(name);
                    continue;
                }
                return Ok((segment, lease));
            }
            Err(ShmError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ShmError::Os(
        "create_or_open: the name keeps changing",
        Errno::EAGAIN,
    ))
}

fn open_role(name: &str, role: Role) -> Result<(Arc<Segment>, Lease), ShmError> {
    let segment = Arc::new(Segment::open(name)?);
    let lease = Lease::claim(&segment.fd, role)?;
    segment.bump_generation(role);
    Ok((segment, lease))
}

/// How a shared-memory side is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the segment; fail if it exists.
    Create,
    /// Open an existing segment; fail if absent.
    Open,
    /// Create it if absent, else open it.
    CreateOrOpen,
}

fn acquire(
    name: &str,
    capacity: u64,
    role: Role,
    mode: OpenMode,
) -> Result<(Arc<Segment>, Lease), ShmError> {
    match mode {
        OpenMode::Create => {
            let (segment, lease) = Segment::create(name, capacity, role)?;
            Ok((Arc::new(segment), lease))
        }
        OpenMode::Open => open_role(name, role),
        OpenMode::CreateOrOpen => create_or_open(name, capacity, role),
    }
}

/// Takes `role` of `name` as [`ShmProducer::new`] and [`ShmConsumer::new`]
/// do (see [`OpenMode`]; `capacity` is used only when creating), and hands out
/// the segment and the lease instead of a ring side, so that a caller can run
/// [`Producer`] or [`Consumer`] over its own [`Shared`] wrapping
/// [`Segment::shared`]. The role is held while the [`Lease`] lives. Unlike the
/// `Shm*` types, nothing here removes the name: the caller does.
pub fn claim(
    name: &str,
    capacity: u64,
    role: Role,
    mode: OpenMode,
) -> Result<(Arc<Segment>, Lease), ShmError> {
    acquire(name, capacity, role, mode)
}

/// Whether the stream is closed and every message released.
fn finished<O>(shared: &MemShared<O>) -> bool {
    // Acquire: pairs with the Release store in `Producer::close`, after which
    // the final `tail` is visible.
    let closed = shared.closed().load(Ordering::Acquire) != 0;
    // Acquire: pairs with the producer's Release store of `tail`.
    let tail = shared.tail().load(Ordering::Acquire);
    // Acquire: pairs with the consumer's Release store of `head`.
    closed && shared.head().load(Ordering::Acquire) == tail
}

/// Removes the name when we leave last and nothing is left to read. A
/// segment the other side never attached to stays, so that a consumer that
/// comes late still finds the end of the stream.
fn leave(segment: &Arc<Segment>, role: Role, closed_and_drained: bool) {
    let other_came = segment
        .shared()
        // Acquire: pairs with the bump in `bump_generation`.
        .map(|shared| {
            shared
                .generation(role.other() == Role::Producer)
                .load(Ordering::Acquire)
                != 0
        })
        .unwrap_or(false);
    if closed_and_drained && other_came && !segment.role_held(role.other()).unwrap_or(true) {
        let _ = shm_unlink(segment.name.as_str());
    }
}

/// The producer side of a shared-memory ring; derefs to [`Producer`].
#[derive(Debug)]
pub struct ShmProducer {
    inner: Producer<MemShared<Arc<Segment>>>,
    segment: Arc<Segment>,
    lease: Option<Lease>,
}

impl ShmProducer {
    /// Takes the producer role of `name` (see [`OpenMode`]); `capacity` is
    /// used only when creating.
    pub fn new(name: &str, capacity: u64, mode: OpenMode) -> Result<Self, ShmError> {
        let (segment, lease) = acquire(name, capacity, Role::Producer, mode)?;
        let inner = Producer::new(segment.shared()?)?;
        if inner.is_closed() {
            return Err(ShmError::Ring(spsc::Error::Closed));
        }
        Ok(ShmProducer {
            inner,
            segment,
            lease: Some(lease),
        })
    }

    /// The mapped segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Copies `message` into the ring, waiting for room up to `timeout`
    /// (`None`: forever). A consumer that died leaves the ring full until a
    /// successor takes its role over, so this keeps waiting for one.
    pub fn push_blocking(
        &mut self,
        message: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(), ShmError> {
        loop {
            match self.inner.push(message) {
                Err(spsc::Error::Full) => {}
                other => return other.map_err(ShmError::Ring),
            }
            self.wait_room(message.len(), timeout)?;
        }
    }

    /// Waits up to `timeout` (`None`: forever) until a `len`-byte message
    /// fits; `Err(Ring(TimedOut))` when it passes. A dead consumer does not
    /// end the wait: a successor takes its role over and releases.
    pub fn wait_room(&mut self, len: usize, timeout: Option<Duration>) -> Result<(), ShmError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.inner.wait_writable(len, Some(park_slice(deadline)?))? {
                return Ok(());
            }
        }
    }

    /// Whether a consumer has ever attached and none holds the role now.
    pub fn consumer_gone(&self) -> Result<bool, ShmError> {
        // Acquire: pairs with the bump in `bump_generation`.
        let ever = self
            .inner
            .shared()
            .generation(false)
            .load(Ordering::Acquire)
            != 0;
        Ok(ever && !self.segment.role_held(Role::Consumer)?)
    }
}

impl std::ops::Deref for ShmProducer {
    type Target = Producer<MemShared<Arc<Segment>>>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for ShmProducer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl Drop for ShmProducer {
    fn drop(&mut self) {
        drop(self.lease.take());
        leave(&self.segment, Role::Producer, finished(self.inner.shared()));
    }
}

/// The next park's length: [`PARK`], or less before a deadline.
fn park_slice(deadline: Option<Instant>) -> Result<Duration, ShmError> {
    match deadline {
        None => Ok(PARK),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(ShmError::Ring(spsc::Error::TimedOut))
            } else {
                Ok(left.min(PARK))
            }
        }
    }
}

/// The consumer side of a shared-memory ring; derefs to [`Consumer`].
#[derive(Debug)]
pub struct ShmConsumer {
    inner: Consumer<MemShared<Arc<Segment>>>,
    segment: Arc<Segment>,
    lease: Option<Lease>,
}

impl ShmConsumer {
    /// Takes the consumer role of `name` (see [`OpenMode`]); `capacity` is
    /// used only when creating.
    pub fn new(name: &str, capacity: u64, mode: OpenMode) -> Result<Self, ShmError> {
        let (segment, lease) = acquire(name, capacity, Role::Consumer, mode)?;
        let inner = Consumer::new(segment.shared()?)?;
        Ok(ShmConsumer {
            inner,
            segment,
            lease: Some(lease),
        })
    }

    /// The mapped segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Whether a producer has ever attached and none holds the role now.
    pub fn producer_gone(&self) -> Result<bool, ShmError> {
        // Acquire: pairs with the bump in `bump_generation`.
        let ever = self.inner.shared().generation(true).load(Ordering::Acquire) != 0;
        Ok(ever && !self.segment.role_held(Role::Producer)?)
    }

    /// Waits up to `timeout` (`None`: forever) until [`Consumer::read`] would
    /// not return `Empty` (a message, or the end of stream);
    /// `Err(Ring(TimedOut))` when it passes. A producer that died without
    /// closing is `Err(PeerDied)` once every committed message has been read.
    pub fn wait_message(&mut self, timeout: Option<Duration>) -> Result<(), ShmError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.inner.wait_readable(Some(park_slice(deadline)?))? {
                return Ok(());
            }
            // The producer's last commit happens before its lease is
            // released, so re-check for a message after finding it gone.
            if self.producer_gone()? && !self.inner.wait_readable(Some(Duration::ZERO))? {
                return Err(ShmError::PeerDied(Role::Producer));
            }
        }
    }

    /// Waits up to `timeout` (`None`: forever) for the next message and
    /// reads it in place. End of stream is `Err(Ring(Closed))`; a producer
    /// that died without closing is `Err(PeerDied)` once every committed
    /// message has been read.
    pub fn read_blocking(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Read<'_, MemShared<Arc<Segment>>>, ShmError> {
        self.wait_message(timeout)?;
        self.inner.read().map_err(ShmError::Ring)
    }
}

impl std::ops::Deref for ShmConsumer {
    type Target = Consumer<MemShared<Arc<Segment>>>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for ShmConsumer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl Drop for ShmConsumer {
    fn drop(&mut self) {
        drop(self.lease.take());
        leave(&self.segment, Role::Consumer, finished(self.inner.shared()));
    }
}
