//! The seam between a protocol and the memory it runs over.
//!
//! Every protocol ([`crate::spsc`] today) is written once against the
//! [`Shared`] trait: atomic words at the offsets its own layout declares
//! ([`Shared::word64`], [`Shared::word32`]: load, store, compare-exchange,
//! fetch-add), the data region with an access token per borrow, a fence,
//! park/wake, and a crash-point hook. The shipped implementation is
//! [`crate::mem::MemShared`] over `core::sync::atomic` and raw memory;
//! `ringproof-models` implements the same trait with loom's and shuttle's
//! types, so the models run the very code that ships.
//!
//! This module holds the traits and nothing that runs: no backend, no wait.
//! Every method of the shipped backend is `#[inline]`, its access token is
//! `()` and its hook [`NoHook`], so monomorphisation leaves nothing of the
//! seam in a release build.
//!
//! Protocols reach atomics only through these traits: only [`crate::mem`]
//! (and the OS-facing `wait` and `shm`) may name `core::sync::atomic` types
//! (see `clippy.toml`).
use core::time::Duration;

pub use core::sync::atomic::Ordering;

/// A 64-bit shared word (positions, claim counters).
pub trait Word64 {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u64;
    /// Atomic store.
    fn store(&self, value: u64, order: Ordering);
    /// Atomic compare-and-exchange: stores `new` if the word holds `current`;
    /// returns the value it held (`Ok` when the exchange happened).
    fn compare_exchange(
        &self,
        current: u64,
        new: u64,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u64, u64>;
    /// Atomic wrapping add; returns the value before the add.
    fn fetch_add(&self, value: u64, order: Ordering) -> u64;
}

/// A 32-bit shared word (flags and futex words).
pub trait Word32 {
    /// Atomic load.
    fn load(&self, order: Ordering) -> u32;
    /// Atomic store.
    fn store(&self, value: u32, order: Ordering);
    /// Atomic compare-and-exchange; as [`Word64::compare_exchange`].
    fn compare_exchange(
        &self,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32>;
    /// Atomic wrapping add; returns the value before the add.
    fn fetch_add(&self, value: u32, order: Ordering) -> u32;
}

/// The magic as one native-endian word: the last thing a creator writes.
pub const MAGIC_WORD: u64 = u64::from_ne_bytes(crate::layout::MAGIC);

/// Publishes a segment header whose other bytes are written: one Release
/// store of the magic (the header's commit point).
#[inline]
pub fn publish_magic<W: Word64>(magic: &W) {
    publish_magic_word(magic, MAGIC_WORD);
}

/// [`publish_magic`] with another protocol's magic word (the MPSC one).
#[inline]
pub fn publish_magic_word<W: Word64>(magic: &W, word: u64) {
    // Release: publishes the header bytes written before this store; pairs
    // with the Acquire load in `magic_published`.
    magic.store(word, Ordering::Release);
}

/// Whether a creator has published the header (the magic is not zero). Once
/// it returns true, every header byte the creator wrote is visible.
#[inline]
pub fn magic_published<W: Word64>(magic: &W) -> bool {
    // Acquire: pairs with the Release store in `publish_magic`.
    magic.load(Ordering::Acquire) != 0
}

/// A point in the protocol where a crash-injection experiment may kill the
/// process. The shipped [`Shared`] implementations ignore them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrashPoint {
    /// The producer wrote the record header of a reservation.
    AfterReserve,
    /// `push` wrote the first half of a payload.
    MidPayload,
    /// The record is complete, its `tail` store not yet done.
    BeforeCommit,
    /// The `tail` store that commits a record (or a batch) is done.
    AfterCommit,
    /// A batch holds at least one complete, uncommitted record and takes another.
    MidBatch,
    /// The consumer validated a record and handed it out.
    AfterRead,
    /// The consumer is about to store `head`.
    BeforeRelease,
    /// The `head` store that releases records is done.
    AfterRelease,
    /// The producer is about to set `closed`.
    BeforeClose,
}

impl CrashPoint {
    /// Every crash point, in protocol order.
    pub const ALL: [CrashPoint; 9] = [
        CrashPoint::AfterReserve,
        CrashPoint::MidPayload,
        CrashPoint::BeforeCommit,
        CrashPoint::AfterCommit,
        CrashPoint::MidBatch,
        CrashPoint::AfterRead,
        CrashPoint::BeforeRelease,
        CrashPoint::AfterRelease,
        CrashPoint::BeforeClose,
    ];

    /// A stable name (`after-reserve`, …) for command lines and reports.
    pub const fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterReserve => "after-reserve",
            CrashPoint::MidPayload => "mid-payload",
            CrashPoint::BeforeCommit => "before-commit",
            CrashPoint::AfterCommit => "after-commit",
            CrashPoint::MidBatch => "mid-batch",
            CrashPoint::AfterRead => "after-read",
            CrashPoint::BeforeRelease => "before-release",
            CrashPoint::AfterRelease => "after-release",
            CrashPoint::BeforeClose => "before-close",
        }
    }

    /// Whether the producer (true) or the consumer (false) crosses this point.
    pub const fn is_producer(self) -> bool {
        !matches!(
            self,
            CrashPoint::AfterRead | CrashPoint::BeforeRelease | CrashPoint::AfterRelease
        )
    }
}

/// What runs at each [`CrashPoint`]: a type parameter of the shipped backend
/// ([`crate::mem::MemShared`]), [`NoHook`] unless a crash-injection
/// experiment supplies one.
pub trait CrashHook {
    /// Called when the protocol crosses `point`.
    fn crash_point(&self, point: CrashPoint);
}

/// The hook of every shipped build: does nothing, and compiles to nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoHook;

impl CrashHook for NoHook {
    #[inline(always)]
    fn crash_point(&self, _point: CrashPoint) {}
}

/// Everything a protocol touches in a segment.
///
/// # Safety
///
/// Implementors guarantee that
/// - [`capacity`](Shared::capacity) is constant, a power of two and at least
///   [`crate::layout::MIN_CAPACITY`];
/// - for `offset + len <= capacity`, [`data`](Shared::data) returns a pointer
///   valid for reads and writes of `len` bytes for as long as `self` lives;
/// - [`word64`](Shared::word64) and [`word32`](Shared::word32) return, for
///   each offset, the same word every time (in every view of the same
///   segment), words at distinct offsets are distinct, and no word overlaps
///   the data region;
/// - [`table_word64`](Shared::table_word64) returns, for each 8-aligned
///   `offset < capacity`, the same word every time (in every view of the
///   same segment), distinct from every header word and overlapping no
///   data byte.
///
/// They need not (and cannot) guarantee what another process writes there:
/// the protocol checks every value it reads.
pub unsafe trait Shared {
    /// The 64-bit word type (`head`, `tail`).
    type W64: Word64;
    /// The 32-bit word type (`closed` and the futex words).
    type W32: Word32;
    /// Token held while a borrow of data bytes is live: `()` in the shipped
    /// build, a race detector's guard in the models.
    type Access;

    /// The 64-bit word at byte `offset` of the segment header: one of the
    /// word offsets the protocol's layout declares (a constant, never a value
    /// read from the segment).
    ///
    /// # Panics
    ///
    /// When `offset` is not an 8-aligned word of the header (a bug in the
    /// protocol, not in the segment).
    fn word64(&self, offset: usize) -> &Self::W64;
    /// The 32-bit word at byte `offset` of the header; as [`Shared::word64`],
    /// 4-aligned.
    fn word32(&self, offset: usize) -> &Self::W32;
    /// Size of the data region in bytes.
    fn capacity(&self) -> u64;

    /// The 64-bit word of the record word table for data byte `offset`, for
    /// protocols whose record headers are atomic words ([`crate::mpsc`]).
    /// `offset` is computed by the protocol from a checked position
    /// (8-aligned, below the capacity), never taken from the segment
    /// unchecked.
    ///
    /// The table holds one word per 8 data bytes and lies **outside** the
    /// data region (in the shipped backend, right after it; in the models,
    /// a table of their own): no payload byte written through
    /// [`data`](Shared::data) is ever read as a table word. A producer that
    /// stalls with a stale position and compare-exchanges a table word can
    /// therefore only meet values the protocol itself stored there (see
    /// `docs/LAYOUT.md`, MPSC, "Why record words live in their own table").
    ///
    /// # Panics
    ///
    /// When `offset` is not 8-aligned or not below the capacity, or the
    /// segment has no table (a bug in the protocol, not in the segment).
    fn table_word64(&self, offset: usize) -> &Self::W64;

    /// Begins a borrow of data bytes `offset..offset + len`, for writing when
    /// `write`; returns the access token and a pointer to the first byte.
    ///
    /// # Safety
    ///
    /// `offset + len <= self.capacity()`, and the protocol owns these bytes
    /// for the side that calls (see the protocol's ownership rules, e.g. [`crate::spsc`])
    /// until the token is dropped.
    unsafe fn data(&self, offset: usize, len: usize, write: bool) -> (Self::Access, *mut u8);

    /// A sequentially consistent fence (the Dekker handshake around parking).
    fn fence_seq_cst(&self);

    /// Blocks while `word` holds `expected`, at most `timeout` (`None`: until
    /// woken). May return early for any reason; callers re-check.
    fn park(&self, word: &Self::W32, expected: u32, timeout: Option<Duration>);

    /// Wakes every thread or process parked on `word`.
    fn wake(&self, word: &Self::W32);

    /// How many times the blocking calls spin before they park. The models
    /// lower it: loom and shuttle make every spin a yield, so a long spin
    /// phase would keep them from reaching the park path while the other
    /// side is mid-operation.
    const SPINS: u32 = 256;

    /// One iteration of a spin loop.
    #[inline]
    fn spin(&self) {
        core::hint::spin_loop();
    }

    /// Called at each [`CrashPoint`]; does nothing unless an experiment
    /// supplies a [`CrashHook`].
    #[inline(always)]
    fn crash_point(&self, _point: CrashPoint) {}
}
