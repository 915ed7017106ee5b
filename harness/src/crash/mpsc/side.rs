//! The MPSC side page: what the producer, consumer and closer children
//! record for the driver (an anonymous shared mapping, [`SidePage`]).
//!
//! Owns the layout of that bookkeeping; what each word means to a child is
//! written in `child.rs`, how the driver settles it in `mod.rs`.
//!
//! Every word is written by one child at a time (or by the driver between
//! children), with `Relaxed` stores: the driver writes before `fork`, which
//! orders its writes before everything the child does, and reads after
//! `waitpid`, which orders everything the dead child did before it. The one
//! exception is `finish`, a flag the driver sets while children run (a late
//! sighting costs a message more).

use std::sync::atomic::AtomicU64;

use ringproof::sync::CrashPoint;

use super::super::side::ZeroAtomics;
use super::MAX_PRODUCERS;

/// Deliveries one run may record (32 bytes each, mapped `MAP_NORESERVE`).
pub(super) const DELIVERIES: usize = 1 << 20;
/// Unblock events one run may record.
pub(super) const UNBLOCKS: usize = 1 << 16;

#[repr(C)]
#[derive(Debug)]
pub(crate) struct MpscSide {
    /// One log per producer id, kept over its incarnations.
    pub(super) producers: [ProducerLog; MAX_PRODUCERS],
    /// The closer's crossings (BeforeClose) and death time.
    pub(super) closer: ProducerLog,
    /// The current consumer's release record.
    pub(super) consumer: ConsumerLog,
    /// Soak: producers stop when they see this set.
    pub(super) finish: AtomicU64,
    /// Entries used in `deliveries`.
    pub(super) deliveries_len: AtomicU64,
    /// Entries used in `unblocks`.
    pub(super) unblocks_len: AtomicU64,
    pub(super) deliveries: [DeliveryEntry; DELIVERIES],
    pub(super) unblocks: [Unblock; UNBLOCKS],
}

// SAFETY: `MpscSide` is `repr(C)` and holds only `AtomicU64`s and arrays
// of `repr(C)` structs of them.
unsafe impl ZeroAtomics for MpscSide {}

/// A producer id's persistent log (its "disk"): what it committed.
#[repr(C)]
#[derive(Debug)]
pub(super) struct ProducerLog {
    /// Sequence number after the last commit recorded (after the commit
    /// store); the driver sets it before each incarnation starts.
    pub(super) next: AtomicU64,
    /// 1 while a commit is in doubt: recorded before the reserve of
    /// `pending_start..pending_end`, cleared once `next` is advanced.
    pub(super) pending: AtomicU64,
    pub(super) pending_start: AtomicU64,
    pub(super) pending_end: AtomicU64,
    /// The slot this incarnation holds, plus one (0: no slot yet).
    pub(super) slot: AtomicU64,
    /// Monotonic ns of this incarnation's `SIGKILL` (0: not killed).
    pub(super) died_ns: AtomicU64,
    /// Claims abandoned (their payload marked, never to be delivered).
    pub(super) abandoned: AtomicU64,
    /// Crossings per crash point by this incarnation.
    pub(super) crossings: [AtomicU64; CrashPoint::ALL.len()],
}

/// The current consumer's record of its releases.
#[repr(C)]
#[derive(Debug)]
pub(super) struct ConsumerLog {
    /// Index in `deliveries` after the last delivery surely released
    /// (recorded after the release store).
    pub(super) released: AtomicU64,
    /// The consumer finished: it read the end of stream.
    pub(super) done: AtomicU64,
    /// Monotonic ns of this incarnation's `SIGKILL` (0: not killed).
    pub(super) died_ns: AtomicU64,
    /// The slot (plus one) whose live claim the consumer waits on now (0:
    /// none); an armed producer waits for it before it dies. The one word
    /// written while another process reads it: `Relaxed`, a condition
    /// only, which orders nothing.
    pub(super) blocked: AtomicU64,
    /// Crossings per crash point by this incarnation.
    pub(super) crossings: [AtomicU64; CrashPoint::ALL.len()],
}

/// One delivery. `len` is bumped after the entry is written: a death in
/// between loses the record of a message that was never released, so its
/// successor delivers (and records) it again.
#[repr(C)]
#[derive(Debug)]
pub(super) struct DeliveryEntry {
    pub(super) producer: AtomicU64,
    pub(super) seq: AtomicU64,
    /// 1: whole; 2: torn.
    pub(super) state: AtomicU64,
    pub(super) consumer: AtomicU64,
}

/// The consumer waited on a live claim of `slot` from `since_ns` and got
/// past it at `passed_ns` (monotonic).
#[repr(C)]
#[derive(Debug)]
pub(super) struct Unblock {
    pub(super) slot: AtomicU64,
    pub(super) since_ns: AtomicU64,
    pub(super) passed_ns: AtomicU64,
}
