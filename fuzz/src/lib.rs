//! What the fuzz targets run, as plain functions, so that the seed corpus is
//! also replayed by `cargo test` (`tests/corpus.rs`) and written by
//! `examples/gen_corpus.rs`.
//!
//! - [`run_attach`]: untrusted bytes as a segment.
//! - [`run_ops`]: an [`OpsInput`] against the `VecDeque` oracle of the
//!   property tests (`harness/tests/oracle/mod.rs`, included by path).
//!
//! Both panic only when the ring breaks a promise; libFuzzer records the panic
//! as a crash.

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use ringproof::heap::{self, AlignedBuf, HeapError, HeapShared};
use ringproof::layout::{CLOSED_OFFSET, HEAD_OFFSET, HEADER_SIZE, TAIL_OFFSET, segment_size};
use ringproof::spsc::MAX_POSITION;
use ringproof::spsc::Words;
use ringproof::sync::Ordering;
use ringproof::{Consumer, Error, Producer};

#[path = "../../harness/tests/oracle/mod.rs"]
pub mod oracle;

use oracle::{Model, payload};

/// Every result of one operation: pushes give `Ok(vec![])`, reads the payload.
pub type Outcome = Vec<Result<Vec<u8>, Error>>;

/// Asserts that `slice` lies inside the data region of `buf` (`capacity` bytes
/// after the header): the ring never hands out anything else.
fn assert_in_data(buf: &AlignedBuf, capacity: u64, slice: &[u8]) {
    let data = buf.as_ptr() as usize + HEADER_SIZE;
    let start = slice.as_ptr() as usize;
    assert!(
        slice.is_empty() || (start >= data && start + slice.len() <= data + capacity as usize),
        "slice {start:#x}+{} outside the data region {data:#x}+{capacity}",
        slice.len()
    );
}

/// Writes `bytes` at `offset` of the segment, as a hostile peer would.
fn scribble(buf: &AlignedBuf, offset: usize, bytes: &[u8]) {
    let offset = offset.min(buf.len().saturating_sub(bytes.len()));
    let len = bytes.len().min(buf.len());
    // SAFETY: `offset + len <= buf.len()` (clamped above). No ring call runs
    // while we write (one thread), and the ring reads these bytes only with
    // atomic or volatile loads, exactly as it would after another process wrote them.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.as_ptr().add(offset), len) };
}

/// Reads the 8 bytes at `offset` of the segment.
fn peek_word(buf: &AlignedBuf, offset: usize) -> u64 {
    let mut word = [0u8; 8];
    if offset + 8 <= buf.len() {
        // SAFETY: in bounds (checked above); single thread, nothing writes meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr().add(offset), word.as_mut_ptr(), 8) };
    }
    u64::from_ne_bytes(word)
}

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
        Err(HeapError::Ring(Error::Corrupted(_)) | HeapError::Attach(_)) => None,
        Err(e) => panic!("unexpected attach error: {e}"),
    }
}

// ---------------------------------------------------------------------------
// `ops`
// ---------------------------------------------------------------------------

/// Operations longer than this are cut (keeps executions fast).
pub const MAX_OPS: usize = 256;

/// Which live word a [`Op::SetWord`] / [`Op::NudgeWord`] targets.
fn word_offset(which: u8, buf: &AlignedBuf, capacity: u64) -> usize {
    match which % 4 {
        0 => HEAD_OFFSET,
        1 => TAIL_OFFSET,
        2 => CLOSED_OFFSET,
        // The record header at the released position: the next one read.
        _ => HEADER_SIZE + (peek_word(buf, HEAD_OFFSET) & (capacity - 1)) as usize,
    }
}

/// One step of an [`OpsInput`]. Raw values; [`run_ops`] interprets lengths
/// modulo `capacity + 17` (so some exceed the largest message).
///
/// Byte format (what [`OpsInput::encode`] writes and `arbitrary` reads):
/// a tag byte (`tag % 16` is the variant, in declaration order), then the
/// fields as little-endian integers; flags bytes as documented per variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// 0: `push` of `payload(len, seed)`. Fields: `len: u16`, `seed: u8`.
    Push { len: u16, seed: u8 },
    /// 1: `reserve`, fill, `commit`. Fields: `len: u16`, `seed: u8`.
    ReserveCommit { len: u16, seed: u8 },
    /// 2: `reserve`, fill, drop. Field: `len: u16`.
    ReserveAbort { len: u16 },
    /// 3: `batch` of up to 7 pushes, then commit or drop. Flags `u8`:
    /// bits 0..3 the count, bit 3 commit; then one `u16` length each.
    BatchPush { lens: Vec<u16>, commit: bool },
    /// 4: `pop`.
    Pop,
    /// 5: `read` then `release`.
    ReadRelease,
    /// 6: `read` then drop.
    ReadDrop,
    /// 7: `pop_into` a buffer. Field: `buf_len: u16`.
    PopInto { buf_len: u16 },
    /// 8: `read_batch` of up to 7 reads, then release or drop. Flags `u8`:
    /// bits 0..3 the count, bit 3 release.
    BatchPop { n: u8, release: bool },
    /// 9: `close`.
    Close,
    /// 10: `free_bytes`.
    FreeBytes,
    /// 11: `used_bytes`.
    UsedBytes,
    /// 12: a new producer over the same segment.
    ReattachProducer,
    /// 13: a new consumer over the same segment.
    ReattachConsumer,
    /// 14: the peer writes 1 to 8 bytes at `offset % segment length`.
    /// Fields: `offset: u16`, `u8` (count - 1) % 8, the bytes.
    Scribble { offset: u16, bytes: Vec<u8> },
    /// 15: the peer rewrites a live word (`which % 4`: head, tail, closed,
    /// the record header at head). Flags `u8`: bit 7 set moves the word by
    /// `(value as i8) * 8` (plausible but wrong), else sets it to `value`.
    /// Fields: `which: u8`, `value: u64`.
    SetWord { which: u8, nudge: bool, value: u64 },
}

fn tag_of(op: &Op) -> u8 {
    match op {
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
        Op::SetWord { .. } => 15,
    }
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let tag = u8::arbitrary(u)?;
        Ok(match tag % 16 {
            0 => Op::Push {
                len: u.arbitrary()?,
                seed: u.arbitrary()?,
            },
            1 => Op::ReserveCommit {
                len: u.arbitrary()?,
                seed: u.arbitrary()?,
            },
            2 => Op::ReserveAbort {
                len: u.arbitrary()?,
            },
            3 => {
                let flags = u8::arbitrary(u)?;
                let lens = (0..flags & 7)
                    .map(|_| u.arbitrary())
                    .collect::<arbitrary::Result<_>>()?;
                Op::BatchPush {
                    lens,
                    commit: flags & 8 != 0,
                }
            }
            4 => Op::Pop,
            5 => Op::ReadRelease,
            6 => Op::ReadDrop,
            7 => Op::PopInto {
                buf_len: u.arbitrary()?,
            },
            8 => {
                let flags = u8::arbitrary(u)?;
                Op::BatchPop {
                    n: flags & 7,
                    release: flags & 8 != 0,
                }
            }
            9 => Op::Close,
            10 => Op::FreeBytes,
            11 => Op::UsedBytes,
            12 => Op::ReattachProducer,
            13 => Op::ReattachConsumer,
            14 => {
                let offset = u.arbitrary()?;
                let count = usize::from(u8::arbitrary(u)? % 8) + 1;
                let bytes = (0..count)
                    .map(|_| u.arbitrary())
                    .collect::<arbitrary::Result<_>>()?;
                Op::Scribble { offset, bytes }
            }
            _ => {
                let which = u8::arbitrary(u)?;
                Op::SetWord {
                    which: which & 0x7f,
                    nudge: which & 0x80 != 0,
                    value: u.arbitrary()?,
                }
            }
        })
    }
}

/// The `ops` target's input.
///
/// Byte format: `cap_exp: u8` (capacity `32 << (cap_exp % 8)`, 32 to 4096
/// bytes), `start: u16` (see [`OpsInput::start_position`]), then operations
/// until the input ends (at most [`MAX_OPS`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsInput {
    /// Capacity selector.
    pub cap_exp: u8,
    /// Start position selector.
    pub start: u16,
    /// The operations.
    pub ops: Vec<Op>,
}

impl<'a> Arbitrary<'a> for OpsInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let cap_exp = u.arbitrary()?;
        let start = u.arbitrary()?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            ops.push(Op::arbitrary(u)?);
        }
        Ok(OpsInput {
            cap_exp,
            start,
            ops,
        })
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
            out.push(tag_of(op));
            match op {
                Op::Push { len, seed } | Op::ReserveCommit { len, seed } => {
                    out.extend_from_slice(&len.to_le_bytes());
                    out.push(*seed);
                }
                Op::ReserveAbort { len } => out.extend_from_slice(&len.to_le_bytes()),
                Op::BatchPush { lens, commit } => {
                    out.push(lens.len().min(7) as u8 | if *commit { 8 } else { 0 });
                    for len in lens.iter().take(7) {
                        out.extend_from_slice(&len.to_le_bytes());
                    }
                }
                Op::PopInto { buf_len } => out.extend_from_slice(&buf_len.to_le_bytes()),
                Op::BatchPop { n, release } => out.push((n & 7) | if *release { 8 } else { 0 }),
                Op::Scribble { offset, bytes } => {
                    out.extend_from_slice(&offset.to_le_bytes());
                    let count = bytes.len().clamp(1, 8);
                    out.push(count as u8 - 1);
                    out.extend(
                        bytes
                            .iter()
                            .copied()
                            .chain(std::iter::repeat(0))
                            .take(count),
                    );
                }
                Op::SetWord {
                    which,
                    nudge,
                    value,
                } => {
                    out.push((which & 0x7f) | if *nudge { 0x80 } else { 0 });
                    out.extend_from_slice(&value.to_le_bytes());
                }
                _ => {}
            }
        }
        out
    }
}

/// The ring under test: one segment, one producer, one consumer.
struct Ring {
    buf: Arc<AlignedBuf>,
    capacity: u64,
    producer: Producer<HeapShared>,
    consumer: Consumer<HeapShared>,
}

fn unit(r: Result<(), Error>) -> Result<Vec<u8>, Error> {
    r.map(|()| Vec::new())
}

fn bytes_of(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

impl Ring {
    fn len(&self, raw: u16) -> usize {
        usize::from(raw) % (self.capacity as usize + 17)
    }

    /// Runs `op`; returns the ring's results (none for the peer's writes).
    fn apply(&mut self, op: &Op) -> Outcome {
        let Ring {
            buf,
            capacity,
            producer,
            consumer,
        } = self;
        let capacity = *capacity;
        let len = |raw: u16| usize::from(raw) % (capacity as usize + 17);
        match op {
            Op::Push { len: raw, seed } => vec![unit(producer.push(&payload(len(*raw), *seed)))],
            Op::ReserveCommit { len: raw, seed } => {
                let len = len(*raw);
                vec![unit(producer.reserve(len).map(|mut grant| {
                    grant.copy_from_slice(&payload(len, *seed));
                    grant.commit();
                }))]
            }
            Op::ReserveAbort { len: raw } => {
                vec![unit(
                    producer
                        .reserve(len(*raw))
                        .map(|mut grant| grant.fill(0xEE)),
                )]
            }
            Op::BatchPush { lens, commit } => {
                let mut batch = producer.batch();
                let out: Outcome = lens
                    .iter()
                    .map(|&raw| unit(batch.push(&payload(len(raw), raw as u8))))
                    .collect();
                if *commit {
                    batch.commit();
                }
                out
            }
            Op::Pop => vec![consumer.pop()],
            Op::ReadRelease | Op::ReadDrop => vec![consumer.read().map(|read| {
                assert_in_data(buf, capacity, &read);
                let bytes = read.to_vec();
                if *op == Op::ReadRelease {
                    read.release();
                }
                bytes
            })],
            Op::PopInto { buf_len } => {
                let mut out = vec![0u8; len(*buf_len)];
                vec![consumer.pop_into(&mut out).map(|n| out[..n].to_vec())]
            }
            Op::BatchPop { n, release } => {
                let mut batch = consumer.read_batch();
                let out: Outcome = (0..*n)
                    .map(|_| {
                        batch.read().map(|slice| {
                            assert_in_data(buf, capacity, slice);
                            slice.to_vec()
                        })
                    })
                    .collect();
                if *release {
                    batch.release();
                }
                out
            }
            Op::Close => vec![unit(producer.close())],
            Op::FreeBytes => vec![producer.free_bytes().map(|free| {
                assert!(free <= capacity && free % 8 == 0, "free_bytes {free}");
                bytes_of(free)
            })],
            Op::UsedBytes => vec![consumer.used_bytes().map(|used| {
                assert!(used <= capacity && used % 8 == 0, "used_bytes {used}");
                bytes_of(used)
            })],
            // SAFETY: the new producer replaces the old one at once, which
            // is then dropped; one thread.
            Op::ReattachProducer => match unsafe { heap::producer(buf) } {
                Ok(new) => {
                    *producer = new;
                    vec![Ok(Vec::new())]
                }
                Err(HeapError::Ring(e)) => vec![Err(e)],
                Err(e) => panic!("re-attach over an intact header: {e}"),
            },
            // SAFETY: as above, for the consumer.
            Op::ReattachConsumer => match unsafe { heap::consumer(buf) } {
                Ok(new) => {
                    *consumer = new;
                    vec![Ok(Vec::new())]
                }
                Err(HeapError::Ring(e)) => vec![Err(e)],
                Err(e) => panic!("re-attach over an intact header: {e}"),
            },
            Op::Scribble { offset, bytes } => {
                // The immutable header (bytes 0..32) is left alone here: it is
                // read once, at attach, which the `attach` target covers.
                let span = buf.len() - 32;
                scribble(buf, 32 + usize::from(*offset) % span, bytes);
                Vec::new()
            }
            Op::SetWord {
                which,
                nudge,
                value,
            } => {
                let offset = word_offset(*which, buf, capacity);
                let new = if *nudge {
                    peek_word(buf, offset).wrapping_add_signed(i64::from(*value as i8) * 8)
                } else {
                    *value
                };
                let bytes = new.to_ne_bytes();
                // `closed` is a 4-byte word next to `consumer_wait`; write just it.
                let bytes = if offset == CLOSED_OFFSET {
                    &bytes[..4]
                } else {
                    &bytes[..]
                };
                scribble(buf, offset, bytes);
                Vec::new()
            }
        }
    }
}

/// The model's answer for `op`, or `None` for the peer's writes.
fn model_apply(model: &mut Model, op: &Op, ring: &Ring) -> Option<Outcome> {
    let unit = |r: Result<(), Error>| r.map(|()| Vec::new());
    Some(match op {
        Op::Push { len, seed } | Op::ReserveCommit { len, seed } => {
            vec![unit(model.push(payload(ring.len(*len), *seed)))]
        }
        Op::ReserveAbort { len } => vec![unit(model.reserve_abort(ring.len(*len)))],
        Op::BatchPush { lens, commit } => {
            let messages: Vec<Vec<u8>> = lens
                .iter()
                .map(|&raw| payload(ring.len(raw), raw as u8))
                .collect();
            model.batch_push(&messages, *commit)
        }
        Op::Pop | Op::ReadRelease => vec![model.pop()],
        Op::ReadDrop => vec![model.peek(0).map(|m| m.bytes.clone())],
        Op::PopInto { buf_len } => vec![model.pop_into(ring.len(*buf_len))],
        Op::BatchPop { n, release } => model.read_batch(usize::from(*n), *release),
        Op::Close => vec![unit(model.close())],
        Op::FreeBytes => vec![model.free_bytes().map(bytes_of)],
        Op::UsedBytes => vec![Ok(bytes_of(model.used()))],
        Op::ReattachProducer => {
            model.reattach_producer();
            vec![Ok(Vec::new())]
        }
        Op::ReattachConsumer => vec![Ok(Vec::new())],
        Op::Scribble { .. } | Op::SetWord { .. } => return None,
    })
}

fn is_producer_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Push { .. }
            | Op::ReserveCommit { .. }
            | Op::ReserveAbort { .. }
            | Op::BatchPush { .. }
            | Op::Close
            | Op::FreeBytes
    )
}

/// The `ops` target: differential against the oracle until the first write by
/// the peer; after it, typed results only, slices inside the data region, and
/// a side that reported `Corrupted` keeps reporting the same corruption.
pub fn run_ops(input: &OpsInput) {
    let capacity = input.capacity();
    let start = input.start_position();
    let mut segment = AlignedBuf::segment(capacity).expect("capacity in range");
    let bytes = segment.bytes_mut();
    bytes[HEAD_OFFSET..HEAD_OFFSET + 8].copy_from_slice(&start.to_ne_bytes());
    bytes[TAIL_OFFSET..TAIL_OFFSET + 8].copy_from_slice(&start.to_ne_bytes());
    let buf = Arc::new(segment);
    let mut ring = Ring {
        // SAFETY: a fresh buffer; these are its first producer and consumer.
        producer: unsafe { heap::producer(&buf) }.expect("fresh producer"),
        // SAFETY: as above.
        consumer: unsafe { heap::consumer(&buf) }.expect("fresh consumer"),
        buf,
        capacity,
    };
    let mut model = Some(Model::new(capacity, start));
    let mut producer_poison: Option<Error> = None;
    let mut consumer_poison: Option<Error> = None;
    for op in &input.ops {
        let expected = match model.as_mut() {
            Some(m) => model_apply(m, op, &ring),
            None => None,
        };
        if expected.is_none() {
            model = None;
        }
        let got = ring.apply(op);
        if let (Some(expected), Some(model)) = (expected, model.as_ref()) {
            assert_eq!(got, expected, "{op:?}: ring and oracle disagree");
            // SAFETY: the view only loads the shared words; no side runs over it.
            let shared = unsafe { heap::shared(&ring.buf) }.expect("intact header");
            // Acquire: pairs with the consumer's Release store of `head` (same thread).
            assert_eq!(shared.head().load(Ordering::Acquire), model.head);
            // Acquire: pairs with the producer's Release store of `tail`.
            assert_eq!(shared.tail().load(Ordering::Acquire), model.tail);
            assert_eq!(ring.producer.position(), model.tail);
            assert_eq!(ring.consumer.position(), model.head);
        }
        let poison = match op {
            Op::Scribble { .. } | Op::SetWord { .. } => continue,
            Op::ReattachProducer => {
                if got.first().is_some_and(Result::is_ok) {
                    producer_poison = None;
                }
                continue;
            }
            Op::ReattachConsumer => {
                if got.first().is_some_and(Result::is_ok) {
                    consumer_poison = None;
                }
                continue;
            }
            op if is_producer_op(op) => &mut producer_poison,
            _ => &mut consumer_poison,
        };
        for result in &got {
            if let Some(previous) = poison {
                assert_eq!(
                    result,
                    &Err(*previous),
                    "{op:?}: a poisoned side stays poisoned"
                );
            }
            if let Err(e @ Error::Corrupted(_)) = result {
                *poison = Some(*e);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Seed corpora
// ---------------------------------------------------------------------------

/// The seed inputs committed under `fuzz/corpus/`: `(target, file name, bytes)`.
/// `examples/gen_corpus.rs` writes them; `tests/corpus.rs` checks that the
/// committed files include them and replays every committed file.
pub mod seeds {
    use super::*;
    use ringproof::layout::{CHECKSUMMED, RECORD_MESSAGE, RECORD_PADDING, checksum};

    /// A segment of `capacity` bytes after `script` ran on a producer and a
    /// consumer over it, starting from position `start`.
    fn live_segment(
        capacity: u64,
        start: u64,
        script: impl FnOnce(&mut Producer<HeapShared>, &mut Consumer<HeapShared>),
    ) -> Vec<u8> {
        let mut segment = AlignedBuf::segment(capacity).expect("capacity in range");
        let bytes = segment.bytes_mut();
        bytes[HEAD_OFFSET..HEAD_OFFSET + 8].copy_from_slice(&start.to_ne_bytes());
        bytes[TAIL_OFFSET..TAIL_OFFSET + 8].copy_from_slice(&start.to_ne_bytes());
        let buf = Arc::new(segment);
        {
            // SAFETY: a fresh buffer; these are its first producer and consumer.
            let mut producer = unsafe { heap::producer(&buf) }.expect("producer");
            // SAFETY: as above.
            let mut consumer = unsafe { heap::consumer(&buf) }.expect("consumer");
            script(&mut producer, &mut consumer);
        }
        let mut segment = Arc::try_unwrap(buf).expect("sides dropped");
        segment.bytes_mut().to_vec()
    }

    /// Recomputes the header checksum, so that only the field changed fails.
    fn reseal(segment: &mut [u8]) {
        let mut covered = [0u8; CHECKSUMMED];
        covered.copy_from_slice(&segment[..CHECKSUMMED]);
        let sum = checksum(&covered);
        segment[CHECKSUMMED..CHECKSUMMED + 8].copy_from_slice(&sum.to_ne_bytes());
    }

    fn record(len: u32, kind: u32) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&len.to_ne_bytes());
        out[4..].copy_from_slice(&kind.to_ne_bytes());
        out
    }

    /// Operation bytes for the `attach` target: read, push, batch, close, re-attach.
    const ATTACH_OPS: &[u8] = &[
        5, 0, 6, 3, 0, 4, 1, 6, 2, 2, 4, 0, 8, 0, 7, 200, 9, 0, 5, 1, 3, 0, 5, 0, 6, 4,
    ];

    fn attach_seeds() -> Vec<(&'static str, Vec<u8>)> {
        let mut out = Vec::new();
        let mut add = |name, segment: Vec<u8>| out.push((name, attach_input(&segment, ATTACH_OPS)));

        add("fresh-32", live_segment(32, 0, |_, _| {}));
        add("fresh-1024", live_segment(1024, 0, |_, _| {}));
        let midstream = live_segment(256, 0, |p, c| {
            for i in 0..5u8 {
                p.push(&payload(usize::from(i) * 9, i)).expect("fits");
            }
            c.pop().expect("message");
            c.pop().expect("message");
        });
        add("midstream-256", midstream.clone());
        let wrapped = live_segment(64, 0, |p, c| {
            p.push(&[1; 16]).expect("fits"); // 0..24
            p.push(&[2; 16]).expect("fits"); // 24..48
            c.pop().expect("message");
            c.pop().expect("message");
            p.push(&[3; 16]).expect("fits"); // padding 48..64, record 64..88
        });
        add("wrapped-64", wrapped.clone());
        add(
            "closed-256",
            live_segment(256, 0, |p, c| {
                p.push(b"last words").expect("fits");
                p.push(b"").expect("fits");
                c.pop().expect("message");
                p.close().expect("close");
            }),
        );
        add(
            "near-max-position-128",
            live_segment(128, MAX_POSITION - 64, |p, _| {
                p.push(&[9; 20]).expect("fits");
            }),
        );

        // Hand-made corrupt segments, each breaking one check.
        let fresh = live_segment(256, 0, |_, _| {});
        let mut bad = fresh.clone();
        bad[0] = b'X';
        reseal(&mut bad);
        add("corrupt-magic", bad);
        let mut bad = fresh.clone();
        bad[..8].fill(0);
        add("corrupt-magic-zero", bad);
        let mut bad = fresh.clone();
        bad[8..12].copy_from_slice(&2u32.to_ne_bytes());
        reseal(&mut bad);
        add("corrupt-version", bad);
        let mut bad = fresh.clone();
        bad[12..16].copy_from_slice(&512u32.to_ne_bytes());
        reseal(&mut bad);
        add("corrupt-header-size", bad);
        let mut bad = fresh.clone();
        bad[16..24].copy_from_slice(&1000u64.to_ne_bytes());
        reseal(&mut bad);
        add("corrupt-capacity", bad);
        let mut bad = fresh.clone();
        bad[16..24].copy_from_slice(&128u64.to_ne_bytes());
        add("corrupt-checksum", bad);
        add("corrupt-size-short", fresh[..fresh.len() - 8].to_vec());
        add("corrupt-too-small", fresh[..100].to_vec());
        let mut bad = midstream.clone();
        bad[HEAD_OFFSET..HEAD_OFFSET + 8].copy_from_slice(&3u64.to_ne_bytes());
        add("corrupt-head-unaligned", bad);
        let mut bad = midstream.clone();
        bad[HEAD_OFFSET..HEAD_OFFSET + 8].copy_from_slice(&(u64::MAX - 7).to_ne_bytes());
        add("corrupt-head-near-u64-max", bad);
        let mut bad = midstream.clone();
        bad[TAIL_OFFSET..TAIL_OFFSET + 8].copy_from_slice(&4096u64.to_ne_bytes());
        add("corrupt-tail-too-far", bad);
        let mut bad = midstream.clone();
        let head = peek_word_of(&bad, HEAD_OFFSET) as usize % 256;
        bad[HEADER_SIZE + head..HEADER_SIZE + head + 8].copy_from_slice(&record(9, 0xDEAD));
        add("corrupt-record-kind", bad);
        let mut bad = midstream;
        let head = peek_word_of(&bad, HEAD_OFFSET) as usize % 256;
        bad[HEADER_SIZE + head..HEADER_SIZE + head + 8]
            .copy_from_slice(&record(u32::MAX, RECORD_MESSAGE));
        add("corrupt-record-length", bad);
        let mut bad = wrapped;
        bad[HEADER_SIZE + 48..HEADER_SIZE + 56].copy_from_slice(&record(0, RECORD_PADDING));
        add("corrupt-padding-length", bad);
        out
    }

    fn peek_word_of(segment: &[u8], offset: usize) -> u64 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&segment[offset..offset + 8]);
        u64::from_ne_bytes(word)
    }

    fn ops(cap_exp: u8, start: u16, ops: Vec<Op>) -> Vec<u8> {
        OpsInput {
            cap_exp,
            start,
            ops,
        }
        .encode()
    }

    fn ops_seeds() -> Vec<(&'static str, Vec<u8>)> {
        use Op::*;
        let push = |len, seed| Push { len, seed };
        vec![
            (
                "fresh-32",
                ops(0, 0, vec![push(3, 1), Pop, Pop, UsedBytes, FreeBytes]),
            ),
            (
                "midstream-256",
                ops(
                    3,
                    0,
                    vec![
                        push(10, 1),
                        push(40, 2),
                        ReserveCommit { len: 7, seed: 3 },
                        push(0, 4),
                        Pop,
                        ReadDrop,
                        BatchPop {
                            n: 2,
                            release: true,
                        },
                        UsedBytes,
                        FreeBytes,
                    ],
                ),
            ),
            (
                "wrapped-64",
                ops(
                    1,
                    0,
                    vec![
                        push(16, 1),
                        push(16, 2),
                        Pop,
                        Pop,
                        push(16, 3),
                        push(8, 4),
                        ReadRelease,
                        Pop,
                    ],
                ),
            ),
            (
                "closed-256",
                ops(
                    3,
                    0,
                    vec![push(5, 1), Close, push(5, 2), Pop, Pop, Close, UsedBytes],
                ),
            ),
            (
                "full-and-too-large-32",
                ops(
                    0,
                    0,
                    vec![
                        push(8, 1),
                        push(8, 2),
                        push(0, 3),
                        push(9, 4),
                        Pop,
                        push(0, 5),
                        FreeBytes,
                    ],
                ),
            ),
            (
                "batches-128",
                ops(
                    2,
                    0,
                    vec![
                        BatchPush {
                            lens: vec![1, 2, 3, 60],
                            commit: true,
                        },
                        BatchPush {
                            lens: vec![4, 5],
                            commit: false,
                        },
                        BatchPop {
                            n: 3,
                            release: false,
                        },
                        BatchPop {
                            n: 7,
                            release: true,
                        },
                        ReserveAbort { len: 30 },
                        push(30, 6),
                        PopInto { buf_len: 10 },
                        PopInto { buf_len: 64 },
                    ],
                ),
            ),
            (
                "reattach-64",
                ops(
                    1,
                    7,
                    vec![
                        push(12, 1),
                        ReattachProducer,
                        push(12, 2),
                        ReadDrop,
                        ReattachConsumer,
                        Pop,
                        Close,
                        ReattachProducer,
                        push(1, 3),
                        Pop,
                        Pop,
                    ],
                ),
            ),
            (
                "near-max-position-32",
                ops(
                    0,
                    0xFFF8,
                    vec![
                        push(8, 1),
                        Pop,
                        push(8, 2),
                        Pop,
                        push(8, 3),
                        push(0, 4),
                        Close,
                    ],
                ),
            ),
            (
                "hostile-head",
                ops(
                    2,
                    0,
                    vec![
                        push(20, 1),
                        SetWord {
                            which: 0,
                            nudge: false,
                            value: 3,
                        },
                        Pop,
                        FreeBytes,
                        push(1, 2),
                    ],
                ),
            ),
            (
                "hostile-tail",
                ops(
                    2,
                    0,
                    vec![
                        push(20, 1),
                        SetWord {
                            which: 1,
                            nudge: true,
                            value: 2,
                        },
                        Pop,
                        Pop,
                        push(1, 2),
                        UsedBytes,
                    ],
                ),
            ),
            (
                "hostile-record",
                ops(
                    2,
                    0,
                    vec![
                        push(20, 1),
                        SetWord {
                            which: 3,
                            nudge: false,
                            value: u64::from(RECORD_MESSAGE) << 32 | 0xFFFF,
                        },
                        ReadDrop,
                        ReattachConsumer,
                        Pop,
                    ],
                ),
            ),
            (
                "hostile-scribble-data",
                ops(
                    1,
                    0,
                    vec![
                        push(16, 1),
                        push(16, 2),
                        Scribble {
                            offset: (HEADER_SIZE - 32 + 24) as u16,
                            bytes: vec![0xFF; 8],
                        },
                        Pop,
                        Pop,
                        Pop,
                    ],
                ),
            ),
        ]
    }

    /// Every seed: `(target, file name, bytes)`.
    pub fn all() -> Vec<(&'static str, &'static str, Vec<u8>)> {
        let attach = attach_seeds().into_iter().map(|(n, b)| ("attach", n, b));
        let ops = ops_seeds().into_iter().map(|(n, b)| ("ops", n, b));
        attach.chain(ops).collect()
    }
}
