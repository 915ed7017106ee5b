//! The single-producer / single-consumer protocol, written once over [`Shared`].
//!
//! # Ownership of the bytes
//!
//! Positions only grow. At any moment the data region is split by the two
//! published positions:
//!
//! - `[head, tail)` holds committed records. They belong to the consumer: the
//!   producer never writes there.
//! - `[tail, head + capacity)` is free space. It belongs to the producer: the
//!   consumer never reads there.
//!
//! The producer writes a record in its free space, then makes it the
//! consumer's with **one Release store of `tail`** (the commit point). The
//! consumer reads records, then gives their bytes back with one Release store
//! of `head`. Each store is paired with an Acquire load on the other side, so
//! the bytes written before a store are visible after the matching load.
//!
//! # Untrusted values
//!
//! Everything read from the segment (the other side's index, the record
//! headers, our own index, which only we should write) is read once into a
//! local and checked before use. A value that breaks an invariant poisons
//! this side: the call returns its error's `Corrupted` variant, and so does every later
//! call, without touching the segment again.
//!
//! # Caching
//!
//! Each side caches the other's index and reloads it only when the cached
//! value says the ring is full (producer) or empty (consumer).
//!
//! # Files
//!
//! - `producer.rs`: [`Producer`], its zero-copy [`Grant`] and its [`Batch`];
//! - `consumer.rs`: [`Consumer`], its in-place [`Message`] and its [`ReadBatch`];
//! - `error.rs`: the error of each operation ([`PushError`], [`ReadError`],
//!   [`PopIntoError`], [`PopValueError`], [`Corruption`]) and [`Error`],
//!   which each converts into;
//! - this file: the words of the protocol ([`Words`]) and the helpers both
//!   sides share.

mod consumer;
mod error;
mod producer;

pub use consumer::{Consumer, Message, ReadBatch};
pub use error::{Corruption, Error, PopIntoError, PopValueError, PushError, ReadError};
pub use producer::{Batch, Grant, Producer};

use crate::layout::{
    CLOSED_OFFSET, CONSUMER_GEN_OFFSET, CONSUMER_WAIT_OFFSET, HEAD_OFFSET, PRODUCER_GEN_OFFSET,
    PRODUCER_WAIT_OFFSET, RECORD_ALIGN, TAIL_OFFSET,
};
use crate::sync::Shared;

/// The words of the SPSC protocol, at the offsets [`crate::layout`] gives
/// them, on any [`Shared`].
pub trait Words: Shared {
    /// Released position, written by the consumer.
    #[inline(always)]
    fn head(&self) -> &Self::W64 {
        self.word64(HEAD_OFFSET)
    }
    /// Committed position, written by the producer.
    #[inline(always)]
    fn tail(&self) -> &Self::W64 {
        self.word64(TAIL_OFFSET)
    }
    /// End-of-stream flag, written by the producer.
    #[inline(always)]
    fn closed(&self) -> &Self::W32 {
        self.word32(CLOSED_OFFSET)
    }
    /// Futex word the producer parks on while the ring is full.
    #[inline(always)]
    fn producer_wait(&self) -> &Self::W32 {
        self.word32(PRODUCER_WAIT_OFFSET)
    }
    /// Futex word the consumer parks on while the ring is empty.
    #[inline(always)]
    fn consumer_wait(&self) -> &Self::W32 {
        self.word32(CONSUMER_WAIT_OFFSET)
    }
    /// The generation word of the producer (`true`) or consumer role,
    /// written by the shm layer when it hands a role over.
    #[inline(always)]
    fn generation(&self, producer: bool) -> &Self::W32 {
        self.word32(if producer {
            PRODUCER_GEN_OFFSET
        } else {
            CONSUMER_GEN_OFFSET
        })
    }
}

impl<S: Shared + ?Sized> Words for S {}

/// The SPSC words a model must provide: `(offset, name)` of each 64-bit word.
pub const WORDS64: [(usize, &str); 2] = [(HEAD_OFFSET, "head"), (TAIL_OFFSET, "tail")];

/// The SPSC words a model must provide: `(offset, name)` of each 32-bit word.
pub const WORDS32: [(usize, &str); 5] = [
    (CLOSED_OFFSET, "closed"),
    (PRODUCER_WAIT_OFFSET, "producer_wait"),
    (CONSUMER_WAIT_OFFSET, "consumer_wait"),
    (PRODUCER_GEN_OFFSET, "producer_gen"),
    (CONSUMER_GEN_OFFSET, "consumer_gen"),
];

pub use crate::layout::MAX_POSITION;

/// Checks the two published positions as a fresh side finds them.
fn check_positions(head: u64, tail: u64, capacity: u64) -> Result<(), Corruption> {
    // `head <= MAX_POSITION` too: with both below it, `tail - head` cannot
    // wrap into a small value (a head near 2^64 would pass the check below).
    if head % RECORD_ALIGN != 0 || head > MAX_POSITION {
        return Err(Corruption::Head);
    }
    if tail % RECORD_ALIGN != 0 || tail > MAX_POSITION || tail.wrapping_sub(head) > capacity {
        return Err(Corruption::Tail);
    }
    Ok(())
}

/// Reads the 8 bytes of a record header exactly once (volatile), as they lie
/// in memory (split them with `from_ne_bytes`).
///
/// The data region of every shipped segment is 8-aligned, so this is one
/// aligned 8-byte load; a [`Shared`] whose region is not falls back to bytes.
///
/// # Safety
///
/// `ptr` is valid for reads of 8 bytes that the protocol lets the caller read.
#[inline(always)]
unsafe fn read_header(ptr: *const u8) -> [u8; 8] {
    let word = ptr.cast::<u64>();
    if word.is_aligned() {
        // SAFETY: the caller guarantees 8 readable bytes at `ptr`, and `word`
        // is aligned (checked). Volatile: the header is read exactly once,
        // into this local.
        unsafe { word.read_volatile() }.to_ne_bytes()
    } else {
        let mut bytes = [0u8; 8];
        for (i, byte) in bytes.iter_mut().enumerate() {
            // SAFETY: i < 8 bytes inside the record header; volatile: the
            // header is read exactly once, into this local.
            *byte = unsafe { ptr.add(i).read_volatile() };
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::read_header;

    #[test]
    fn read_header_reads_the_bytes_as_they_lie_aligned_or_not() {
        let words = [0x0102_0304_0506_0708u64, 0x1112_1314_1516_1718, 0];
        let bytes: &[u8] = zerocopy::IntoBytes::as_bytes(&words[..]);
        for start in 0..8 {
            let mut want = [0u8; 8];
            want.copy_from_slice(&bytes[start..start + 8]);
            // SAFETY: `start + 8 <= 24` bytes of `words`, which we may read.
            let got = unsafe { read_header(bytes[start..].as_ptr()) };
            assert_eq!(got, want, "offset {start}");
        }
    }
}
