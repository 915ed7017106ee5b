//! The multi-producer / single-consumer protocol, written once over
//! [`Shared`]: many producers (threads or processes) into one consumer,
//! where a producer that dies mid-message blocks nobody.
//!
//! # Claims
//!
//! Positions only grow, as in [`crate::spsc`]. A record has one 64-bit
//! header word ([`layout::Claim`]) in a table beside the data region (one
//! word per 8 data bytes, never payload), reached only atomically
//! ([`Shared::table_word64`]). A producer claims the record at position `p`
//! with **one compare-exchange** of that word, from "free in the lap of `p`"
//! to `UNCOMMITTED{len, slot, gen, lap}`: the claim and its owner are one
//! atomic step, so no observer ever sees a claimed record without its owner.
//! It then writes the payload and commits with **one Release store** of the
//! word (kind `MESSAGE`, the commit point). Records are contiguous: to find
//! `p`, a producer starts at `max(tail hint, head)` and walks over the
//! records claimed in this lap by their lengths; the `tail` hint is advanced
//! after each claim and only saves walking.
//!
//! # Ownership of the bytes
//!
//! - `[head, head + capacity)`: a record claimed there belongs to its
//!   producer until it commits (or gives up), then to the consumer; an
//!   unclaimed place belongs to whoever wins the compare-exchange on its word.
//! - The consumer reads a committed record in place and releases it: it
//!   stamps **every** table word of the released bytes "free in the next
//!   lap" ([`layout::free_word`]), then stores `head` (Release). Stamping
//!   every word, not just the header, matters: records of the next lap
//!   start at other offsets. A word a producer may claim is thus either
//!   free in exactly its lap (full lap, 61 bits) or a claim of this lap,
//!   and since no payload is ever a table word, a producer that stalls
//!   before its compare-exchange meets a later value and fails (no ABA).
//!
//! # Death
//!
//! The consumer finding `UNCOMMITTED` at `head` asks a [`Liveness`] oracle
//! whether its `(slot, gen)` is alive. Alive (even stopped): it waits. Dead:
//! it turns the word to `SKIPPED` with a compare-exchange (a commit cannot
//! be lost: a failed exchange is read again) and goes on. A live producer's
//! record is never skipped.
//!
//! # Untrusted values
//!
//! Everything read from the segment is read once into a local and checked;
//! a bad value poisons the side ([`Corruption`]), never a panic or UB.
//!
//! # Files
//!
//! `layout.rs` (header, record word), `validate.rs` (attach), `error.rs`,
//! `producer.rs`, `consumer.rs`, `heap.rs` (in-process channel, `std`),
//! this file (the words, the oracle, helpers both sides share).

mod consumer;
mod error;
#[cfg(feature = "std")]
pub mod heap;
pub mod layout;
mod producer;
pub mod validate;

pub use consumer::{Consumer, Read, ReadBatch};
pub use error::{Corruption, OpenError, PopValueError, PushError, ReadError};
pub use producer::{Grant, Producer};

use crate::layout::RECORD_HEADER;
use crate::sync::Shared;
use layout::{
    CLOSED_OFFSET, CONSUMER_GEN_OFFSET, CONSUMER_WAIT_OFFSET, HEAD_OFFSET, MAX_SLOTS,
    PRODUCER_WAIT_OFFSET, SLOT_GEN_OFFSET, TAIL_OFFSET,
};

/// Whether the producer that made a claim can still touch the segment.
///
/// # Safety
///
/// `alive(slot, generation)` returns `false` only when the producer that held
/// `slot` in generation `generation` (its low [`layout::GEN_BITS`] bits) will never
/// access the segment again, and its last access happens before the call
/// returns: the consumer then stamps the bytes of its claim. In shared
/// memory this is the kernel-held lease of the slot plus the slot's
/// generation word; a timeout is never one.
pub unsafe trait Liveness {
    /// Whether the producer of `slot` in generation `gen` (low bits) is alive.
    fn alive(&self, slot: u8, generation: u32) -> bool;
}

/// Every producer is alive: for producers that live as long as the
/// process (threads). A producer that leaks a claim (`mem::forget` of a
/// [`Grant`]) then stops the stream at that record.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysAlive;

// SAFETY: never returns `false`.
unsafe impl Liveness for AlwaysAlive {
    fn alive(&self, _slot: u8, _generation: u32) -> bool {
        true
    }
}

/// The words of the MPSC protocol, at the offsets [`layout`] gives them.
pub trait Words: Shared {
    /// Released position, written by the consumer.
    #[inline(always)]
    fn head(&self) -> &Self::W64 {
        self.word64(HEAD_OFFSET)
    }
    /// Claim hint, advanced by producers.
    #[inline(always)]
    fn tail_hint(&self) -> &Self::W64 {
        self.word64(TAIL_OFFSET)
    }
    /// End-of-stream flag, written by producers.
    #[inline(always)]
    fn closed(&self) -> &Self::W32 {
        self.word32(CLOSED_OFFSET)
    }
    /// Futex word producers park on while the ring is full.
    #[inline(always)]
    fn producer_wait(&self) -> &Self::W32 {
        self.word32(PRODUCER_WAIT_OFFSET)
    }
    /// Futex word the consumer parks on while nothing is ready.
    #[inline(always)]
    fn consumer_wait(&self) -> &Self::W32 {
        self.word32(CONSUMER_WAIT_OFFSET)
    }
    /// Generation word of producer slot `slot` (`< MAX_SLOTS`).
    #[inline(always)]
    fn slot_gen(&self, slot: u8) -> &Self::W32 {
        self.word32(SLOT_GEN_OFFSET + 4 * slot as usize)
    }
    /// The header word of the record at `position`.
    #[inline(always)]
    fn record_word(&self, position: u64) -> &Self::W64 {
        self.table_word64((position & (self.capacity() - 1)) as usize)
    }
}

impl<S: Shared + ?Sized> Words for S {}

/// The MPSC words a model must provide: `(offset, name)` of each 64-bit word.
pub const WORDS64: [(usize, &str); 2] = [(HEAD_OFFSET, "head"), (TAIL_OFFSET, "tail")];

/// The MPSC words a model must provide: `(offset, name)` of each 32-bit
/// word. The slot generations come last: a model with `n` producers may
/// take `&WORDS32[..WORDS32_FIXED + n]`.
pub const WORDS32: [(usize, &str); WORDS32_FIXED + MAX_SLOTS] = {
    let mut words = [(0, "slot_gen"); WORDS32_FIXED + MAX_SLOTS];
    words[0] = (CLOSED_OFFSET, "closed");
    words[1] = (PRODUCER_WAIT_OFFSET, "producer_wait");
    words[2] = (CONSUMER_WAIT_OFFSET, "consumer_wait");
    words[3] = (CONSUMER_GEN_OFFSET, "consumer_gen");
    let mut slot = 0;
    while slot < MAX_SLOTS {
        words[WORDS32_FIXED + slot].0 = SLOT_GEN_OFFSET + 4 * slot;
        slot += 1;
    }
    words
};

/// The 32-bit words before the slot table in [`WORDS32`].
pub const WORDS32_FIXED: usize = 4;

/// The lap of `position` in a ring of `capacity` bytes, in full.
#[inline(always)]
const fn lap(position: u64, capacity: u64) -> u64 {
    position >> capacity.trailing_zeros()
}

/// Whether a claimed record of `len` payload bytes, of `kind`, fits where it
/// lies: `to_end` bytes before the end of the data region. A padding
/// record fills them exactly; the end of the stream is empty; any other
/// record fits inside them and is within the largest message.
#[inline(always)]
const fn claim_fits(kind: u64, len: u32, to_end: u64, capacity: u64) -> bool {
    let len = len as u64;
    if kind == layout::kind::PADDING {
        len + RECORD_HEADER == to_end
    } else if kind == layout::kind::END {
        len == 0
    } else {
        len <= crate::layout::max_message(capacity) && crate::layout::record_size(len) <= to_end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_lists_have_distinct_offsets_and_slots_last() {
        let offsets = || {
            WORDS32
                .iter()
                .map(|w| w.0)
                .chain(WORDS64.iter().map(|w| w.0))
        };
        for (i, a) in offsets().enumerate() {
            assert_eq!(offsets().filter(|b| *b == a).count(), 1, "entry {i}");
        }
        assert_eq!(WORDS32[WORDS32_FIXED].0, SLOT_GEN_OFFSET);
        assert_eq!(WORDS32[WORDS32_FIXED + 63].0, SLOT_GEN_OFFSET + 252);
    }

    #[test]
    fn claims_fit_only_inside_the_region_and_padding_exactly() {
        use layout::kind::{MESSAGE, PADDING};
        assert!(claim_fits(MESSAGE, 8, 16, 64));
        assert!(!claim_fits(MESSAGE, 9, 16, 64));
        assert!(!claim_fits(MESSAGE, 32, 64, 64), "over the largest message");
        assert!(claim_fits(PADDING, 8, 16, 64));
        assert!(!claim_fits(PADDING, 0, 16, 64));
        assert!(claim_fits(layout::kind::END, 0, 8, 64));
        assert!(!claim_fits(layout::kind::END, 8, 16, 64));
        assert_eq!(lap(3 * 64 + 8, 64), 3);
    }
}
