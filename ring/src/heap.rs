//! Segments in process memory: an aligned buffer with a fresh header, and an
//! in-process ring over it.
//!
//! The same layout and the same protocol code as a shared-memory ring; used by
//! the property tests, the fuzz targets and the in-process benches.
//!
//! [`channel`] is the safe way in: a fresh buffer and its only two sides.
//! Attaching a side to a buffer you hold ([`producer`], [`consumer`], or a
//! side over [`shared`]) is `unsafe`: a second producer (or consumer) over
//! the same bytes would be a data race, and only the caller can know that
//! the previous one is gone. Safe code cannot do it:
//!
//! ```compile_fail,E0133
//! let buf = std::sync::Arc::new(ringproof::heap::AlignedBuf::segment(64).unwrap());
//! let second = ringproof::heap::producer(&buf);
//! ```
//! ```compile_fail,E0133
//! let buf = std::sync::Arc::new(ringproof::heap::AlignedBuf::segment(64).unwrap());
//! let view = ringproof::heap::shared(&buf);
//! ```

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::Arc;

use zerocopy::IntoBytes;

use crate::layout::{HEADER_SIZE, Header, LINE, MAX_CAPACITY, MIN_CAPACITY, segment_size};
use crate::mem::MemShared;
use crate::spsc::{Consumer, Corruption, Producer};
use crate::validate::attach;

/// A zeroed, 128-byte aligned heap buffer.
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: AlignedBuf owns its allocation like a Box<[u8]>; shared access
// from several threads goes through the ring protocol (atomics for the words).
unsafe impl Send for AlignedBuf {}
// SAFETY: as above; `&AlignedBuf` only hands out raw pointers.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (at least one).
    pub fn zeroed(len: usize) -> Self {
        let layout = Layout::from_size_align(len.max(1), LINE).expect("buffer size overflows");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout);
        };
        AlignedBuf { ptr, layout }
    }

    /// A buffer holding a fresh, empty segment of `capacity` data bytes, or
    /// `None` when the capacity is not accepted.
    pub fn segment(capacity: u64) -> Option<Self> {
        let header = Header::new(capacity)?;
        let len = usize::try_from(segment_size(capacity)).ok()?;
        let mut buf = AlignedBuf::zeroed(len);
        buf.bytes_mut()[..HEADER_SIZE].copy_from_slice(header.as_bytes());
        Some(buf)
    }

    /// A buffer holding a copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut buf = AlignedBuf::zeroed(bytes.len());
        buf.bytes_mut()[..bytes.len()].copy_from_slice(bytes);
        buf
    }

    /// Length requested at creation.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Whether the buffer is empty (never: it holds at least one byte).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// First byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The bytes, for setting up or corrupting a segment while no ring uses it.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: we own `len` initialised (zeroed) bytes, and `&mut self`
        // excludes every other access through this buffer.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Shared state of an in-process ring: the checked segment, kept alive by an `Arc`.
pub type HeapShared = MemShared<Arc<AlignedBuf>>;

/// Why a heap segment cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapError {
    /// The capacity is not a power of two in the accepted range
    /// ([`crate::layout::capacity_ok`]).
    InvalidCapacity(u64),
    /// The header did not pass [`attach`].
    Attach(crate::AttachError),
    /// The indices did not pass the protocol's checks.
    Corrupted(Corruption),
}

impl core::fmt::Display for HeapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HeapError::InvalidCapacity(capacity) => write!(
                f,
                "invalid ring size {capacity}: must be a power of two from {MIN_CAPACITY} to {MAX_CAPACITY} bytes"
            ),
            HeapError::Attach(e) => e.fmt(f),
            HeapError::Corrupted(what) => write!(f, "ring is corrupted: {what}"),
        }
    }
}

impl std::error::Error for HeapError {}

/// Attaches to a segment held in `buf` (checked like one from shared memory).
///
/// # Safety
///
/// A [`Producer`] or [`Consumer`] made over the returned view (with
/// `Producer::new`, `Consumer::new`) is bound by the contract of [`producer`]
/// or [`consumer`]. Loading and storing the shared words needs nothing.
pub unsafe fn shared(buf: &Arc<AlignedBuf>) -> Result<HeapShared, HeapError> {
    // SAFETY: the buffer is readable for its length while `buf` lives.
    let checked = unsafe { attach(buf.as_ptr(), buf.len()) }.map_err(HeapError::Attach)?;
    // SAFETY: the Arc clone keeps the buffer alive as long as the MemShared;
    // the one-side-per-role rule of `MemShared::new` is our caller's contract.
    Ok(unsafe { MemShared::new(checked, Arc::clone(buf)) })
}

/// A producer over the segment in `buf`, resuming from its committed `tail`.
///
/// # Safety
///
/// While the returned producer lives, no other producer over the segment in
/// `buf` may be used: two producers write the same free bytes, which is a data
/// race when they run on two threads and overlapping `&mut` borrows even on
/// one. Replacing a producer is sound when the old one is dropped or never
/// used again, its last use happening before this call (on another thread:
/// e.g. joined).
pub unsafe fn producer(buf: &Arc<AlignedBuf>) -> Result<Producer<HeapShared>, HeapError> {
    // SAFETY: the producer made here is the one our caller vouches for.
    let shared = unsafe { shared(buf) }?;
    Producer::new(shared).map_err(HeapError::Corrupted)
}

/// A consumer over the segment in `buf`, resuming from its released `head`.
///
/// # Safety
///
/// While the returned consumer lives, no other consumer over the segment in
/// `buf` may be used: one could release bytes the other still reads, and the
/// producer would overwrite them under its borrow. Replacing a consumer is
/// sound when the old one is dropped or never used again, its last use
/// happening before this call (on another thread: e.g. joined).
pub unsafe fn consumer(buf: &Arc<AlignedBuf>) -> Result<Consumer<HeapShared>, HeapError> {
    // SAFETY: the consumer made here is the one our caller vouches for.
    let shared = unsafe { shared(buf) }?;
    Consumer::new(shared).map_err(HeapError::Corrupted)
}

/// A fresh in-process ring of `capacity` bytes: its only producer and its
/// only consumer (nobody else can reach the buffer without `unsafe`).
///
/// # Errors
///
/// [`HeapError::InvalidCapacity`] when `capacity` is not accepted
/// ([`crate::layout::capacity_ok`]).
pub fn channel(capacity: u64) -> Result<(Producer<HeapShared>, Consumer<HeapShared>), HeapError> {
    let buf = Arc::new(AlignedBuf::segment(capacity).ok_or(HeapError::InvalidCapacity(capacity))?);
    // SAFETY: `buf` is new and private to this function: these are the only
    // producer and the only consumer that will ever run over it.
    let producer = unsafe { producer(&buf) }?;
    // SAFETY: as above.
    let consumer = unsafe { consumer(&buf) }?;
    Ok((producer, consumer))
}
