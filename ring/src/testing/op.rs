//! The operations the tests run on a ring, and their two generators: a
//! proptest [`Strategy`] per kind of test, and an [`arbitrary::Arbitrary`]
//! impl that reads the byte format of the `ops` fuzz target.
//!
//! An [`Op`] holds exact values (a payload length, an absolute segment
//! offset); a caller that draws raw values maps them first (the fuzz target
//! reduces lengths modulo the capacity). This module only describes
//! operations; [`super::TestRing::apply`] and [`super::Model::apply`] run them.

use std::vec;
use std::vec::Vec;

use arbitrary::{Arbitrary, Unstructured};
use proptest::prelude::{BoxedStrategy, Just, Strategy, any, prop_oneof};

use super::oracle::Model;
use crate::Error;
use crate::layout::{CLOSED_OFFSET, HEAD_OFFSET, HEADER_SIZE, TAIL_OFFSET, max_message};

/// What one operation returned: one entry per ring call (a batch makes
/// several). Pushes give `Ok(vec![])`, reads the payload, `free_bytes` and
/// `used_bytes` the count as 8 little-endian bytes; a write by the peer, or a
/// re-attach refused by the header check, gives no entry.
pub type Outcome = Vec<Result<Vec<u8>, Error>>;

/// One operation on a ring: a call on the producer or the consumer, or a
/// write into the segment by a hostile peer.
///
/// The payload of `(len, seed)` is [`super::payload`]`(len, seed)`. Lengths may
/// exceed the largest message (`TooLarge` is part of what is tested).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `Producer::push`.
    Push {
        /// Payload length.
        len: usize,
        /// Payload seed.
        seed: u8,
    },
    /// `reserve`, write the payload, `commit`.
    ReserveCommit {
        /// Payload length.
        len: usize,
        /// Payload seed.
        seed: u8,
    },
    /// `reserve`, write, drop the grant: nothing is sent.
    ReserveAbort {
        /// Length reserved.
        len: usize,
    },
    /// `batch`, one push per message, then `commit` (or drop).
    BatchPush {
        /// `(len, seed)` of each message.
        messages: Vec<(usize, u8)>,
        /// Commit the batch (else drop it).
        commit: bool,
    },
    /// `Consumer::pop` (a copy).
    Pop,
    /// `read`, then `release`.
    ReadRelease,
    /// `read`, then drop: the message stays.
    ReadDrop,
    /// `pop_into` a buffer of this size.
    PopInto {
        /// Buffer size.
        buf_len: usize,
    },
    /// `read_batch`, `n` reads, then `release` (or drop).
    BatchPop {
        /// Reads.
        n: usize,
        /// Release the batch (else drop it).
        release: bool,
    },
    /// `Producer::close`.
    Close,
    /// `Producer::free_bytes`.
    FreeBytes,
    /// `Consumer::used_bytes`.
    UsedBytes,
    /// Drop the producer and take a new one over the same segment.
    ReattachProducer,
    /// Drop the consumer and take a new one over the same segment.
    ReattachConsumer,
    /// The peer writes `bytes` at segment offset `offset`, moved back so
    /// that they fit in the segment.
    Scribble {
        /// Segment offset.
        offset: usize,
        /// The bytes written.
        bytes: Vec<u8>,
    },
    /// The peer sets a word to `value` (a 4-byte word takes the low half).
    /// A word that would cross the end of the segment is moved back.
    SetWord {
        /// Which word.
        word: Word,
        /// The new value.
        value: u64,
    },
    /// The peer moves a word by `by` (a multiple of 8: plausible but wrong),
    /// moved back like [`Op::SetWord`]'s.
    NudgeWord {
        /// Which word.
        word: Word,
        /// Added to the word, wrapping.
        by: i64,
    },
}

/// A word of the segment that the peer rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    /// The 8 bytes at this segment offset (e.g. `HEAD_OFFSET`, or half-way
    /// into a word to hit its high half).
    At(usize),
    /// The 4-byte `closed` flag alone.
    Closed,
    /// The 8-byte header of the record at the released position (`head`):
    /// the next one the consumer reads.
    RecordAtHead,
}

/// Which party an operation runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A producer call, or a new producer.
    Producer,
    /// A consumer call, or a new consumer.
    Consumer,
    /// A write into the segment by the peer.
    Peer,
}

impl Op {
    /// The party `self` runs on.
    pub fn side(&self) -> Side {
        match self {
            Op::Push { .. }
            | Op::ReserveCommit { .. }
            | Op::ReserveAbort { .. }
            | Op::BatchPush { .. }
            | Op::Close
            | Op::FreeBytes
            | Op::ReattachProducer => Side::Producer,
            Op::Pop
            | Op::ReadRelease
            | Op::ReadDrop
            | Op::PopInto { .. }
            | Op::BatchPop { .. }
            | Op::UsedBytes
            | Op::ReattachConsumer => Side::Consumer,
            Op::Scribble { .. } | Op::SetWord { .. } | Op::NudgeWord { .. } => Side::Peer,
        }
    }

    /// Whether `self` replaces a side with a new one.
    pub fn is_reattach(&self) -> bool {
        matches!(self, Op::ReattachProducer | Op::ReattachConsumer)
    }
}

// ---------------------------------------------------------------------------
// The byte format (`arbitrary`), read by the `ops` fuzz target
// ---------------------------------------------------------------------------

/// Byte format: a tag byte (`tag % 16` picks the operation, in this order),
/// then its fields as little-endian integers:
///
/// | tag | operation | fields |
/// | --- | --- | --- |
/// | 0 | `Push` | `len: u16`, `seed: u8` |
/// | 1 | `ReserveCommit` | `len: u16`, `seed: u8` |
/// | 2 | `ReserveAbort` | `len: u16` |
/// | 3 | `BatchPush` | flags `u8` (bits 0..3 the count, bit 3 commit), one `len: u16` each; a message's seed is `len as u8` |
/// | 4..=13 | `Pop`, `ReadRelease`, `ReadDrop`, `PopInto` (`buf_len: u16`), `BatchPop` (flags `u8`: bits 0..3 `n`, bit 3 release), `Close`, `FreeBytes`, `UsedBytes`, `ReattachProducer`, `ReattachConsumer` | as listed |
/// | 14 | `Scribble` | `offset: u16`, `u8` (count - 1) % 8, the bytes |
/// | 15 | `SetWord` / `NudgeWord` | flags `u8`: `% 4` head, tail, closed, record at head; bit 7 nudge by `(value as i8) * 8`; then `value: u64` |
impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let tag = u8::arbitrary(u)?;
        let len = |u: &mut Unstructured<'a>| u16::arbitrary(u).map(usize::from);
        Ok(match tag % 16 {
            0 => Op::Push {
                len: len(u)?,
                seed: u.arbitrary()?,
            },
            1 => Op::ReserveCommit {
                len: len(u)?,
                seed: u.arbitrary()?,
            },
            2 => Op::ReserveAbort { len: len(u)? },
            3 => {
                let flags = u8::arbitrary(u)?;
                let messages = (0..flags & 7)
                    .map(|_| u16::arbitrary(u).map(|raw| (usize::from(raw), raw as u8)))
                    .collect::<arbitrary::Result<_>>()?;
                Op::BatchPush {
                    messages,
                    commit: flags & 8 != 0,
                }
            }
            4 => Op::Pop,
            5 => Op::ReadRelease,
            6 => Op::ReadDrop,
            7 => Op::PopInto { buf_len: len(u)? },
            8 => {
                let flags = u8::arbitrary(u)?;
                Op::BatchPop {
                    n: usize::from(flags & 7),
                    release: flags & 8 != 0,
                }
            }
            9 => Op::Close,
            10 => Op::FreeBytes,
            11 => Op::UsedBytes,
            12 => Op::ReattachProducer,
            13 => Op::ReattachConsumer,
            14 => {
                let offset = len(u)?;
                let count = usize::from(u8::arbitrary(u)? % 8) + 1;
                let bytes = (0..count)
                    .map(|_| u.arbitrary())
                    .collect::<arbitrary::Result<_>>()?;
                Op::Scribble { offset, bytes }
            }
            _ => {
                let flags = u8::arbitrary(u)?;
                let value = u64::arbitrary(u)?;
                let word = match flags % 4 {
                    0 => Word::At(HEAD_OFFSET),
                    1 => Word::At(TAIL_OFFSET),
                    2 => Word::Closed,
                    _ => Word::RecordAtHead,
                };
                if flags & 0x80 != 0 {
                    Op::NudgeWord {
                        word,
                        by: i64::from(value as i8) * 8,
                    }
                } else {
                    Op::SetWord { word, value }
                }
            }
        })
    }
}

impl Op {
    /// Appends the bytes that [`Arbitrary`] reads back as `self` (for seed
    /// corpora). Values are written in their field's width.
    ///
    /// # Panics
    ///
    /// When `self` has no byte form: a batch message whose seed is not
    /// `len as u8`, a nudge that is not a multiple of 8 in `-1024..=1016`,
    /// or a word other than head, tail, closed and the record at head.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let tag: u8 = match self {
            Op::Push { .. } => 0,
            Op::ReserveCommit { .. } => 1,
            Op::ReserveAbort { .. } => 2,
            Op::BatchPush { .. } => 3,
            Op::Pop => 4,
            Op::ReadRelease => 5,
            Op::ReadDrop => 6,
            Op::PopInto { .. } => 7,
            Op::BatchPop { .. } => 8,
            Op::Close => 9,
            Op::FreeBytes => 10,
            Op::UsedBytes => 11,
            Op::ReattachProducer => 12,
            Op::ReattachConsumer => 13,
            Op::Scribble { .. } => 14,
            Op::SetWord { .. } | Op::NudgeWord { .. } => 15,
        };
        out.push(tag);
        let u16_of = |n: usize| u16::try_from(n).expect("a u16 field").to_le_bytes();
        match self {
            Op::Push { len, seed } | Op::ReserveCommit { len, seed } => {
                out.extend_from_slice(&u16_of(*len));
                out.push(*seed);
            }
            Op::ReserveAbort { len } | Op::PopInto { buf_len: len } => {
                out.extend_from_slice(&u16_of(*len))
            }
            Op::BatchPush { messages, commit } => {
                assert!(messages.len() < 8, "{self:?}: at most 7 messages");
                out.push(messages.len() as u8 | if *commit { 8 } else { 0 });
                for &(len, seed) in messages {
                    assert_eq!(seed, len as u8, "{self:?}: the seed is `len as u8`");
                    out.extend_from_slice(&u16_of(len));
                }
            }
            Op::BatchPop { n, release } => {
                assert!(*n < 8, "{self:?}: at most 7 reads");
                out.push(*n as u8 | if *release { 8 } else { 0 });
            }
            Op::Scribble { offset, bytes } => {
                assert!((1..=8).contains(&bytes.len()), "{self:?}: 1 to 8 bytes");
                out.extend_from_slice(&u16_of(*offset));
                out.push(bytes.len() as u8 - 1);
                out.extend_from_slice(bytes);
            }
            Op::SetWord { word, value } => {
                out.push(word_code(*word));
                out.extend_from_slice(&value.to_le_bytes());
            }
            Op::NudgeWord { word, by } => {
                let step = i8::try_from(by / 8).ok().filter(|_| by % 8 == 0);
                let step = step.unwrap_or_else(|| panic!("{self:?}: no byte form"));
                out.push(word_code(*word) | 0x80);
                out.extend_from_slice(&u64::from(step as u8).to_le_bytes());
            }
            _ => {}
        }
    }
}

fn word_code(word: Word) -> u8 {
    match word {
        Word::At(HEAD_OFFSET) => 0,
        Word::At(TAIL_OFFSET) => 1,
        Word::Closed => 2,
        Word::RecordAtHead => 3,
        Word::At(offset) => panic!("the word at {offset} has no byte form"),
    }
}

// ---------------------------------------------------------------------------
// proptest strategies
// ---------------------------------------------------------------------------

/// Payload lengths for a ring of `capacity`: mostly ones that fit, often the
/// boundary around the maximum, sometimes more than the whole ring.
pub fn len_strategy(capacity: u64) -> BoxedStrategy<usize> {
    let max = max_message(capacity) as usize;
    let cap = capacity as usize;
    prop_oneof![
        6 => 0..=max,
        2 => max.saturating_sub(2)..=max + 2,
        1 => max + 1..=cap + 16,
    ]
    .boxed()
}

/// A length whose record, claimed at the model's tail, ends exactly at the
/// end of the data region or crosses it (a padding record, then the record
/// at offset 0), clamped to what the ring accepts.
pub fn wrap_lengths(model: &Model) -> BoxedStrategy<usize> {
    let max = model.max_message();
    let to_end = (model.capacity - model.tail_offset()) as usize;
    let exact = to_end.saturating_sub(8).min(max);
    let cross = (to_end.saturating_sub(7)).min(max);
    prop_oneof![Just(exact), Just(cross), Just(to_end.min(max))].boxed()
}

/// Every producer and consumer operation, none by the peer, with lengths
/// drawn for `model`'s ring (including pushes that wrap at its tail): the
/// transitions of the state machines.
pub fn sequential_strategy(model: &Model) -> BoxedStrategy<Op> {
    let cap = model.capacity;
    let len = len_strategy(cap);
    let seed = any::<u8>();
    prop_oneof![
        8 => (len.clone(), seed).prop_map(|(len, seed)| Op::Push { len, seed }),
        2 => (wrap_lengths(model), seed).prop_map(|(len, seed)| Op::Push { len, seed }),
        3 => (len.clone(), seed).prop_map(|(len, seed)| Op::ReserveCommit { len, seed }),
        2 => len.clone().prop_map(|len| Op::ReserveAbort { len }),
        3 => (proptest::collection::vec((len, seed), 0..6), any::<bool>())
            .prop_map(|(messages, commit)| Op::BatchPush { messages, commit }),
        5 => Just(Op::Pop),
        3 => Just(Op::ReadRelease),
        2 => Just(Op::ReadDrop),
        2 => (0..=cap as usize / 2).prop_map(|buf_len| Op::PopInto { buf_len }),
        3 => (0usize..6, any::<bool>()).prop_map(|(n, release)| Op::BatchPop { n, release }),
        1 => Just(Op::Close),
        1 => Just(Op::FreeBytes),
        1 => Just(Op::UsedBytes),
        1 => Just(Op::ReattachProducer),
        1 => Just(Op::ReattachConsumer),
    ]
    .boxed()
}

/// The header words a hostile peer rewrites: `head`, `tail`, `closed`, and
/// the high halves of `head` and `tail`.
pub fn live_word_offsets() -> BoxedStrategy<usize> {
    prop_oneof![
        Just(HEAD_OFFSET),
        Just(TAIL_OFFSET),
        Just(CLOSED_OFFSET),
        Just(HEAD_OFFSET + 4),
        Just(TAIL_OFFSET + 4),
    ]
    .boxed()
}

/// Where a hostile peer writes in a segment of `capacity`: a live word, the
/// immutable header, a record header (any multiple of 8 in the data
/// region), or any data byte.
pub fn scribble_offsets(capacity: u64) -> BoxedStrategy<usize> {
    let cap = capacity as usize;
    prop_oneof![
        2 => live_word_offsets(),
        1 => 0..HEADER_SIZE,
        3 => (0..cap / 8).prop_map(|k| HEADER_SIZE + 8 * k),
        2 => HEADER_SIZE..HEADER_SIZE + cap,
    ]
    .boxed()
}

/// Producer and consumer operations on a ring of `capacity`, lengths that
/// fit, mixed with writes by a hostile peer: 1 to 8 random bytes at
/// [`scribble_offsets`], or a live word moved by a multiple of 8.
pub fn hostile_strategy(capacity: u64) -> BoxedStrategy<Op> {
    let cap = capacity as usize;
    let len = 0..=cap / 2;
    prop_oneof![
        6 => (len.clone(), any::<u8>()).prop_map(|(len, seed)| Op::Push { len, seed }),
        1 => len.clone().prop_map(|len| Op::ReserveAbort { len }),
        2 => (proptest::collection::vec(len, 0..5), any::<bool>()).prop_map(|(lens, commit)| {
            let messages = lens.into_iter().map(|len| (len, len as u8)).collect();
            Op::BatchPush { messages, commit }
        }),
        4 => Just(Op::ReadRelease),
        1 => Just(Op::ReadDrop),
        2 => (0usize..5, any::<bool>()).prop_map(|(n, release)| Op::BatchPop { n, release }),
        1 => Just(Op::Close),
        1 => Just(Op::FreeBytes),
        1 => Just(Op::UsedBytes),
        1 => Just(Op::ReattachProducer),
        1 => Just(Op::ReattachConsumer),
        2 => (scribble_offsets(capacity), proptest::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(offset, bytes)| Op::Scribble { offset, bytes }),
        1 => (live_word_offsets(), -4i64..=4).prop_map(|(offset, by)| Op::NudgeWord {
            word: Word::At(offset),
            by: by * 8,
        }),
    ]
    .boxed()
}
