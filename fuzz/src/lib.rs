//! What the fuzz targets run, as plain functions, so that the seed corpus is
//! also replayed by `cargo test` (`tests/corpus.rs`) and written by
//! `examples/gen_corpus.rs`.
//!
//! - [`run_attach`]: untrusted bytes as a segment.
//!   The same bytes are also attached as an MPSC segment ([`run_attach_mpsc`]).
//! - [`run_mpsc_ops`]: an [`MpscOpsInput`] through the test kit's
//!   [`ringproof::testing::MpscDifferential`] (the `mpsc_ops` target).
//! - [`run_ops`]: an [`OpsInput`] through the test kit's
//!   [`Differential`] (the ring against the `VecDeque` oracle that the
//!   property tests use, `ringproof::testing`).
//!
//! Both panic only when the ring breaks a promise; libFuzzer records the panic
//! as a crash. [`seeds`] makes the seed corpora.

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use ringproof::heap::{self, AlignedBuf, HeapError, HeapShared};
use ringproof::layout::{CHECKSUMMED, HEAD_OFFSET, HEADER_SIZE, TAIL_OFFSET, segment_size};
use ringproof::spsc::MAX_POSITION;
use ringproof::testing::{Differential, Op, assert_in_data, payload};
use ringproof::{Consumer, Producer};

pub mod mpsc;
pub mod seeds;

pub use mpsc::{MpscOpsInput, run_attach_mpsc, run_mpsc_ops};

// ---------------------------------------------------------------------------
// `attach`
// ---------------------------------------------------------------------------

/// Splits the input: a little-endian `u16` segment length, the segment, and
/// operation bytes. A shorter input is all segment.
pub fn split_attach_input(data: &[u8]) -> (&[u8], &[u8]) {
    match data {
        [lo, hi, rest @ ..] => {
            let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
            rest.split_at(len)
        }
        _ => (data, &[]),
    }
}

/// Builds an `attach` input from a segment and operation bytes.
pub fn attach_input(segment: &[u8], ops: &[u8]) -> Vec<u8> {
    let len = u16::try_from(segment.len()).expect("seed segments fit a u16 length");
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(segment);
    out.extend_from_slice(ops);
    out
}

/// The `attach` target: `attach` over the segment bytes must return `Ok` or a
/// typed error; on `Ok`, each operation byte drives one call on whichever
/// sides could attach, and each returns `Ok` or a typed error.
pub fn run_attach(data: &[u8]) {
    let (segment, ops) = split_attach_input(data);
    run_attach_mpsc(segment, ops);
    let buf = Arc::new(AlignedBuf::from_bytes(segment));
    // SAFETY: the buffer is readable for its length while `buf` lives.
    let checked = match unsafe { ringproof::attach(buf.as_ptr(), buf.len()) } {
        Ok(checked) => checked,
        Err(e) => {
            // Typed, and displays as one line.
            assert!(!e.to_string().contains('\n'));
            return;
        }
    };
    let capacity = checked.capacity();
    assert!(capacity.is_power_of_two());
    assert_eq!(segment_size(capacity), buf.len() as u64);
    // SAFETY: a fresh buffer; these are its first producer and consumer.
    let mut producer = side(unsafe { heap::producer(&buf) });
    // SAFETY: as above.
    let mut consumer = side(unsafe { heap::consumer(&buf) });
    let mut bytes = ops.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = usize::from(bytes.next().unwrap_or(0));
        match (op % 10, producer.as_mut(), consumer.as_mut()) {
            (0, Some(p), _) => {
                let _ = p.push(&payload(arg * 3, op));
            }
            (1, Some(p), _) => {
                if let Ok(mut grant) = p.reserve(arg) {
                    grant.fill(op);
                    if arg % 2 == 0 {
                        grant.commit();
                    }
                }
            }
            (2, Some(p), _) => {
                let mut batch = p.batch();
                for len in [arg, arg / 2, 0] {
                    let _ = batch.push(&payload(len, op));
                }
                batch.commit();
            }
            (3, Some(p), _) => {
                let _ = p.close();
            }
            (4, Some(p), _) => {
                if let Ok(free) = p.free_bytes() {
                    assert!(free <= capacity);
                }
            }
            (5, _, Some(c)) => {
                if let Ok(read) = c.read() {
                    assert_in_data(&buf, capacity, &read);
                    if arg % 2 == 0 {
                        read.release();
                    }
                }
            }
            (6, _, Some(c)) => {
                let mut batch = c.read_batch();
                for _ in 0..arg % 5 {
                    if let Ok(slice) = batch.read() {
                        assert_in_data(&buf, capacity, slice);
                    }
                }
                batch.release();
            }
            (7, _, Some(c)) => {
                let mut out = vec![0u8; arg];
                let _ = c.pop_into(&mut out);
            }
            (8, _, Some(c)) => {
                if let Ok(used) = c.used_bytes() {
                    assert!(used <= capacity);
                }
            }
            (9, _, _) => {
                // SAFETY: the new producer replaces the old one at once,
                // which is then dropped; one thread.
                producer = side(unsafe { heap::producer(&buf) });
                // SAFETY: as above, for the consumer.
                consumer = side(unsafe { heap::consumer(&buf) });
            }
            _ => {}
        }
    }
}

/// A side that attached, or `None` after a typed error.
fn side<T>(result: Result<T, HeapError>) -> Option<T> {
    match result {
        Ok(side) => Some(side),
        Err(HeapError::Corrupted(_) | HeapError::Attach(_)) => None,
        Err(e) => panic!("unexpected attach error: {e}"),
    }
}

// ---------------------------------------------------------------------------
// `ops`
// ---------------------------------------------------------------------------

/// Operations longer than this are cut (keeps executions fast).
pub const MAX_OPS: usize = 256;

/// The immutable header (magic to checksum): the peer's writes in `ops` leave
/// it alone, as it is read once, at attach, which the `attach` target covers.
const IMMUTABLE: usize = CHECKSUMMED + 8;

/// The `ops` target's input.
///
/// Byte format: `cap_exp: u8` (capacity `32 << (cap_exp % 8)`, 32 to 4096
/// bytes), `start: u16` (see [`OpsInput::start_position`]), then operations
/// in the byte format of [`Op`]'s `Arbitrary` impl until the input ends (at
/// most [`MAX_OPS`]), each fitted to the capacity (see [`fit`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsInput {
    /// Capacity selector.
    pub cap_exp: u8,
    /// Start position selector.
    pub start: u16,
    /// The operations, fitted.
    pub ops: Vec<Op>,
}

/// The divisor of raw lengths: `capacity + 17`, so that most lengths fit
/// the ring and some exceed the largest message.
fn length_span(capacity: u64) -> usize {
    capacity as usize + 17
}

/// Where the peer may write: after the immutable header, to the end.
fn scribble_span(capacity: u64) -> usize {
    segment_size(capacity) as usize - IMMUTABLE
}

/// Maps a decoded operation onto a ring of `capacity`: lengths modulo
/// `capacity + 17`, and a scribble offset into the segment past the
/// immutable header.
pub fn fit(op: Op, capacity: u64) -> Op {
    let len = |raw: usize| raw % length_span(capacity);
    match op {
        Op::Push { len: raw, seed } => Op::Push {
            len: len(raw),
            seed,
        },
        Op::ReserveCommit { len: raw, seed } => Op::ReserveCommit {
            len: len(raw),
            seed,
        },
        Op::ReserveAbort { len: raw } => Op::ReserveAbort { len: len(raw) },
        Op::BatchPush { messages, commit } => Op::BatchPush {
            messages: messages
                .into_iter()
                .map(|(raw, seed)| (len(raw), seed))
                .collect(),
            commit,
        },
        Op::PopInto { buf_len } => Op::PopInto {
            buf_len: len(buf_len),
        },
        Op::Scribble { offset, bytes } => Op::Scribble {
            offset: IMMUTABLE + offset % scribble_span(capacity),
            bytes,
        },
        other => other,
    }
}

/// The inverse of [`fit`] for a fitted operation (for seed corpora).
fn unfit(op: &Op) -> Op {
    match op {
        Op::Scribble { offset, bytes } => Op::Scribble {
            offset: offset - IMMUTABLE,
            bytes: bytes.clone(),
        },
        other => other.clone(),
    }
}

impl<'a> Arbitrary<'a> for OpsInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let cap_exp = u.arbitrary()?;
        let start = u.arbitrary()?;
        let mut input = OpsInput {
            cap_exp,
            start,
            ops: Vec::new(),
        };
        let capacity = input.capacity();
        while !u.is_empty() && input.ops.len() < MAX_OPS {
            input.ops.push(fit(Op::arbitrary(u)?, capacity));
        }
        Ok(input)
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

impl OpsInput {
    /// Data region size: 32 to 4096 bytes.
    pub fn capacity(&self) -> u64 {
        32 << (self.cap_exp % 8)
    }

    /// Where `head` and `tail` start: `start * 8` below `0xFF00`, else within
    /// 256 records (of 8 bytes) of [`MAX_POSITION`], where the producer must
    /// refuse to go further with `Corrupted(Tail)`.
    pub fn start_position(&self) -> u64 {
        if self.start >= 0xFF00 {
            MAX_POSITION - u64::from(0x1_0000 - u32::from(self.start)) * 8
        } else {
            u64::from(self.start) * 8
        }
    }

    /// The bytes `arbitrary` decodes back into this input (for seed corpora).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.cap_exp];
        out.extend_from_slice(&self.start.to_le_bytes());
        for op in &self.ops {
            unfit(op).encode(&mut out);
        }
        out
    }
}

/// The `ops` target: the operations through the test kit's [`Differential`]
/// (differential against the oracle until the first write by the peer;
/// after it, typed results only, slices inside the data region, and a side
/// that reported `Corrupted` keeps reporting the same corruption). The peer
/// never touches the immutable header here, so every re-attach must get past
/// the header check.
pub fn run_ops(input: &OpsInput) {
    let mut ring = Differential::new(input.capacity(), input.start_position());
    for op in &input.ops {
        let got = ring.apply(op).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !op.is_reattach() || !got.is_empty(),
            "{op:?}: re-attach over an intact header failed its check"
        );
    }
}
