//! One segment file: create, open (waiting for its creator), checks of the
//! file itself (type, owner, mode, allocated size), the mapping, the header's
//! publication, and its name (whether the name still refers to this file).
//!
//! This module never runs the ring protocol: it hands the checked view to
//! [`super::endpoint`] and to `inspect`. It makes no lifecycle decision
//! either: [`Posix`] offers its operations as a [`Namespace`], and
//! [`super::lifecycle`] decides (the models run the same decisions over an
//! in-memory namespace).
//!
//! One file (~650 lines): the POSIX side of every segment operation
//! (file checks, mapping, publication, removal, scans) reads best beside the
//! checks it shares; the decisions live in `lifecycle.rs`.
#![allow(clippy::disallowed_types)] // the magic and the generation words live here, outside the protocol.

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::ptr::NonNull;
use std::string::{String, ToString};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};
use std::vec::Vec;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap, shm_open, shm_unlink};
use nix::sys::stat::{FileStat, Mode, fstat};
use zerocopy::IntoBytes;

use super::lease::{Lease, NameLock, any_role_held, role_held_on, slot_held_on};
use super::lifecycle::{self, FileId, Look, Namespace, Removal};
use super::{OsError, Role, ShmError, os_error, validate_name};
use crate::layout::{
    CONSUMER_GEN_OFFSET, HEADER_SIZE, Header, PRODUCER_GEN_OFFSET, RingKind, max_message,
    segment_size,
};
use crate::mem::MemShared;
use crate::mpsc::layout as mpsc_layout;
use crate::spsc::Words;
use crate::spsc::{self, Consumer};
use crate::sync::{NoHook, publish_magic_word};
use crate::sync::{Ordering, Shared, magic_published, publish_magic};
use crate::validate::{AttachError, attach};

/// How long an opener waits for the creator of a segment that is not
/// initialised yet once no process holds a role of it (a creator takes its
/// role right after creating the file). While a role is held, the creator
/// is alive and the opener waits for as long as it takes.
const INIT_WAIT: Duration = Duration::from_secs(2);
/// Between two looks at a segment that is being initialised.
const INIT_POLL: Duration = Duration::from_millis(1);

/// A mapped segment: descriptor, mapping, and the identity of its file.
#[derive(Debug)]
pub struct Segment {
    name: String,
    fd: OwnedFd,
    map: NonNull<c_void>,
    len: usize,
    /// `(st_dev, st_ino)` of the file, to tell whether the name still refers to it.
    id: (u64, u64),
    /// The protocol its magic names (checked by that protocol's attach
    /// before a `Segment` is handed out).
    kind: RingKind,
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
    /// What a side attaching now would find wrong with `head` and `tail`
    /// (`None` when they are consistent, or when the header is invalid).
    pub position_error: Option<spsc::Corruption>,
    /// Data region size (0 when the header is invalid).
    pub capacity: u64,
    /// Largest message.
    pub max_message: u64,
    /// Released position.
    pub head: u64,
    /// Committed position.
    pub tail: u64,
    /// Committed bytes not yet released (0 unless the positions are consistent).
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

    /// Whether the header and the positions are both valid.
    pub fn valid(&self) -> bool {
        self.error.is_none() && self.position_error.is_none()
    }
}

/// An entry of `/dev/shm` as [`scan`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A ringproof segment of this user (its name, with a leading `/`).
    Segment(String),
    /// Something that is not, or cannot be checked to be, one of ours.
    Skipped {
        /// Name with a leading `/`.
        name: String,
        /// Why it was skipped.
        reason: String,
    },
}

/// Names a file type for an error message.
fn file_kind(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR | libc::S_IFBLK => "a device",
        _ => "not a regular file",
    }
}

/// The checks on the file itself, before any byte of it is trusted: a
/// regular file, owned by our effective user, with no access for group or
/// others. A name another user created first (squatting) is refused.
fn check_file(name: &str, stat: &FileStat) -> Result<(), ShmError> {
    let mode = stat.st_mode;
    if mode & libc::S_IFMT != libc::S_IFREG {
        return Err(ShmError::NotASegment {
            name: name.to_string(),
            what: file_kind(mode),
        });
    }
    let euid = nix::unistd::geteuid().as_raw();
    if stat.st_uid != euid {
        return Err(ShmError::Untrusted {
            name: name.to_string(),
            reason: std::format!("it is owned by uid {}, not by uid {euid}", stat.st_uid),
        });
    }
    if mode & 0o077 != 0 {
        return Err(ShmError::Untrusted {
            name: name.to_string(),
            reason: std::format!(
                "its mode {:04o} lets other users in (ringproof creates 0600)",
                mode & 0o7777
            ),
        });
    }
    Ok(())
}

/// Every byte of the file is allocated: touching a hole of a file larger
/// than the room left in `/dev/shm` would kill us with `SIGBUS`.
fn check_allocated(name: &str, stat: &FileStat) -> Result<(), ShmError> {
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    let allocated = u64::try_from(stat.st_blocks)
        .unwrap_or(0)
        .saturating_mul(512);
    if allocated < size {
        return Err(ShmError::NotPreallocated {
            name: name.to_string(),
            size,
            allocated,
        });
    }
    Ok(())
}

fn file_id(stat: &FileStat) -> (u64, u64) {
    (stat.st_dev, stat.st_ino)
}

fn stat_fd(fd: &OwnedFd, name: &str) -> Result<FileStat, ShmError> {
    fstat(fd.as_fd()).map_err(|e| os_error(name, "fstat", e))
}

/// Opens `name` for reading and writing. `shm_open` adds `O_NOFOLLOW`;
/// `O_NONBLOCK` keeps a FIFO at the name from blocking the open (it is then
/// refused by [`check_file`]).
fn open_fd(name: &str) -> Result<OwnedFd, ShmError> {
    shm_open(name, OFlag::O_RDWR | OFlag::O_NONBLOCK, Mode::empty()).map_err(|e| match e {
        // glibc turns the kernel's EISDIR into EINVAL; the name itself was
        // validated, so look at what is there.
        Errno::EINVAL if is_directory(name) => ShmError::NotASegment {
            name: name.to_string(),
            what: "a directory",
        },
        e => os_error(name, "shm_open", e),
    })
}

/// Whether `/dev/shm/<name>` is a directory.
fn is_directory(name: &str) -> bool {
    std::path::Path::new("/dev/shm")
        .join(name.trim_start_matches('/'))
        .symlink_metadata()
        .is_ok_and(|m| m.is_dir())
}

/// The identity of the file `name` refers to now, `None` when there is none.
fn named_id(name: &str) -> Result<Option<(u64, u64)>, ShmError> {
    match shm_open(name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()) {
        Ok(fd) => Ok(Some(file_id(&stat_fd(&fd, name)?))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(os_error(name, "shm_open", e)),
    }
}

impl Segment {
    fn map(
        name: String,
        fd: OwnedFd,
        len: usize,
        id: (u64, u64),
        kind: RingKind,
    ) -> Result<Segment, ShmError> {
        if len < HEADER_SIZE {
            return Err(ShmError::Attach(AttachError::TooSmall { len }));
        }
        let Some(length) = NonZeroUsize::new(len) else {
            return Err(ShmError::Attach(AttachError::TooSmall { len }));
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
        Ok(Segment {
            name,
            fd,
            map,
            len,
            id,
            kind,
        })
    }

    /// Opens an existing segment by name and checks the file and its header.
    ///
    /// A segment whose creator has not published its header yet (empty, or
    /// magic still zero) is waited for: for as long as a live process holds
    /// one of its roles (the creator takes its role first), else for two
    /// seconds, after which it is [`ShmError::NeverInitialised`].
    pub fn open(name: &str) -> Result<Segment, ShmError> {
        let name = validate_name(name)?;
        lifecycle::open(&Posix, &name)
    }

    /// The kind of ring the segment `name` holds, from its magic, after the
    /// checks on the file itself (type, owner, mode); `None` while its
    /// header is not published (or it is not a ringproof segment).
    pub fn kind_of(name: &str) -> Result<Option<RingKind>, ShmError> {
        let name = validate_name(name)?;
        let fd = open_fd(&name)?;
        let stat = stat_fd(&fd, &name)?;
        check_file(&name, &stat)?;
        let size = usize::try_from(stat.st_size).unwrap_or(0);
        if size < HEADER_SIZE {
            return Ok(None);
        }
        let segment = Self::map(name, fd, size, file_id(&stat), RingKind::Spsc)?;
        Ok(segment.found_kind())
    }

    /// The kind the published magic names (`None`: not published, or no
    /// ringproof magic).
    fn found_kind(&self) -> Option<RingKind> {
        if !self.magic_published() {
            return None;
        }
        // Relaxed: the Acquire load in `magic_published` ordered the header;
        // the magic, once published, never changes.
        let word = self.magic_word().load(Ordering::Relaxed);
        RingKind::from_magic(&word.to_ne_bytes())
    }

    /// The kind of ring this segment holds.
    pub fn kind(&self) -> RingKind {
        self.kind
    }

    /// One look at `name`: checked and mapped, or still being initialised.
    /// A published header of another kind than `expected` is
    /// [`ShmError::WrongKind`].
    fn look(name: &str, expected: RingKind) -> Result<Look<Segment>, ShmError> {
        let fd = open_fd(name)?;
        let stat = stat_fd(&fd, name)?;
        check_file(name, &stat)?;
        let size = usize::try_from(stat.st_size).unwrap_or(0);
        if size == 0 {
            // The creator has not sized it yet.
            let creator_alive = any_role_held(&fd, name)?;
            return Ok(Look::Initialising { creator_alive });
        }
        if size < HEADER_SIZE {
            return Err(ShmError::Attach(AttachError::TooSmall { len: size }));
        }
        let mut segment = Self::map(name.to_string(), fd, size, file_id(&stat), expected)?;
        if !segment.magic_published() {
            let creator_alive = any_role_held(&segment.fd, name)?;
            return Ok(Look::Initialising { creator_alive });
        }
        match segment.found_kind() {
            Some(found) if found != expected => {
                return Err(ShmError::WrongKind {
                    name: name.to_string(),
                    found,
                    expected,
                });
            }
            // No ringproof magic: the attach of `expected` names the error.
            _ => segment.kind = expected,
        }
        // The creator allocates every page before it publishes the magic, so
        // a hole now is not a creator at work: refuse it before touching the
        // data region.
        check_allocated(name, &stat_fd(&segment.fd, name)?)?;
        segment.check()?;
        Ok(Look::Ready(segment))
    }

    /// The magic, as an atomic word: published once by the creator.
    fn magic_word(&self) -> &AtomicU64 {
        // The creator stores the magic atomically, openers load it atomically;
        // any other access follows an Acquire load that saw it published.
        // SAFETY: the mapping is page-aligned and at least HEADER_SIZE bytes,
        // so its first 8 bytes are an aligned u64 that lives as long as self.
        unsafe { AtomicU64::from_ptr(self.map.as_ptr().cast()) }
    }

    /// Whether the creator has published the header ([`magic_published`]:
    /// an Acquire load that pairs with `initialise`'s [`publish_magic`]).
    fn magic_published(&self) -> bool {
        magic_published(self.magic_word())
    }

    /// Runs the attach of the segment's kind on the mapping.
    fn check(&self) -> Result<(), ShmError> {
        match self.kind {
            RingKind::Spsc => self.checked_view(()).map(|_| ()),
            RingKind::Mpsc => self.checked_mpsc_view(()).map(|_| ()),
        }
    }

    /// Sizes and allocates a freshly created file (open as `fd`), maps it and
    /// publishes its header: [`Namespace::initialise`] for [`Posix`]. The
    /// ordering around it (role first, clean-up on failure) is
    /// [`lifecycle::create_segment`]'s.
    fn create_sized(
        name: &str,
        fd: &OwnedFd,
        id: FileId,
        capacity: u64,
        spec: Spec,
    ) -> Result<Segment, ShmError> {
        let len = match spec {
            Spec::Spsc => segment_size(capacity),
            Spec::Mpsc { producers } => {
                if mpsc_layout::Header::new(capacity, producers).is_none() {
                    return Err(ShmError::InvalidMpsc {
                        capacity,
                        producers,
                    });
                }
                mpsc_layout::segment_size(capacity)
            }
        };
        let size = libc::off_t::try_from(len).map_err(|_| ShmError::InvalidCapacity(capacity))?;
        nix::unistd::ftruncate(fd.as_fd(), size).map_err(|e| os_error(name, "ftruncate", e))?;
        match nix::fcntl::posix_fallocate(fd.as_fd(), 0, size) {
            Ok(()) => {}
            Err(Errno::ENOSPC) => return Err(ShmError::NoSpace { needed: len }),
            Err(e) => return Err(os_error(name, "posix_fallocate", e)),
        }
        let fd = fd
            .try_clone()
            .map_err(|e| ShmError::Os(OsError::new("dup", e.raw_os_error().unwrap_or(0))))?;
        let segment = Segment::map(name.to_string(), fd, len as usize, id, spec.kind())?;
        match spec {
            Spec::Spsc => {
                if let Some(header) = Header::new(capacity) {
                    segment.initialise(header.as_bytes());
                    publish_magic(segment.magic_word());
                }
            }
            Spec::Mpsc { producers } => {
                if let Some(header) = mpsc_layout::Header::new(capacity, producers) {
                    segment.initialise(header.as_bytes());
                    let magic = u64::from_ne_bytes(mpsc_layout::MAGIC);
                    publish_magic_word(segment.magic_word(), magic);
                }
            }
        }
        Ok(segment)
    }

    /// Writes a fresh header but its magic, which the caller then publishes
    /// with one Release store (the commit point, paired with the openers'
    /// Acquire load; `loom_lifecycle` checks the pair).
    fn initialise(&self, header: &[u8]) {
        let len = header.len().min(self.len);
        let base: *mut u8 = self.map.as_ptr().cast();
        if len <= 8 {
            return;
        }
        // SAFETY: `len` is within the mapping (`min` above) and the header;
        // no other process reads past the magic before it is published.
        unsafe { std::ptr::copy_nonoverlapping(header[8..].as_ptr(), base.add(8), len - 8) };
    }

    /// The checked view, with `owner` keeping the memory alive. Each ring
    /// side gets its view from here exactly once, under its role's lease.
    pub(super) fn checked_view<O>(&self, owner: O) -> Result<MemShared<O>, ShmError> {
        // SAFETY: the mapping is readable for `len` bytes while self lives.
        let checked =
            unsafe { attach(self.map.as_ptr().cast(), self.len) }.map_err(ShmError::Attach)?;
        // SAFETY: every caller passes an owner that keeps `self` (and so the
        // mapping) alive, or drops the view before `self`.
        Ok(unsafe { MemShared::new(checked, owner) })
    }

    /// The view over an `Arc` of this segment.
    pub(super) fn shared(self: &Arc<Self>) -> Result<MemShared<Arc<Segment>>, ShmError> {
        self.checked_view(Arc::clone(self))
    }

    /// The checked MPSC view, with `owner` keeping the memory alive, and
    /// the segment's producer count. The consumer gets its view from here
    /// once, under its lease; a producer once, under its slot's lease.
    pub(super) fn checked_mpsc_view<O>(
        &self,
        owner: O,
    ) -> Result<(MemShared<O, NoHook, mpsc_layout::Mpsc>, u32), ShmError> {
        // SAFETY: the mapping is readable for `len` bytes while self lives.
        let checked = unsafe { crate::mpsc::validate::attach(self.map.as_ptr().cast(), self.len) }
            .map_err(ShmError::MpscAttach)?;
        let producers = checked.max_producers();
        // SAFETY: every caller passes an owner that keeps `self` (and so the
        // mapping) alive, or drops the view before `self`; one side per
        // role and slot is the caller's lease.
        Ok((unsafe { MemShared::from_mpsc(checked, owner) }, producers))
    }

    /// Whether a live process holds MPSC producer slot `slot` through
    /// another open of the segment than this one.
    pub fn slot_held(&self, slot: u8) -> Result<bool, ShmError> {
        slot_held_on(&self.fd, &self.name, slot)
    }

    /// The descriptor this segment was opened with (locks go through it).
    pub(super) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// The generation word of `role` (for MPSC, only the consumer's: each
    /// producer slot has its own, in the slot table).
    fn generation(&self, role: Role) -> &AtomicU32 {
        let offset = match (self.kind, role) {
            (RingKind::Spsc, Role::Producer) => PRODUCER_GEN_OFFSET,
            (RingKind::Spsc, Role::Consumer) => CONSUMER_GEN_OFFSET,
            (RingKind::Mpsc, Role::Producer) => mpsc_layout::SLOT_GEN_OFFSET,
            (RingKind::Mpsc, Role::Consumer) => mpsc_layout::CONSUMER_GEN_OFFSET,
        };
        // Every access to the generation words is atomic.
        // SAFETY: every Segment maps at least HEADER_SIZE page-aligned bytes
        // (`map` refuses less): an aligned u32 that lives as long as self.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().cast::<u8>().add(offset).cast()) }
    }

    /// Bumps `role`'s generation: done once by each new holder of the role.
    /// An MPSC producer's slot generation is bumped by
    /// [`crate::mpsc::Producer::new`] once it holds the slot, not here.
    pub(super) fn bump_generation(&self, role: Role) {
        if self.kind == RingKind::Mpsc && role == Role::Producer {
            return;
        }
        // Relaxed: a counter only the role holder writes; readers (a peer
        // telling whether the role was ever taken, `inspect`) read no other
        // memory on the strength of it.
        self.generation(role).fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `role` was ever claimed (its generation, for MPSC producers
    /// any slot's generation, is not zero).
    pub(super) fn ever_claimed(&self, role: Role) -> bool {
        let words = match (self.kind, role) {
            (RingKind::Mpsc, Role::Producer) => mpsc_layout::MAX_SLOTS,
            _ => 1,
        };
        let first = self.generation(role);
        // Relaxed (each load): see `bump_generation`.
        (0..words).any(|slot| self.generation_at(first, slot).load(Ordering::Relaxed) != 0)
    }

    /// The `index`-th 32-bit word from `first` (a slot generation when
    /// `first` is slot 0's).
    fn generation_at<'a>(&'a self, first: &'a AtomicU32, index: usize) -> &'a AtomicU32 {
        if index == 0 {
            return first;
        }
        let offset = mpsc_layout::SLOT_GEN_OFFSET + 4 * index;
        debug_assert!(self.kind == RingKind::Mpsc && index < mpsc_layout::MAX_SLOTS);
        // SAFETY: only reached for an MPSC segment, whose mapping passed the
        // MPSC attach (at least its 640-byte header, page-aligned): the slot
        // table's `index < MAX_SLOTS` word is an aligned u32 inside it.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().cast::<u8>().add(offset).cast()) }
    }

    /// Normalised name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a live process holds `role` through another open of the
    /// segment than this one (a lease of this process counts when taken
    /// through its own open).
    pub fn role_held(&self, role: Role) -> Result<bool, ShmError> {
        role_held_on(&self.fd, &self.name, role)
    }

    /// Reads the header, the positions and the role leases.
    pub fn inspect(name: &str) -> Result<Inspection, ShmError> {
        let name = validate_name(name)?;
        let fd = open_fd(&name)?;
        let stat = stat_fd(&fd, &name)?;
        check_file(&name, &stat)?;
        let file_size = u64::try_from(stat.st_size).unwrap_or(0);
        let mut out = Inspection {
            name: name.clone(),
            file_size,
            error: None,
            position_error: None,
            capacity: 0,
            max_message: 0,
            head: 0,
            tail: 0,
            used: 0,
            closed: false,
            producer_gen: 0,
            consumer_gen: 0,
            producer_held: role_held_on(&fd, &name, Role::Producer)?,
            consumer_held: role_held_on(&fd, &name, Role::Consumer)?,
        };
        if (file_size as usize) < HEADER_SIZE {
            out.error = Some(AttachError::TooSmall {
                len: file_size as usize,
            });
            return Ok(out);
        }
        let segment = Segment::map(name, fd, file_size as usize, file_id(&stat), RingKind::Spsc)?;
        if !segment.magic_published() {
            out.error = Some(AttachError::BadMagic { zero: true });
            return Ok(out);
        }
        check_allocated(&segment.name, &stat_fd(&segment.fd, &segment.name)?)?;
        let view = match segment.checked_view(()) {
            Err(ShmError::Attach(e)) => {
                out.error = Some(e);
                return Ok(out);
            }
            Err(e) => return Err(e),
            Ok(view) => view,
        };
        out.capacity = view.capacity();
        out.max_message = max_message(out.capacity);
        // Relaxed (all loads below): a snapshot for display; no other memory
        // is read on the strength of these values.
        out.head = view.head().load(Ordering::Relaxed);
        out.tail = view.tail().load(Ordering::Relaxed);
        out.closed = view.closed().load(Ordering::Relaxed) != 0;
        out.producer_gen = segment.generation(Role::Producer).load(Ordering::Relaxed);
        out.consumer_gen = segment.generation(Role::Consumer).load(Ordering::Relaxed);
        // The checks a side runs when it attaches, on the same positions.
        out.position_error = Consumer::new(view).err();
        if out.position_error.is_none() {
            out.used = out.tail.wrapping_sub(out.head);
        }
        Ok(out)
    }
}

/// Removes the name of a segment nobody uses: no live process holds a role,
/// checked under the name lock, so a process taking a role meanwhile either
/// keeps it (we see its role) or finds the name gone and retries. Works on
/// segments whose header is invalid or was never initialised too; refuses
/// files that are not ours ([`ShmError::NotASegment`], [`ShmError::Untrusted`]).
/// The decisions are [`lifecycle::remove_stale`]'s.
pub fn remove_stale(name: &str) -> Result<Removal, ShmError> {
    let name = validate_name(name)?;
    lifecycle::remove_stale(&Posix, &name)
}

/// Removes a segment's name whatever holds it (`clean --force`). Processes
/// that have it mapped keep their mapping.
pub fn unlink(name: &str) -> Result<(), ShmError> {
    let name = validate_name(name)?;
    shm_unlink(name.as_str()).map_err(|e| os_error(&name, "shm_unlink", e))
}

/// Every entry of `/dev/shm`: our ringproof segments, and what was skipped
/// because it is not a regular file or not ours. Regular files of ours that
/// do not start with the ringproof magic are other programs' and are left
/// out. Nothing here blocks: FIFOs and symbolic links are never opened.
pub fn scan() -> Result<Vec<Entry>, ShmError> {
    let dir = std::fs::read_dir("/dev/shm").map_err(|e| {
        ShmError::Os(OsError::new(
            "read_dir(/dev/shm)",
            e.raw_os_error().unwrap_or(0),
        ))
    })?;
    let euid = nix::unistd::geteuid().as_raw();
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Ok(file_name) = entry.file_name().into_string() else {
            continue;
        };
        let name = std::format!("/{file_name}");
        let skipped = |reason: String| Entry::Skipped {
            name: name.clone(),
            reason,
        };
        // `symlink_metadata`: a link is described, not followed.
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue; // removed meanwhile
        };
        if !meta.file_type().is_file() {
            out.push(skipped(file_kind(meta.mode()).to_string()));
            continue;
        }
        if meta.uid() != euid {
            out.push(skipped(std::format!("owned by uid {}", meta.uid())));
            continue;
        }
        let mut magic = [0u8; 8];
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(entry.path());
        let Ok(mut file) = file else {
            continue; // removed meanwhile
        };
        if std::io::Read::read_exact(&mut file, &mut magic).is_ok()
            && RingKind::from_magic(&magic).is_some()
        {
            out.push(Entry::Segment(name));
        }
    }
    out.sort_by(|a, b| entry_name(a).cmp(entry_name(b)));
    Ok(out)
}

fn entry_name(entry: &Entry) -> &str {
    match entry {
        Entry::Segment(name) | Entry::Skipped { name, .. } => name,
    }
}

/// Names (with a leading `/`) of every ringproof segment of ours in `/dev/shm`.
pub fn list() -> Result<Vec<String>, ShmError> {
    Ok(scan()?
        .into_iter()
        .filter_map(|e| match e {
            Entry::Segment(name) => Some(name),
            Entry::Skipped { .. } => None,
        })
        .collect())
}

/// The namespace that ships: POSIX shared memory (`shm_open`, `shm_unlink`),
/// open-file-description locks and the mapping. [`lifecycle`] makes every
/// decision over it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Posix;

impl Namespace for Posix {
    type Fd = OwnedFd;
    type File = Segment;
    type Lease = Lease;
    type NameLock = NameLock;
    type Instant = Instant;

    fn fd<'a>(&self, file: &'a Segment) -> &'a OwnedFd {
        &file.fd
    }

    fn file_id(&self, file: &Segment) -> FileId {
        file.id
    }

    fn create_exclusive(&self, name: &str) -> Result<(OwnedFd, FileId), ShmError> {
        let fd = shm_open(
            name,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )
        .map_err(|e| os_error(name, "shm_open", e))?;
        let id = file_id(&stat_fd(&fd, name)?);
        Ok((fd, id))
    }

    fn initialise(
        &self,
        name: &str,
        fd: &OwnedFd,
        id: FileId,
        capacity: u64,
    ) -> Result<Segment, ShmError> {
        Segment::create_sized(name, fd, id, capacity, Spec::Spsc)
    }

    fn look(&self, name: &str) -> Result<Look<Segment>, ShmError> {
        Segment::look(name, RingKind::Spsc)
    }

    fn open_any(&self, name: &str) -> Result<(OwnedFd, FileId), ShmError> {
        let fd = open_fd(name)?;
        let stat = stat_fd(&fd, name)?;
        check_file(name, &stat)?;
        Ok((fd, file_id(&stat)))
    }

    fn named_id(&self, name: &str) -> Result<Option<FileId>, ShmError> {
        named_id(name)
    }

    fn unlink(&self, name: &str) -> Result<(), ShmError> {
        shm_unlink(name).map_err(|e| os_error(name, "shm_unlink", e))
    }

    fn claim(&self, fd: &OwnedFd, role: Role) -> Result<Lease, ShmError> {
        Lease::claim(fd, role)
    }

    fn lock_name(&self, fd: &OwnedFd, name: &str) -> Result<NameLock, ShmError> {
        NameLock::take(fd, name)
    }

    fn role_held(&self, fd: &OwnedFd, name: &str, role: Role) -> Result<bool, ShmError> {
        role_held_on(fd, name, role)
    }

    fn bump_generation(&self, file: &Segment, role: Role) {
        file.bump_generation(role);
    }

    fn ever_claimed(&self, file: &Segment, role: Role) -> bool {
        file.ever_claimed(role)
    }

    fn finished(&self, file: &Segment) -> Result<bool, ShmError> {
        Ok(super::endpoint::finished(&file.checked_view(())?))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn waited_out(&self, since: &Instant) -> bool {
        since.elapsed() >= INIT_WAIT
    }

    fn pause(&self) {
        std::thread::sleep(INIT_POLL);
    }
}

/// What a creator writes into a new segment.
#[derive(Clone, Copy, Debug)]
enum Spec {
    Spsc,
    Mpsc { producers: u32 },
}

impl Spec {
    fn kind(self) -> RingKind {
        match self {
            Spec::Spsc => RingKind::Spsc,
            Spec::Mpsc { .. } => RingKind::Mpsc,
        }
    }
}

/// The namespace of MPSC segments: [`Posix`]'s file and lock operations,
/// with the MPSC header, its attach and its notion of a finished stream.
/// Every producer takes a *shared* lease of the producer role (a read lock
/// on byte 0; its slot's lock is taken after, by [`super::mpsc`]), so the
/// lifecycle decisions ("is a producer here?") are [`lifecycle`]'s, unchanged.
#[derive(Clone, Copy, Debug)]
pub struct PosixMpsc {
    /// Producer slots of a segment this namespace creates (`1..=MAX_SLOTS`).
    pub producers: u32,
}

impl Namespace for PosixMpsc {
    type Fd = OwnedFd;
    type File = Segment;
    type Lease = Lease;
    type NameLock = NameLock;
    type Instant = Instant;

    fn fd<'a>(&self, file: &'a Segment) -> &'a OwnedFd {
        Posix.fd(file)
    }

    fn file_id(&self, file: &Segment) -> FileId {
        Posix.file_id(file)
    }

    fn create_exclusive(&self, name: &str) -> Result<(OwnedFd, FileId), ShmError> {
        Posix.create_exclusive(name)
    }

    fn initialise(
        &self,
        name: &str,
        fd: &OwnedFd,
        id: FileId,
        capacity: u64,
    ) -> Result<Segment, ShmError> {
        let spec = Spec::Mpsc {
            producers: self.producers,
        };
        Segment::create_sized(name, fd, id, capacity, spec)
    }

    fn look(&self, name: &str) -> Result<Look<Segment>, ShmError> {
        Segment::look(name, RingKind::Mpsc)
    }

    fn open_any(&self, name: &str) -> Result<(OwnedFd, FileId), ShmError> {
        Posix.open_any(name)
    }

    fn named_id(&self, name: &str) -> Result<Option<FileId>, ShmError> {
        Posix.named_id(name)
    }

    fn unlink(&self, name: &str) -> Result<(), ShmError> {
        Posix.unlink(name)
    }

    fn claim(&self, fd: &OwnedFd, role: Role) -> Result<Lease, ShmError> {
        match role {
            Role::Producer => Lease::claim_shared(fd, role),
            Role::Consumer => Lease::claim(fd, role),
        }
    }

    fn lock_name(&self, fd: &OwnedFd, name: &str) -> Result<NameLock, ShmError> {
        Posix.lock_name(fd, name)
    }

    fn role_held(&self, fd: &OwnedFd, name: &str, role: Role) -> Result<bool, ShmError> {
        Posix.role_held(fd, name, role)
    }

    fn bump_generation(&self, file: &Segment, role: Role) {
        file.bump_generation(role);
    }

    fn ever_claimed(&self, file: &Segment, role: Role) -> bool {
        file.ever_claimed(role)
    }

    fn finished(&self, file: &Segment) -> Result<bool, ShmError> {
        Ok(super::mpsc::finished(&file.checked_mpsc_view(())?.0))
    }

    fn now(&self) -> Instant {
        Posix.now()
    }

    fn waited_out(&self, since: &Instant) -> bool {
        Posix.waited_out(since)
    }

    fn pause(&self) {
        Posix.pause();
    }
}
