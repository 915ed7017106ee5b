//! MPSC operations: what each does, its payloads, the proptest strategy
//! and the `arbitrary` byte format the `mpsc_ops` fuzz target reads.

use std::vec::Vec;

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::*;

use super::MPSC_IMMUTABLE;
use crate::layout::max_message;
use crate::mpsc::layout::segment_size;
use crate::mpsc::{OpenError, PushError, ReadError};

/// One operation on an MPSC ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MpscOp {
    /// Producer `slot` pushes [`mpsc_payload`]`(slot, seed, len)`.
    Push {
        /// Producer slot.
        slot: u8,
        /// Payload length.
        len: usize,
        /// Payload pattern.
        seed: u8,
    },
    /// Producer `slot` reserves `len` bytes, writes them, commits.
    ReserveCommit {
        /// Producer slot.
        slot: u8,
        /// Payload length.
        len: usize,
        /// Payload pattern.
        seed: u8,
    },
    /// Producer `slot` reserves `len` bytes, writes them, drops the grant
    /// (the record is skipped).
    ReserveAbort {
        /// Producer slot.
        slot: u8,
        /// Payload length.
        len: usize,
    },
    /// Producer `slot` reserves `len` bytes, writes half of them and stops
    /// for good holding the claim (`Grant::abandon`), alive until
    /// [`MpscOp::Restart`] of its slot: the consumer must wait there.
    Stall {
        /// Producer slot.
        slot: u8,
        /// Payload length.
        len: usize,
    },
    /// The producer of `slot` dies (with its claim, if it stalled); the
    /// liveness table says so, and a new producer takes the slot.
    Restart {
        /// Producer slot.
        slot: u8,
    },
    /// Producer `slot` closes the stream.
    Close {
        /// Producer slot.
        slot: u8,
    },
    /// The consumer reads a message and releases it.
    Read,
    /// The consumer reads a message and drops it: it is delivered again.
    ReadDrop,
    /// The consumer copies a message into a buffer of `buf_len` bytes.
    PopInto {
        /// Buffer length.
        buf_len: usize,
    },
    /// The consumer reads up to `n` messages in a batch, then releases the
    /// batch or drops it.
    Batch {
        /// Reads tried.
        n: usize,
        /// Release (else drop).
        release: bool,
    },
    /// A hostile peer writes `value` over the 8 bytes at `offset` (a
    /// multiple of 8, past the immutable header).
    ScribbleWord {
        /// Byte offset in the segment.
        offset: usize,
        /// The word written.
        value: u64,
    },
}

impl MpscOp {
    /// Whether this is a write by the peer.
    pub fn is_hostile(&self) -> bool {
        matches!(self, MpscOp::ScribbleWord { .. })
    }
}

/// Why an operation did not do what it asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A producer call failed.
    Push(PushError),
    /// A consumer call failed.
    Read(ReadError),
    /// A new producer could not be made.
    Open(OpenError),
    /// `pop_into`: the message is longer than the buffer (kept).
    TooSmall,
    /// The slot's producer stalled (or could not be re-made): not run.
    NoProducer,
    /// [`MAX_RESTARTS`] reached for the slot: the producer died, and the
    /// slot is not taken again.
    Exhausted,
}

/// What an operation returned: the messages the consumer handed out (a
/// batch hands out several), then the refusal that ended it, if any.
pub type MpscOutcome = (Vec<Vec<u8>>, Option<Refusal>);

/// The payload of `slot`'s messages for `(seed, len)`: starts with the slot
/// and the seed, then position-dependent bytes, so that a message from
/// another producer, out of place or torn, differs.
pub fn mpsc_payload(slot: u8, seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| match i {
            0 => slot,
            1 => seed,
            _ => (i as u8).wrapping_mul(37).wrapping_add(seed) ^ slot.wrapping_mul(101),
        })
        .collect()
}

/// What a producer that gives up or stalls writes: never equal to a
/// committed payload of the same length above 0 (its first byte has bit 7
/// set, a slot never does).
pub fn abandoned_payload(slot: u8, len: usize) -> Vec<u8> {
    mpsc_payload(slot | 0x80, 0xEE, len)
}

/// Payload lengths for a ring of `capacity`: 0, the largest, just over it,
/// small ones, anything that fits.
pub fn mpsc_len_strategy(capacity: u64) -> BoxedStrategy<usize> {
    let max = max_message(capacity) as usize;
    prop_oneof![
        1 => Just(0usize),
        2 => Just(max),
        1 => max + 1..=capacity as usize + 16,
        3 => 0..=16usize,
        5 => 0..=max,
    ]
    .boxed()
}

/// Every producer and consumer operation (none by the peer) for a ring of
/// `capacity` bytes with `producers` slots: the transitions of the state
/// machine.
pub fn mpsc_strategy(capacity: u64, producers: u8) -> BoxedStrategy<MpscOp> {
    let slot = 0..producers;
    let len = mpsc_len_strategy(capacity);
    let seed = any::<u8>();
    prop_oneof![
        8 => (slot.clone(), len.clone(), seed)
            .prop_map(|(slot, len, seed)| MpscOp::Push { slot, len, seed }),
        3 => (slot.clone(), len.clone(), seed)
            .prop_map(|(slot, len, seed)| MpscOp::ReserveCommit { slot, len, seed }),
        2 => (slot.clone(), len.clone()).prop_map(|(slot, len)| MpscOp::ReserveAbort { slot, len }),
        1 => (slot.clone(), len).prop_map(|(slot, len)| MpscOp::Stall { slot, len }),
        2 => slot.clone().prop_map(|slot| MpscOp::Restart { slot }),
        1 => slot.prop_map(|slot| MpscOp::Close { slot }),
        6 => Just(MpscOp::Read),
        2 => Just(MpscOp::ReadDrop),
        2 => (0..=capacity as usize / 2).prop_map(|buf_len| MpscOp::PopInto { buf_len }),
        3 => (0usize..6, any::<bool>()).prop_map(|(n, release)| MpscOp::Batch { n, release }),
    ]
    .boxed()
}

/// Byte format: a tag byte (`tag % 11` picks the operation, in this order),
/// then its fields as little-endian integers; slots, lengths and offsets
/// are raw (fit them to the ring, e.g. with [`MpscOp::fit`]):
///
/// | tag | operation | fields |
/// | --- | --- | --- |
/// | 0, 1 | `Push`, `ReserveCommit` | `slot: u8`, `len: u16`, `seed: u8` |
/// | 2, 3 | `ReserveAbort`, `Stall` | `slot: u8`, `len: u16` |
/// | 4, 5 | `Restart`, `Close` | `slot: u8` |
/// | 6, 7 | `Read`, `ReadDrop` | — |
/// | 8 | `PopInto` | `buf_len: u16` |
/// | 9 | `Batch` | flags `u8`: bits 0..3 `n`, bit 3 release |
/// | 10 | `ScribbleWord` | `offset: u16` (in words), `value: u64` |
impl<'a> Arbitrary<'a> for MpscOp {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let tag = u8::arbitrary(u)?;
        let len = |u: &mut Unstructured<'a>| u16::arbitrary(u).map(usize::from);
        Ok(match tag % 11 {
            0 => MpscOp::Push {
                slot: u.arbitrary()?,
                len: len(u)?,
                seed: u.arbitrary()?,
            },
            1 => MpscOp::ReserveCommit {
                slot: u.arbitrary()?,
                len: len(u)?,
                seed: u.arbitrary()?,
            },
            2 => MpscOp::ReserveAbort {
                slot: u.arbitrary()?,
                len: len(u)?,
            },
            3 => MpscOp::Stall {
                slot: u.arbitrary()?,
                len: len(u)?,
            },
            4 => MpscOp::Restart {
                slot: u.arbitrary()?,
            },
            5 => MpscOp::Close {
                slot: u.arbitrary()?,
            },
            6 => MpscOp::Read,
            7 => MpscOp::ReadDrop,
            8 => MpscOp::PopInto { buf_len: len(u)? },
            9 => {
                let flags = u8::arbitrary(u)?;
                MpscOp::Batch {
                    n: usize::from(flags & 7),
                    release: flags & 8 != 0,
                }
            }
            _ => MpscOp::ScribbleWord {
                offset: 8 * len(u)?,
                value: u.arbitrary()?,
            },
        })
    }
}

impl MpscOp {
    /// Maps a decoded operation onto a ring of `capacity` bytes with
    /// `producers` slots: slots modulo `producers`, lengths modulo
    /// `capacity + 17` (most fit, some exceed the largest message), a
    /// scribble offset onto a word past the immutable header.
    pub fn fit(self, capacity: u64, producers: u8) -> MpscOp {
        let slot = |raw: u8| raw % producers;
        let len = |raw: usize| raw % (capacity as usize + 17);
        let words = (segment_size(capacity) as usize - MPSC_IMMUTABLE) / 8;
        match self {
            MpscOp::Push {
                slot: s,
                len: l,
                seed,
            } => MpscOp::Push {
                slot: slot(s),
                len: len(l),
                seed,
            },
            MpscOp::ReserveCommit {
                slot: s,
                len: l,
                seed,
            } => MpscOp::ReserveCommit {
                slot: slot(s),
                len: len(l),
                seed,
            },
            MpscOp::ReserveAbort { slot: s, len: l } => MpscOp::ReserveAbort {
                slot: slot(s),
                len: len(l),
            },
            MpscOp::Stall { slot: s, len: l } => MpscOp::Stall {
                slot: slot(s),
                len: len(l),
            },
            MpscOp::Restart { slot: s } => MpscOp::Restart { slot: slot(s) },
            MpscOp::Close { slot: s } => MpscOp::Close { slot: slot(s) },
            MpscOp::PopInto { buf_len } => MpscOp::PopInto {
                buf_len: len(buf_len),
            },
            MpscOp::ScribbleWord { offset, value } => MpscOp::ScribbleWord {
                offset: MPSC_IMMUTABLE + 8 * ((offset / 8) % words),
                value,
            },
            other => other,
        }
    }

    /// Appends bytes that [`Arbitrary`] reads back as `self` (for seed
    /// corpora; fitting a fitted operation again leaves it as it is).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let u16_of = |n: usize| (n as u16).to_le_bytes();
        match self {
            MpscOp::Push { slot, len, seed } | MpscOp::ReserveCommit { slot, len, seed } => {
                let tag = u8::from(matches!(self, MpscOp::ReserveCommit { .. }));
                out.extend_from_slice(&[tag, *slot]);
                out.extend_from_slice(&u16_of(*len));
                out.push(*seed);
            }
            MpscOp::ReserveAbort { slot, len } | MpscOp::Stall { slot, len } => {
                let tag = 2 + u8::from(matches!(self, MpscOp::Stall { .. }));
                out.extend_from_slice(&[tag, *slot]);
                out.extend_from_slice(&u16_of(*len));
            }
            MpscOp::Restart { slot } => out.extend_from_slice(&[4, *slot]),
            MpscOp::Close { slot } => out.extend_from_slice(&[5, *slot]),
            MpscOp::Read => out.push(6),
            MpscOp::ReadDrop => out.push(7),
            MpscOp::PopInto { buf_len } => {
                out.push(8);
                out.extend_from_slice(&u16_of(*buf_len));
            }
            MpscOp::Batch { n, release } => {
                out.extend_from_slice(&[9, (*n as u8 & 7) | (u8::from(*release) << 3)]);
            }
            MpscOp::ScribbleWord { offset, value } => {
                out.push(10);
                out.extend_from_slice(&u16_of(*offset / 8));
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
}
