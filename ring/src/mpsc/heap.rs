//! In-process MPSC rings over heap buffers: the same layout and protocol
//! code as a shared-memory ring, for tests and in-process users.
//!
//! [`channel`] is the safe way in: a fresh buffer, one producer per slot and
//! the only consumer. A side over a buffer you hold ([`shared`]) is `unsafe`:
//! two producers in one slot, or two consumers, would race.

use std::sync::Arc;
use std::vec::Vec;

use zerocopy::IntoBytes;

use super::layout::{HEADER_SIZE, Header, Mpsc, segment_size};
use super::validate::{AttachError, attach};
use super::{Consumer, Liveness, OpenError, Producer};
use crate::heap::AlignedBuf;
use crate::mem::MemShared;
use crate::sync::NoHook;

/// Shared state of an in-process MPSC ring.
pub type HeapShared = MemShared<Arc<AlignedBuf>, NoHook, Mpsc>;

/// Why an in-process MPSC ring cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapError {
    /// The capacity or the producer count is not accepted.
    Invalid {
        /// The capacity asked for.
        capacity: u64,
        /// The producer count asked for.
        producers: u32,
    },
    /// The header did not pass [`attach`].
    Attach(AttachError),
    /// A side could not be made.
    Open(OpenError),
}

impl core::fmt::Display for HeapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HeapError::Invalid {
                capacity,
                producers,
            } => write!(
                f,
                "invalid MPSC ring: {capacity} bytes for {producers} producers"
            ),
            HeapError::Attach(e) => e.fmt(f),
            HeapError::Open(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for HeapError {}

/// A buffer holding a fresh, empty MPSC segment, or `None` when the
/// capacity or the producer count is not accepted.
pub fn segment(capacity: u64, max_producers: u32) -> Option<AlignedBuf> {
    let header = Header::new(capacity, max_producers)?;
    let mut buf = AlignedBuf::zeroed(usize::try_from(segment_size(capacity)).ok()?);
    buf.bytes_mut()[..HEADER_SIZE].copy_from_slice(header.as_bytes());
    Some(buf)
}

/// Attaches to the MPSC segment in `buf` (checked like shared memory) and
/// returns the view and its producer count.
///
/// # Safety
///
/// Sides made over the view follow [`MemShared::from_mpsc`]: one consumer,
/// and one producer per slot, at a time.
pub unsafe fn shared(buf: &Arc<AlignedBuf>) -> Result<(HeapShared, u32), HeapError> {
    // SAFETY: the buffer is readable for its length while `buf` lives.
    let checked = unsafe { attach(buf.as_ptr(), buf.len()) }.map_err(HeapError::Attach)?;
    let producers = checked.max_producers();
    // SAFETY: the Arc clone keeps the buffer alive; the one-side-per-role
    // rule is our caller's contract.
    Ok((
        unsafe { MemShared::from_mpsc(checked, Arc::clone(buf)) },
        producers,
    ))
}

/// What [`channel`] makes: the producers, in slot order, and the consumer.
pub type Channel<L> = (Vec<Producer<HeapShared>>, Consumer<HeapShared, L>);

/// The producers (one per slot, `0..producers`) and the consumer of a fresh
/// MPSC ring of `capacity` bytes, whose consumer asks `liveness` about
/// uncommitted records.
pub fn channel<L: Liveness>(
    capacity: u64,
    producers: u32,
    liveness: L,
) -> Result<Channel<L>, HeapError> {
    let invalid = HeapError::Invalid {
        capacity,
        producers,
    };
    let buf = Arc::new(segment(capacity, producers).ok_or(invalid)?);
    let mut sides = Vec::new();
    for slot in 0..producers {
        // SAFETY: `buf` is new and private to this function: each slot gets
        // exactly one producer, and there is one consumer.
        let (view, _) = unsafe { shared(&buf) }?;
        sides.push(Producer::new(view, slot as u8).map_err(HeapError::Open)?);
    }
    // SAFETY: as above.
    let (view, _) = unsafe { shared(&buf) }?;
    let consumer = Consumer::new(view, liveness).map_err(HeapError::Open)?;
    Ok((sides, consumer))
}
