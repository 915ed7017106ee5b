//! The ring under test: one in-process segment ([`crate::heap`], the same
//! layout and protocol code as shared memory) with one producer and one
//! consumer; [`TestRing::apply`] runs an [`Op`] on it, [`Differential`]
//! runs it on the ring and on the oracle and compares; the scribbler
//! ([`scribble`], [`peek_word`]) writes into the segment as a hostile peer.

use std::string::String;
use std::sync::Arc;
use std::vec::Vec;
use std::{format, vec};

use super::op::{Op, Outcome, Side, Word};
use super::oracle::{Model, bytes_of, payload};
use crate::heap::{self, AlignedBuf, HeapError, HeapShared};
use crate::layout::{CLOSED_OFFSET, HEAD_OFFSET, HEADER_SIZE, TAIL_OFFSET};
use crate::spsc::Words;
use crate::sync::Ordering;
use crate::{Consumer, Error, Producer};

/// Writes `bytes` at byte `offset` of the segment, as a hostile peer would.
///
/// # Panics
///
/// When the bytes do not lie inside the segment.
pub fn scribble(buf: &AlignedBuf, offset: usize, bytes: &[u8]) {
    assert!(
        offset + bytes.len() <= buf.len(),
        "scribble at {offset}+{} outside a {}-byte segment",
        bytes.len(),
        buf.len()
    );
    // SAFETY: in bounds (asserted above); no ring call runs during the write
    // (one thread), and the ring reads these bytes only with atomic or
    // volatile loads, as it would after another process wrote them.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.as_ptr().add(offset), bytes.len()) };
}

/// Writes `bytes` at byte `offset` of the shared-memory segment `name`
/// through its file, as a hostile peer in another process would (a mapping
/// of the segment sees the write).
///
/// # Panics
///
/// When the segment cannot be opened for writing or written.
#[cfg(feature = "shm")]
pub fn scribble_segment(name: &crate::shm::TempName, offset: usize, bytes: &[u8]) {
    use std::os::unix::fs::FileExt as _;
    let path = name.path();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {} to scribble: {e}", path.display()));
    file.write_all_at(bytes, offset as u64)
        .unwrap_or_else(|e| panic!("scribble at {offset} of {}: {e}", path.display()));
}

/// Reads the `N` bytes at `offset` of the segment.
///
/// # Panics
///
/// When they do not lie inside the segment.
pub fn peek<const N: usize>(buf: &AlignedBuf, offset: usize) -> [u8; N] {
    assert!(
        offset + N <= buf.len(),
        "peek at {offset}+{N} outside the segment"
    );
    let mut out = [0u8; N];
    // SAFETY: in bounds (asserted above); the caller runs no ring call
    // meanwhile, so nothing writes these bytes during the copy.
    unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr().add(offset), out.as_mut_ptr(), N) };
    out
}

/// Reads the 8-byte word at `offset` of the segment.
pub fn peek_word(buf: &AlignedBuf, offset: usize) -> u64 {
    u64::from_ne_bytes(peek(buf, offset))
}

/// Asserts that `slice` lies inside the data region of `buf` (`capacity`
/// bytes after the header): the ring never hands out anything else.
pub fn assert_in_data(buf: &AlignedBuf, capacity: u64, slice: &[u8]) {
    assert_in_region(buf, HEADER_SIZE, capacity, slice);
}

/// Asserts that `slice` lies inside the `capacity` bytes that follow a
/// `header`-byte header in `buf`.
pub(crate) fn assert_in_region(buf: &AlignedBuf, header: usize, capacity: u64, slice: &[u8]) {
    let region = buf.as_ptr() as usize + header;
    let start = slice.as_ptr() as usize;
    assert!(
        slice.is_empty() || (start >= region && start + slice.len() <= region + capacity as usize),
        "slice {start:#x}+{} outside the data region {region:#x}+{capacity}",
        slice.len()
    );
}

/// A segment of `capacity` bytes with one producer and one consumer.
#[derive(Debug)]
pub struct TestRing {
    /// The segment.
    pub buf: Arc<AlignedBuf>,
    /// Its data region size.
    pub capacity: u64,
    /// The producer ([`Op::ReattachProducer`] replaces it).
    pub producer: Producer<HeapShared>,
    /// The consumer ([`Op::ReattachConsumer`] replaces it).
    pub consumer: Consumer<HeapShared>,
}

impl TestRing {
    /// A fresh segment whose `head` and `tail` both start at `start` (a
    /// multiple of 8), with its first producer and consumer.
    ///
    /// # Panics
    ///
    /// On a capacity the ring refuses, or a start it refuses to attach at.
    pub fn new(capacity: u64, start: u64) -> TestRing {
        let mut segment = AlignedBuf::segment(capacity).expect("capacity in range");
        let bytes = segment.bytes_mut();
        bytes[HEAD_OFFSET..HEAD_OFFSET + 8].copy_from_slice(&start.to_ne_bytes());
        bytes[TAIL_OFFSET..TAIL_OFFSET + 8].copy_from_slice(&start.to_ne_bytes());
        let buf = Arc::new(segment);
        // SAFETY: a fresh buffer; these are its first producer and consumer.
        let producer = unsafe { heap::producer(&buf) }.expect("fresh producer");
        // SAFETY: as above.
        let consumer = unsafe { heap::consumer(&buf) }.expect("fresh consumer");
        TestRing {
            buf,
            capacity,
            producer,
            consumer,
        }
    }

    /// The segment and both sides, for tests that drive them by hand.
    pub fn into_parts(self) -> (Arc<AlignedBuf>, Producer<HeapShared>, Consumer<HeapShared>) {
        (self.buf, self.producer, self.consumer)
    }

    /// The segment offset and width of `word` now, the offset moved back so
    /// that the word fits in the segment (a rewritten, unaligned `head` can
    /// put the record header at head across the end).
    fn word_place(&self, word: Word) -> (usize, usize) {
        let (offset, width) = match word {
            Word::At(offset) => (offset, 8),
            Word::Closed => (CLOSED_OFFSET, 4),
            Word::RecordAtHead => {
                let head = peek_word(&self.buf, HEAD_OFFSET);
                (HEADER_SIZE + (head & (self.capacity - 1)) as usize, 8)
            }
        };
        (offset.min(self.buf.len() - width), width)
    }

    /// Runs `op` and returns the ring's results. Panics when the ring hands
    /// out a slice outside the data region, reports a count above the
    /// capacity or not a multiple of 8, stages a batch record it reported as
    /// failed, or answers a re-attach with an untyped error.
    pub fn apply(&mut self, op: &Op) -> Outcome {
        let capacity = self.capacity;
        let buf = &self.buf;
        let count = |what: &str, n: u64| {
            assert!(n <= capacity && n % 8 == 0, "{what} {n}");
            bytes_of(n)
        };
        match op {
            Op::Push { len, seed } => vec![unit(self.producer.push(&payload(*len, *seed)))],
            Op::ReserveCommit { len, seed } => {
                vec![unit(self.producer.reserve(*len).map(|mut grant| {
                    grant.copy_from_slice(&payload(*len, *seed));
                    grant.commit();
                }))]
            }
            Op::ReserveAbort { len } => {
                vec![unit(
                    self.producer
                        .reserve(*len)
                        .map(|mut grant| grant.fill(0xEE)),
                )]
            }
            Op::BatchPush { messages, commit } => {
                let mut batch = self.producer.batch();
                let out: Outcome = messages
                    .iter()
                    .map(|&(len, seed)| unit(batch.push(&payload(len, seed))))
                    .collect();
                assert_eq!(batch.len(), out.iter().filter(|r| r.is_ok()).count());
                if *commit {
                    batch.commit();
                }
                out
            }
            Op::Pop => vec![self.consumer.pop().map_err(Error::from)],
            Op::ReadRelease | Op::ReadDrop => vec![
                self.consumer
                    .read()
                    .map(|read| {
                        assert_in_data(buf, capacity, &read);
                        let bytes = read.to_vec();
                        if *op == Op::ReadRelease {
                            read.release();
                        }
                        bytes
                    })
                    .map_err(Error::from),
            ],
            Op::PopInto { buf_len } => {
                let mut out = vec![0u8; *buf_len];
                vec![
                    self.consumer
                        .pop_into(&mut out)
                        .map(|n| out[..n].to_vec())
                        .map_err(Error::from),
                ]
            }
            Op::BatchPop { n, release } => {
                let mut batch = self.consumer.read_batch();
                let out: Outcome = (0..*n)
                    .map(|_| {
                        batch
                            .read()
                            .map(|slice| {
                                assert_in_data(buf, capacity, slice);
                                slice.to_vec()
                            })
                            .map_err(Error::from)
                    })
                    .collect();
                if *release {
                    batch.release();
                }
                out
            }
            Op::Close => vec![unit(self.producer.close())],
            Op::FreeBytes => vec![
                self.producer
                    .free_bytes()
                    .map(|n| count("free_bytes", n))
                    .map_err(Error::from),
            ],
            Op::UsedBytes => vec![
                self.consumer
                    .used_bytes()
                    .map(|n| count("used_bytes", n))
                    .map_err(Error::from),
            ],
            // SAFETY: the new producer replaces the old one at once, which
            // is then dropped; one thread.
            Op::ReattachProducer => replace(&mut self.producer, unsafe { heap::producer(buf) }),
            // SAFETY: as above, for the consumer.
            Op::ReattachConsumer => replace(&mut self.consumer, unsafe { heap::consumer(buf) }),
            Op::Scribble { offset, bytes } => {
                let offset = (*offset).min(self.buf.len().saturating_sub(bytes.len()));
                scribble(&self.buf, offset, bytes);
                Vec::new()
            }
            Op::SetWord { word, value } => {
                let (offset, width) = self.word_place(*word);
                scribble(&self.buf, offset, &value.to_ne_bytes()[..width]);
                Vec::new()
            }
            Op::NudgeWord { word, by } => {
                let (offset, width) = self.word_place(*word);
                if width == 4 {
                    let old = u32::from_ne_bytes(peek(&self.buf, offset));
                    let new = old.wrapping_add(*by as u32);
                    scribble(&self.buf, offset, &new.to_ne_bytes());
                } else {
                    let new = peek_word(&self.buf, offset).wrapping_add_signed(*by);
                    scribble(&self.buf, offset, &new.to_ne_bytes());
                }
                Vec::new()
            }
        }
    }

    /// Checks the segment and both sides against `model` (which saw the
    /// same operations and no write by the peer): the header still
    /// attaches with the model's capacity; the `head`, `tail` and `closed`
    /// words, the sides' positions, `is_closed` and `max_message` equal the
    /// model's; and the model's own accounting holds.
    pub fn check(&self, model: &Model) -> Result<(), String> {
        fn same<T: PartialEq + core::fmt::Debug>(
            what: &str,
            ring: T,
            model: T,
        ) -> Result<(), String> {
            if ring == model {
                Ok(())
            } else {
                Err(format!("{what}: ring {ring:?}, model {model:?}"))
            }
        }
        // SAFETY: the buffer is readable for its length while `self` lives.
        let checked = unsafe { crate::attach(self.buf.as_ptr(), self.buf.len()) }
            .map_err(|e| format!("the header no longer validates: {e}"))?;
        same("capacity", checked.capacity(), model.capacity)?;
        // SAFETY: the view only loads the shared words; no side runs over it.
        let shared = unsafe { heap::shared(&self.buf) }.map_err(|e| format!("shared view: {e}"))?;
        // Relaxed: (all three) both sides of a `TestRing` run on this thread,
        // so every store they made is sequenced before these loads; nothing
        // is read on the strength of them but the words themselves.
        same(
            "head word",
            shared.head().load(Ordering::Relaxed),
            model.head,
        )?;
        same(
            "tail word",
            shared.tail().load(Ordering::Relaxed),
            model.tail,
        )?;
        let closed = shared.closed().load(Ordering::Relaxed) != 0;
        same("closed word", closed, model.closed)?;
        same("producer position", self.producer.position(), model.tail)?;
        same("consumer position", self.consumer.position(), model.head)?;
        same("is_closed", self.producer.is_closed(), model.closed)?;
        same(
            "max_message",
            self.producer.max_message(),
            model.max_message(),
        )?;
        if model.used() > model.capacity {
            return Err(format!(
                "model: {} used of {}",
                model.used(),
                model.capacity
            ));
        }
        let last_end = model.queue.back().map_or(model.head, |m| m.end);
        same("model: the last record ends at tail", last_end, model.tail)
    }
}

/// The outcome of an operation that returns nothing on success.
fn unit<E: Into<Error>>(result: Result<(), E>) -> Result<Vec<u8>, Error> {
    result.map(|()| Vec::new()).map_err(Into::into)
}

/// Puts a new side in place of `side` and returns `[Ok]`; or keeps the old
/// one and returns the protocol's typed error, or nothing when the header
/// check refused the new side (the peer rewrote the immutable header).
fn replace<T>(side: &mut T, new: Result<T, HeapError>) -> Outcome {
    match new {
        Ok(new) => {
            *side = new;
            vec![Ok(Vec::new())]
        }
        Err(HeapError::Corrupted(what)) => vec![Err(Error::Corrupted(what))],
        Err(HeapError::Attach(_)) => Vec::new(),
        Err(e) => panic!("re-attach: untyped error {e}"),
    }
}

/// Runs operations on a [`TestRing`] and on the [`Model`] and compares.
///
/// Until the first write by the peer, **differential**: every result equals
/// the model's and [`TestRing::check`] holds after every operation. After
/// it the model is dropped, and what is promised is typed results only.
/// Throughout: slices inside the data region and plausible counts (see
/// [`TestRing::apply`]), `attach` never panics, and a side that returned
/// `Corrupted(x)` returns `Corrupted(x)` on every later call until a new side
/// replaces it.
#[derive(Debug)]
pub struct Differential {
    ring: TestRing,
    model: Option<Model>,
    producer_poison: Option<Error>,
    consumer_poison: Option<Error>,
}

impl Differential {
    /// A fresh ring and model, both starting at position `start`.
    pub fn new(capacity: u64, start: u64) -> Differential {
        Differential {
            ring: TestRing::new(capacity, start),
            model: Some(Model::new(capacity, start)),
            producer_poison: None,
            consumer_poison: None,
        }
    }

    /// The ring under test.
    pub fn ring(&self) -> &TestRing {
        &self.ring
    }

    /// The model, until the first write by the peer.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// Runs `op` on both and checks; the error says what broke and where.
    pub fn apply(&mut self, op: &Op) -> Result<Outcome, String> {
        let expected = self.model.as_mut().and_then(|model| model.apply(op));
        if expected.is_none() {
            self.model = None;
        }
        let got = self.ring.apply(op);
        if let (Some(expected), Some(model)) = (expected, self.model.as_ref()) {
            if got != expected {
                return Err(format!(
                    "{op:?}: ring and oracle disagree (before any write by the peer): ring {got:?}, oracle {expected:?}"
                ));
            }
            self.ring
                .check(model)
                .map_err(|e| format!("after {op:?}: {e}"))?;
        }
        // The immutable header is checked again on every attach; whatever
        // the peer wrote, that check returns a value.
        // SAFETY: the buffer is readable for its length.
        let _ = unsafe { crate::attach(self.ring.buf.as_ptr(), self.ring.buf.len()) };
        let poison = match op.side() {
            Side::Producer => &mut self.producer_poison,
            Side::Consumer => &mut self.consumer_poison,
            Side::Peer => return Ok(got),
        };
        if op.is_reattach() {
            // A new side that attached starts clean.
            if got.first().is_some_and(Result::is_ok) {
                *poison = None;
            }
            return Ok(got);
        }
        for result in &got {
            if let Some(previous) = *poison {
                if *result != Err(previous) {
                    return Err(format!(
                        "{op:?}: a side that reported {previous:?} must keep reporting it, got {result:?}"
                    ));
                }
            }
            if let Err(e @ Error::Corrupted(_)) = result {
                *poison = Some(*e);
            }
        }
        Ok(got)
    }
}
