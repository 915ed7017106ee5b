//! The MPSC oracle: the records between `head` and the last claim in the
//! consumer's merged order, and one queue per producer of what it committed
//! and the consumer has not consumed. It may not touch a segment.

use std::collections::{BTreeSet, VecDeque};
use std::vec;
use std::vec::Vec;

use super::MAX_RESTARTS;
use super::op::{MpscOp, MpscOutcome, Refusal, mpsc_payload};
use crate::layout::{max_message, record_size};
use crate::mpsc::layout::gen_low;
use crate::mpsc::{PushError, ReadError};

/// What lies in a record of the model.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// Committed by `slot`.
    Message { slot: u8, bytes: Vec<u8> },
    /// Claimed by `slot` in generation `generation` (low bits), not committed.
    Uncommitted { slot: u8, generation: u32 },
    /// Fills the region to its end.
    Padding,
    /// Given up, or its producer died.
    Skipped,
}

/// A producer slot in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SlotModel {
    /// Low bits of the generation its claims carry.
    generation: u32,
    /// Restarts so far.
    restarts: u32,
    /// Holding an abandoned claim (or gone): its operations are not run.
    stalled: bool,
    /// Committed by this slot (any generation), not yet consumed: the
    /// per-producer queue.
    unread: VecDeque<Vec<u8>>,
}

/// The reference MPSC ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpscModel {
    /// Data region size.
    pub capacity: u64,
    /// Released position.
    pub head: u64,
    /// End of the last claim (the `tail` hint of the segment).
    pub tail: u64,
    /// The `closed` flag.
    pub closed: bool,
    /// The records in `[head, tail)`, each with its size: the consumer's
    /// merged order.
    records: VecDeque<(u64, Kind)>,
    slots: Vec<SlotModel>,
    /// `(slot, generation)` of every producer that died.
    dead: BTreeSet<(u8, u32)>,
    /// Messages committed, and consumed, so far.
    pub committed: u64,
    /// Messages consumed so far.
    pub consumed: u64,
}

impl MpscModel {
    /// An empty ring of `capacity` bytes with `producers` slots, each taken
    /// once (generation 1).
    pub fn new(capacity: u64, producers: u8) -> MpscModel {
        let slot = SlotModel {
            generation: 1,
            restarts: 0,
            stalled: false,
            unread: VecDeque::new(),
        };
        MpscModel {
            capacity,
            head: 0,
            tail: 0,
            closed: false,
            records: VecDeque::new(),
            slots: vec![slot; usize::from(producers)],
            dead: BTreeSet::new(),
            committed: 0,
            consumed: 0,
        }
    }

    /// Number of producer slots.
    pub fn producers(&self) -> u8 {
        self.slots.len() as u8
    }

    /// The slot generations (low bits), in slot order.
    pub fn generations(&self) -> Vec<u32> {
        self.slots.iter().map(|s| s.generation).collect()
    }

    /// The slots without a usable producer (holding an abandoned claim, or
    /// past [`MAX_RESTARTS`]).
    pub fn stalled(&self) -> Vec<u8> {
        (0..self.producers())
            .filter(|&s| self.slots[usize::from(s)].stalled)
            .collect()
    }

    /// Messages committed by `slot` and not consumed, oldest first.
    pub fn unread(&self, slot: u8) -> impl Iterator<Item = &[u8]> {
        self.slots[usize::from(slot)]
            .unread
            .iter()
            .map(Vec::as_slice)
    }

    /// Claims a record of `len` bytes holding `kind`: `Ok(())` once the record
    /// (and any padding before it) is in `records`.
    fn claim(&mut self, len: usize, kind: Kind) -> Result<(), Refusal> {
        if self.closed {
            return Err(Refusal::Push(PushError::Closed));
        }
        let max = max_message(self.capacity) as usize;
        if len > max {
            return Err(Refusal::Push(PushError::TooLarge { len, max }));
        }
        let record = record_size(len as u64);
        loop {
            let to_end = self.capacity - (self.tail & (self.capacity - 1));
            let (size, padding) = if record > to_end {
                (to_end, true)
            } else {
                (record, false)
            };
            if self.tail + size > self.head + self.capacity {
                return Err(Refusal::Push(PushError::Full));
            }
            self.tail += size;
            if padding {
                self.records.push_back((size, Kind::Padding));
                continue;
            }
            self.records.push_back((size, kind));
            return Ok(());
        }
    }

    /// The index of the first message from the front, turning dead
    /// producers' claims passed on the way into skipped ones; on a refusal,
    /// the index where the consumer stopped.
    fn find(&mut self, from: usize) -> Result<usize, (usize, ReadError)> {
        for i in from..self.records.len() {
            match &self.records[i].1 {
                Kind::Message { .. } => return Ok(i),
                Kind::Uncommitted { slot, generation } => {
                    if !self.dead.contains(&(*slot, *generation)) {
                        return Err((i, ReadError::Pending { slot: *slot }));
                    }
                    self.records[i].1 = Kind::Skipped;
                }
                Kind::Padding | Kind::Skipped => {}
            }
        }
        let end = if self.closed {
            ReadError::Closed
        } else {
            ReadError::Empty
        };
        Err((self.records.len(), end))
    }

    /// Consumes the first `n` records: moves `head`, and takes each message
    /// off its producer's queue, where it must be first.
    fn release(&mut self, n: usize) {
        for (size, kind) in self.records.drain(..n) {
            self.head += size;
            if let Kind::Message { slot, bytes } = kind {
                let queue = &mut self.slots[usize::from(slot)].unread;
                let first = queue.pop_front();
                assert_eq!(
                    first.as_ref(),
                    Some(&bytes),
                    "model: producer {slot}'s queue disagrees with the merged order"
                );
                self.consumed += 1;
            }
        }
    }

    fn message_at(&self, i: usize) -> Vec<u8> {
        match &self.records[i].1 {
            Kind::Message { bytes, .. } => bytes.clone(),
            other => unreachable!("find returned {other:?}"),
        }
    }

    /// Runs `op` on the model and returns what the ring must return, or
    /// `None` for a write by the peer (which the model cannot follow).
    pub fn apply(&mut self, op: &MpscOp) -> Option<MpscOutcome> {
        let done = |r: Result<(), Refusal>| (Vec::new(), r.err());
        Some(match *op {
            MpscOp::Push { slot, len, seed } | MpscOp::ReserveCommit { slot, len, seed } => {
                if self.slots[usize::from(slot)].stalled {
                    return Some((Vec::new(), Some(Refusal::NoProducer)));
                }
                let bytes = mpsc_payload(slot, seed, len);
                let kind = Kind::Message {
                    slot,
                    bytes: bytes.clone(),
                };
                let r = self.claim(len, kind);
                if r.is_ok() {
                    self.slots[usize::from(slot)].unread.push_back(bytes);
                    self.committed += 1;
                }
                done(r)
            }
            MpscOp::ReserveAbort { slot, len } => {
                if self.slots[usize::from(slot)].stalled {
                    return Some((Vec::new(), Some(Refusal::NoProducer)));
                }
                done(self.claim(len, Kind::Skipped))
            }
            MpscOp::Stall { slot, len } => {
                let state = &self.slots[usize::from(slot)];
                if state.stalled {
                    return Some((Vec::new(), Some(Refusal::NoProducer)));
                }
                let generation = state.generation;
                let r = self.claim(len, Kind::Uncommitted { slot, generation });
                if r.is_ok() {
                    self.slots[usize::from(slot)].stalled = true;
                }
                done(r)
            }
            MpscOp::Restart { slot } => {
                let state = &mut self.slots[usize::from(slot)];
                self.dead.insert((slot, state.generation));
                if state.restarts >= MAX_RESTARTS {
                    state.stalled = true;
                    return Some((Vec::new(), Some(Refusal::Exhausted)));
                }
                state.restarts += 1;
                state.generation = gen_low(state.generation + 1);
                state.stalled = false;
                (Vec::new(), None)
            }
            MpscOp::Close { slot } => {
                if self.slots[usize::from(slot)].stalled {
                    return Some((Vec::new(), Some(Refusal::NoProducer)));
                }
                self.closed = true;
                (Vec::new(), None)
            }
            MpscOp::Read | MpscOp::ReadDrop => match self.find(0) {
                Ok(i) => {
                    let bytes = self.message_at(i);
                    if *op == MpscOp::Read {
                        self.release(i + 1);
                    }
                    (vec![bytes], None)
                }
                Err((at, e)) => {
                    self.release(at);
                    (Vec::new(), Some(Refusal::Read(e)))
                }
            },
            MpscOp::PopInto { buf_len } => match self.find(0) {
                Ok(i) => {
                    let bytes = self.message_at(i);
                    if bytes.len() > buf_len {
                        return Some((Vec::new(), Some(Refusal::TooSmall)));
                    }
                    self.release(i + 1);
                    (vec![bytes], None)
                }
                Err((at, e)) => {
                    self.release(at);
                    (Vec::new(), Some(Refusal::Read(e)))
                }
            },
            MpscOp::Batch { n, release } => {
                let mut next = 0;
                let mut out = Vec::new();
                let mut refusal = None;
                for _ in 0..n {
                    match self.find(next) {
                        Ok(i) => {
                            out.push(self.message_at(i));
                            next = i + 1;
                        }
                        Err((at, e)) => {
                            next = at;
                            refusal = Some(Refusal::Read(e));
                            break;
                        }
                    }
                }
                if release {
                    self.release(next);
                }
                (out, refusal)
            }
            MpscOp::ScribbleWord { .. } => return None,
        })
    }
}
