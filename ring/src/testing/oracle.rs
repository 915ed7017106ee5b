//! The reference model of a ring: a `VecDeque` of messages plus the byte
//! accounting that decides `Full`, `TooLarge` and wrap padding, written from
//! the rules of the protocol (`Producer::claim`, `Consumer::find`), not from
//! its code. [`Model::apply`] answers an [`Op`] as the ring must.
//!
//! It may not touch a segment: it only models one.
//!
//! Byte rules modelled:
//! - a record is an 8-byte header plus the payload rounded up to 8 bytes;
//! - a payload longer than `capacity / 2 - 8` is `TooLarge` (checked after
//!   `Closed`, before anything else);
//! - a record that does not fit between its position and the end of the data
//!   region is preceded by a padding record filling that space;
//! - a claim ending past `MAX_POSITION` poisons the producer (`Corrupted(Tail)`);
//! - a claim is `Full` when its end minus the released `head` exceeds the capacity.

use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

use super::op::{Op, Outcome};
use crate::layout::{max_message, record_size};
use crate::spsc::MAX_POSITION;
use crate::{Corruption, Error};

/// A committed message and the position just past its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The payload.
    pub bytes: Vec<u8>,
    /// Position after the record (and the padding before it, if any).
    pub end: u64,
}

/// The reference ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    /// Data region size.
    pub capacity: u64,
    /// Released position.
    pub head: u64,
    /// Committed position.
    pub tail: u64,
    /// Committed, unreleased messages in order.
    pub queue: VecDeque<Message>,
    /// The segment's `closed` flag.
    pub closed: bool,
    /// Set once the producer returned `Corrupted`; cleared by a new producer.
    pub producer_poisoned: Option<Corruption>,
}

impl Model {
    /// An empty ring whose `head` and `tail` both start at `start` (a multiple of 8).
    pub fn new(capacity: u64, start: u64) -> Model {
        Model {
            capacity,
            head: start,
            tail: start,
            queue: VecDeque::new(),
            closed: false,
            producer_poisoned: None,
        }
    }

    /// Largest payload accepted.
    pub fn max_message(&self) -> usize {
        max_message(self.capacity) as usize
    }

    /// Committed bytes not yet released.
    pub fn used(&self) -> u64 {
        self.tail - self.head
    }

    /// Free bytes.
    pub fn free(&self) -> u64 {
        self.capacity - self.used()
    }

    /// Offset of `tail` in the data region.
    pub fn tail_offset(&self) -> u64 {
        self.tail & (self.capacity - 1)
    }

    fn producer_usable(&self) -> Result<(), Error> {
        if let Some(what) = self.producer_poisoned {
            return Err(Error::Corrupted(what));
        }
        if self.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Where a record of `len` payload bytes claimed at `from` ends, or why not.
    fn claim(&mut self, from: u64, len: usize) -> Result<u64, Error> {
        let max = self.max_message();
        if len > max {
            return Err(Error::TooLarge { len, max });
        }
        let record = record_size(len as u64);
        let offset = from & (self.capacity - 1);
        let to_end = self.capacity - offset;
        let padding = if record <= to_end { 0 } else { to_end };
        let end = from + padding + record;
        if end > MAX_POSITION {
            self.producer_poisoned = Some(Corruption::Tail);
            return Err(Error::Corrupted(Corruption::Tail));
        }
        if end - self.head > self.capacity {
            return Err(Error::Full);
        }
        Ok(end)
    }

    /// `Producer::push` (and `reserve` + `commit`).
    pub fn push(&mut self, bytes: Vec<u8>) -> Result<(), Error> {
        self.producer_usable()?;
        let end = self.claim(self.tail, bytes.len())?;
        self.queue.push_back(Message { bytes, end });
        self.tail = end;
        Ok(())
    }

    /// `Producer::reserve` whose grant is dropped.
    pub fn reserve_abort(&mut self, len: usize) -> Result<(), Error> {
        self.producer_usable()?;
        self.claim(self.tail, len).map(|_| ())
    }

    /// `Producer::batch`, one `push` per message, then `commit` or drop.
    pub fn batch_push(&mut self, messages: &[Vec<u8>], commit: bool) -> Outcome {
        let mut end = self.tail;
        let mut staged = Vec::new();
        let mut out = Vec::new();
        for bytes in messages {
            let result = self
                .producer_usable()
                .and_then(|()| self.claim(end, bytes.len()));
            match result {
                Ok(next) => {
                    end = next;
                    staged.push(Message {
                        bytes: bytes.clone(),
                        end,
                    });
                    out.push(Ok(Vec::new()));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if commit && !staged.is_empty() {
            self.queue.extend(staged);
            self.tail = end;
        }
        out
    }

    /// `Producer::close`.
    pub fn close(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.producer_usable()?;
        self.closed = true;
        Ok(())
    }

    /// `Producer::free_bytes`.
    pub fn free_bytes(&self) -> Result<u64, Error> {
        self.producer_usable()?;
        Ok(self.free())
    }

    /// A new `Producer` over the same segment.
    pub fn reattach_producer(&mut self) {
        self.producer_poisoned = None;
    }

    /// The message `skip` places after `head`, or `Empty` / `Closed`.
    pub fn peek(&self, skip: usize) -> Result<&Message, Error> {
        match self.queue.get(skip) {
            Some(message) => Ok(message),
            None if self.closed => Err(Error::Closed),
            None => Err(Error::Empty),
        }
    }

    /// `Consumer::pop` (and `read` + `release`).
    pub fn pop(&mut self) -> Result<Vec<u8>, Error> {
        self.peek(0)?;
        let Some(message) = self.queue.pop_front() else {
            return Err(Error::Empty);
        };
        self.head = message.end;
        Ok(message.bytes)
    }

    /// `Consumer::pop_into` with a buffer of `buf_len` bytes.
    pub fn pop_into(&mut self, buf_len: usize) -> Result<Vec<u8>, Error> {
        let needed = self.peek(0)?.bytes.len();
        if needed > buf_len {
            return Err(Error::BufferTooSmall { needed });
        }
        self.pop()
    }

    /// `Consumer::read_batch`: `n` reads, then `release` or drop.
    pub fn read_batch(&mut self, n: usize, release: bool) -> Outcome {
        let mut out = Vec::new();
        let mut read = 0;
        for _ in 0..n {
            match self.peek(read) {
                Ok(message) => {
                    out.push(Ok(message.bytes.clone()));
                    read += 1;
                }
                Err(e) => out.push(Err(e)),
            }
        }
        if release && read > 0 {
            for _ in 0..read {
                if let Some(message) = self.queue.pop_front() {
                    self.head = message.end;
                }
            }
        }
        out
    }

    /// Runs `op` on the model and returns what the ring must return, or
    /// `None` for a write by the peer (which the model cannot follow).
    pub fn apply(&mut self, op: &Op) -> Option<Outcome> {
        let unit = |r: Result<(), Error>| r.map(|()| Vec::new());
        Some(match op {
            Op::Push { len, seed } | Op::ReserveCommit { len, seed } => {
                vec![unit(self.push(payload(*len, *seed)))]
            }
            Op::ReserveAbort { len } => vec![unit(self.reserve_abort(*len))],
            Op::BatchPush { messages, commit } => {
                let messages: Vec<Vec<u8>> = messages.iter().map(|&(l, s)| payload(l, s)).collect();
                self.batch_push(&messages, *commit)
            }
            Op::Pop | Op::ReadRelease => vec![self.pop()],
            Op::ReadDrop => vec![self.peek(0).map(|m| m.bytes.clone())],
            Op::PopInto { buf_len } => vec![self.pop_into(*buf_len)],
            Op::BatchPop { n, release } => self.read_batch(*n, *release),
            Op::Close => vec![unit(self.close())],
            Op::FreeBytes => vec![self.free_bytes().map(bytes_of)],
            Op::UsedBytes => vec![Ok(bytes_of(self.used()))],
            Op::ReattachProducer => {
                self.reattach_producer();
                vec![Ok(Vec::new())]
            }
            Op::ReattachConsumer => vec![Ok(Vec::new())],
            Op::Scribble { .. } | Op::SetWord { .. } | Op::NudgeWord { .. } => return None,
        })
    }
}

/// The payload a test pushes for `(len, seed)`: position-dependent bytes, so
/// that a message delivered out of place or truncated differs.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 8) as u8))
        .collect()
}

/// How a byte count (`free_bytes`, `used_bytes`) appears in an [`Outcome`].
pub fn bytes_of(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}
