//! The side page: what children record for the driver.
//!
//! Owns the layout of that bookkeeping and its resets; what each word means
//! to a child is written in `child.rs`, how the driver settles it in `run.rs`.

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

use ringproof::shm::Role;
use ringproof::sync::CrashPoint;

use super::{CrashError, LOG_ENTRIES};

/// Bookkeeping shared by the driver and its children (an anonymous shared
/// mapping made before the first fork). Children write; the driver reads
/// after `waitpid` and resets before the next child of a role.
#[repr(C)]
#[derive(Debug)]
pub(super) struct Side {
    /// What the current producer committed.
    pub(super) producer: RoleRecord,
    /// The producer closed the ring.
    pub(super) p_closed: AtomicU64,
    /// What the current consumer released.
    pub(super) consumer: RoleRecord,
    /// Sequence number after the last message this consumer delivered (0: none).
    pub(super) c_last: AtomicU64,
    /// Deliveries by this consumer.
    pub(super) c_delivered: AtomicU64,
    /// While a delivery is being recorded: `c_last` once it is recorded
    /// (0: no record open). A death between the `c_last` and `c_delivered`
    /// stores leaves them one apart; the driver completes the record.
    pub(super) c_recording: AtomicU64,
    /// `c_delivered` once the open record is written.
    pub(super) c_recording_delivered: AtomicU64,
    /// Torn deliveries.
    pub(super) c_torn: AtomicU64,
    /// Deliveries not following the previous one of this consumer.
    pub(super) c_order: AtomicU64,
    /// The consumer read the end of stream.
    pub(super) c_done: AtomicU64,
    /// Random mode: the producer closes the ring when it sees this set.
    pub(super) finish: AtomicU64,
    /// Entries used in `log`.
    pub(super) log_len: AtomicU64,
    /// One entry per consumer start and per change of producer in the stream.
    pub(super) log: [LogEntry; LOG_ENTRIES],
}

/// One role's record of its commits (producer) or releases (consumer): the
/// same words on both sides, settled by the driver in the same way.
#[repr(C)]
#[derive(Debug)]
pub(super) struct RoleRecord {
    /// Producer: messages committed so far (recorded after the commit
    /// store); the next producer starts at this sequence number. Consumer:
    /// sequence number after the last released message (recorded after the
    /// release store).
    pub(super) position: AtomicU64,
    /// 1 while a commit (release) is in doubt: `pre_index`/`pending_end` are
    /// set, `position` not yet advanced.
    pub(super) pending: AtomicU64,
    /// `tail` (producer) or `head` (consumer) before the store in doubt.
    pub(super) pre_index: AtomicU64,
    /// `position` after the store in doubt.
    pub(super) pending_end: AtomicU64,
    /// Generation of the role the current child saw after its claim (0: not yet).
    pub(super) generation: AtomicU64,
    /// Crossings per crash point counted by the last child of the role
    /// (census runs).
    pub(super) crossings: [AtomicU64; CrashPoint::ALL.len()],
}

#[repr(C)]
#[derive(Debug)]
pub(super) struct LogEntry {
    pub(super) seq: AtomicU64,
    pub(super) producer: AtomicU64,
    pub(super) consumer: AtomicU64,
}

/// Owner of the side page mapping: a `T` made of atomics only (a valid
/// value when zero-filled): [`Side`] for SPSC, `MpscSide` for MPSC.
#[derive(Debug)]
pub(super) struct SidePage<T = Side> {
    ptr: NonNull<c_void>,
    len: usize,
    kind: std::marker::PhantomData<T>,
}

/// Types a side page may hold.
///
/// # Safety
///
/// The implementing type is `repr(C)`, made of atomics (and arrays of
/// them) only, so that all-zero bytes are a valid value and sharing it
/// between processes is sound.
pub(super) unsafe trait ZeroAtomics {}

// SAFETY: `Side` is `repr(C)` and holds only `AtomicU64`s and arrays of
// `repr(C)` structs of them.
unsafe impl ZeroAtomics for Side {}

impl<T: ZeroAtomics> SidePage<T> {
    pub(super) fn new() -> Result<Self, CrashError> {
        let len = std::mem::size_of::<T>();
        let Some(length) = NonZeroUsize::new(len) else {
            return Err(CrashError::Config("empty side page".into()));
        };
        // SAFETY: a fresh anonymous mapping; nothing aliases it yet.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED | MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(|e| CrashError::Os("mmap(side page)", e))?;
        Ok(SidePage {
            ptr,
            len,
            kind: std::marker::PhantomData,
        })
    }

    pub(super) fn side(&self) -> &T {
        // SAFETY: the mapping is page-aligned, `size_of::<T>()` bytes long,
        // zero-filled (a valid `T`: all atomics, see `ZeroAtomics`), lives as
        // long as `self`, and is only accessed through atomics.
        unsafe { &*self.ptr.as_ptr().cast::<T>() }
    }
}

impl<T> Drop for SidePage<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from one successful mmap; no `&Side`
        // outlives `self` (they borrow it).
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

impl Side {
    /// The record of `role`.
    pub(super) fn record(&self, role: Role) -> &RoleRecord {
        match role {
            Role::Producer => &self.producer,
            Role::Consumer => &self.consumer,
        }
    }

    pub(super) fn reset_all(&self) {
        self.reset(Role::Producer, 0);
        self.reset(Role::Consumer, 0);
        self.finish.store(0, Ordering::Relaxed);
        self.log_len.store(0, Ordering::Relaxed);
    }

    // Relaxed: throughout the driver's side: it writes before `fork`, which
    // orders the writes before everything the child does, and reads after
    // `waitpid`, which orders everything the dead child did before it.
    /// Prepares the page for the next child of `role`, which starts at
    /// `position` (committed count, or released position).
    pub(super) fn reset(&self, role: Role, position: u64) {
        let record = self.record(role);
        record.position.store(position, Ordering::Relaxed);
        record.pending.store(0, Ordering::Relaxed);
        record.generation.store(0, Ordering::Relaxed);
        for c in &record.crossings {
            c.store(0, Ordering::Relaxed);
        }
        // The words only one role writes.
        match role {
            Role::Producer => self.p_closed.store(0, Ordering::Relaxed),
            Role::Consumer => {
                self.c_last.store(0, Ordering::Relaxed);
                self.c_delivered.store(0, Ordering::Relaxed);
                self.c_recording.store(0, Ordering::Relaxed);
                self.c_recording_delivered.store(0, Ordering::Relaxed);
                self.c_torn.store(0, Ordering::Relaxed);
                self.c_order.store(0, Ordering::Relaxed);
                self.c_done.store(0, Ordering::Relaxed);
            }
        }
    }
}
