//! The MPSC ring under test: an in-process segment, one producer per slot,
//! a consumer whose liveness is a [`Deaths`] table; and the differential
//! run of the ring against [`MpscModel`].

use std::collections::BTreeSet;
use std::string::String;
use std::sync::{Arc, Mutex};
use std::vec::Vec;
use std::{format, vec};

use super::MAX_RESTARTS;
use super::model::MpscModel;
use super::op::{MpscOp, MpscOutcome, Refusal, abandoned_payload, mpsc_payload};
use crate::heap::AlignedBuf;
use crate::layout::max_message;
use crate::mpsc::heap::{HeapShared, segment, shared};
use crate::mpsc::layout::{
    CLOSED_OFFSET, HEAD_OFFSET, HEADER_SIZE, SLOT_GEN_OFFSET, TAIL_OFFSET, gen_low,
};
use crate::mpsc::{Consumer, Liveness, Producer, ReadError};
use crate::testing::{peek, scribble};

/// A liveness table the test writes: `(slot, generation)` pairs of
/// producers that died. Shared between the test and the consumer.
#[derive(Clone, Debug, Default)]
pub struct Deaths(Arc<Mutex<BTreeSet<(u8, u32)>>>);

impl Deaths {
    /// Records that the producer of `slot` in `generation` (low bits) died.
    /// Call it only after that producer's last access to the segment.
    pub fn kill(&self, slot: u8, generation: u32) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((slot, generation));
    }
}

// The kit drops or abandons a producer before it kills it, on the same
// thread, and the mutex orders that before any later `alive`.
// SAFETY: a pair is inserted by `kill` only after its producer's last access,
// and [`MAX_RESTARTS`] keeps a slot's generation off a dead one's low bits.
unsafe impl Liveness for Deaths {
    fn alive(&self, slot: u8, generation: u32) -> bool {
        !self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(slot, generation))
    }
}

/// Asserts that `slice` lies inside the data region of the MPSC segment in
/// `buf` (`capacity` bytes after its header).
pub fn assert_in_mpsc_data(buf: &AlignedBuf, capacity: u64, slice: &[u8]) {
    crate::testing::ring::assert_in_region(buf, HEADER_SIZE, capacity, slice);
    assert!(
        slice.len() as u64 <= max_message(capacity),
        "a message of {} bytes in a ring of {capacity}",
        slice.len()
    );
}

/// A producer slot of the ring under test.
#[derive(Debug)]
struct SlotRing {
    /// `None` once it stalled (or could not be re-made).
    producer: Option<Producer<HeapShared>>,
    /// Low bits of its generation (kept when the producer is gone).
    generation: u32,
    restarts: u32,
}

/// An in-process MPSC segment with one producer per slot and a consumer
/// whose liveness is a [`Deaths`] table.
#[derive(Debug)]
pub struct MpscRing {
    /// The segment.
    pub buf: Arc<AlignedBuf>,
    /// Its data region size.
    pub capacity: u64,
    slots: Vec<SlotRing>,
    consumer: Consumer<HeapShared, Deaths>,
    deaths: Deaths,
}

impl MpscRing {
    /// A fresh ring of `capacity` bytes with `producers` slots, each taken.
    ///
    /// # Panics
    ///
    /// On a capacity or producer count the ring refuses.
    pub fn new(capacity: u64, producers: u8) -> MpscRing {
        let buf = Arc::new(segment(capacity, u32::from(producers)).expect("accepted ring"));
        let deaths = Deaths::default();
        let slots = (0..producers)
            .map(|slot| {
                let producer = Producer::new(Self::view(&buf), slot).expect("fresh producer");
                SlotRing {
                    generation: producer.generation(),
                    producer: Some(producer),
                    restarts: 0,
                }
            })
            .collect();
        let consumer = Consumer::new(Self::view(&buf), deaths.clone()).expect("fresh consumer");
        MpscRing {
            buf,
            capacity,
            slots,
            consumer,
            deaths,
        }
    }

    fn view(buf: &Arc<AlignedBuf>) -> HeapShared {
        // SAFETY: each slot has at most one producer at a time (a new one is
        // made only after the old one is dropped or abandoned), and there is
        // one consumer.
        unsafe { shared(buf) }.expect("the header attaches").0
    }

    /// The low bits of each slot's generation, in slot order.
    pub fn generations(&self) -> Vec<u32> {
        self.slots.iter().map(|s| s.generation).collect()
    }

    /// Runs `op` and returns what the ring returned. Panics when the ring
    /// hands out a slice outside the data region or longer than the largest
    /// message.
    pub fn apply(&mut self, op: &MpscOp) -> MpscOutcome {
        let done = |r: Result<(), Refusal>| (Vec::new(), r.err());
        let capacity = self.capacity;
        match *op {
            MpscOp::Push { slot, len, seed } => {
                let Some(p) = self.producer(slot) else {
                    return (Vec::new(), Some(Refusal::NoProducer));
                };
                done(
                    p.push(&mpsc_payload(slot, seed, len))
                        .map_err(Refusal::Push),
                )
            }
            MpscOp::ReserveCommit { slot, len, seed } => {
                let Some(p) = self.producer(slot) else {
                    return (Vec::new(), Some(Refusal::NoProducer));
                };
                done(p.reserve(len).map_err(Refusal::Push).map(|mut grant| {
                    grant.copy_from_slice(&mpsc_payload(slot, seed, len));
                    grant.commit();
                }))
            }
            MpscOp::ReserveAbort { slot, len } => {
                let Some(p) = self.producer(slot) else {
                    return (Vec::new(), Some(Refusal::NoProducer));
                };
                done(p.reserve(len).map_err(Refusal::Push).map(|mut grant| {
                    grant.copy_from_slice(&abandoned_payload(slot, len));
                    drop(grant);
                }))
            }
            MpscOp::Stall { slot, len } => {
                let Some(p) = self.producer(slot) else {
                    return (Vec::new(), Some(Refusal::NoProducer));
                };
                let r = p.reserve(len).map_err(Refusal::Push).map(|mut grant| {
                    grant[..len / 2].copy_from_slice(&abandoned_payload(slot, len / 2));
                    grant.abandon();
                });
                if r.is_ok() {
                    // It must not be used again: it stays alive, holding its claim.
                    self.slots[usize::from(slot)].producer = None;
                }
                done(r)
            }
            MpscOp::Restart { slot } => {
                let state = &mut self.slots[usize::from(slot)];
                // The producer's last access is before its death is known.
                drop(state.producer.take());
                self.deaths.kill(slot, state.generation);
                if state.restarts >= MAX_RESTARTS {
                    return (Vec::new(), Some(Refusal::Exhausted));
                }
                state.restarts += 1;
                state.generation = gen_low(state.generation + 1);
                match Producer::new(Self::view(&self.buf), slot) {
                    Ok(p) => {
                        state.generation = p.generation();
                        state.producer = Some(p);
                        (Vec::new(), None)
                    }
                    Err(e) => (Vec::new(), Some(Refusal::Open(e))),
                }
            }
            MpscOp::Close { slot } => {
                let Some(p) = self.producer(slot) else {
                    return (Vec::new(), Some(Refusal::NoProducer));
                };
                done(p.close().map_err(Refusal::Push))
            }
            MpscOp::Read | MpscOp::ReadDrop => match self.consumer.read() {
                Ok(read) => {
                    assert_in_mpsc_data(&self.buf, capacity, &read);
                    let bytes = read.to_vec();
                    if *op == MpscOp::Read {
                        read.release();
                    }
                    (vec![bytes], None)
                }
                Err(e) => (Vec::new(), Some(Refusal::Read(e))),
            },
            MpscOp::PopInto { buf_len } => {
                let mut out = vec![0u8; buf_len];
                match self.consumer.pop_into(&mut out) {
                    Ok(Some(n)) => {
                        out.truncate(n);
                        (vec![out], None)
                    }
                    Ok(None) => (Vec::new(), Some(Refusal::TooSmall)),
                    Err(e) => (Vec::new(), Some(Refusal::Read(e))),
                }
            }
            MpscOp::Batch { n, release } => {
                let mut batch = self.consumer.read_batch();
                let mut out = Vec::new();
                let mut refusal = None;
                for _ in 0..n {
                    match batch.read() {
                        Ok(slice) => {
                            assert_in_mpsc_data(&self.buf, capacity, slice);
                            out.push(slice.to_vec());
                        }
                        Err(e) => {
                            refusal = Some(Refusal::Read(e));
                            break;
                        }
                    }
                }
                assert_eq!(batch.len(), out.len(), "batch count");
                if release {
                    batch.release();
                }
                (out, refusal)
            }
            MpscOp::ScribbleWord { offset, value } => {
                scribble(&self.buf, offset, &value.to_ne_bytes());
                (Vec::new(), None)
            }
        }
    }

    fn producer(&mut self, slot: u8) -> Option<&mut Producer<HeapShared>> {
        self.slots[usize::from(slot)].producer.as_mut()
    }

    /// Compares the segment's words and the sides with `model`: `head`, the
    /// `tail` hint, `closed` and the slot generations; the consumer's
    /// position; and the header still attaches.
    pub fn check(&self, model: &MpscModel) -> Result<(), String> {
        let word = |offset| u64::from_ne_bytes(peek(&self.buf, offset));
        let word32 = |offset| u32::from_ne_bytes(peek(&self.buf, offset));
        let seen = (
            word(HEAD_OFFSET),
            word(TAIL_OFFSET),
            word32(CLOSED_OFFSET) != 0,
            self.consumer.position(),
        );
        let want = (model.head, model.tail, model.closed, model.head);
        if seen != want {
            return Err(format!(
                "(head, tail, closed, consumer position): ring {seen:?}, model {want:?}"
            ));
        }
        let generations: Vec<u32> = (0..model.producers())
            .map(|s| gen_low(word32(SLOT_GEN_OFFSET + 4 * usize::from(s))))
            .collect();
        if generations != model.generations() || self.generations() != model.generations() {
            return Err(format!(
                "slot generations: segment {generations:?}, producers {:?}, model {:?}",
                self.generations(),
                model.generations()
            ));
        }
        // SAFETY: the buffer is readable for its length while `self.buf` lives.
        if let Err(e) = unsafe { crate::mpsc::validate::attach(self.buf.as_ptr(), self.buf.len()) }
        {
            return Err(format!("the header no longer attaches: {e}"));
        }
        Ok(())
    }
}

/// The ring and the oracle side by side: equal answers until the peer first
/// writes; after it, the ring alone, under the corruption rules.
#[derive(Debug)]
pub struct MpscDifferential {
    ring: MpscRing,
    model: Option<MpscModel>,
    /// The corruption the consumer reported, which it must keep reporting.
    consumer_poisoned: Option<ReadError>,
}

impl MpscDifferential {
    /// A fresh ring and its model.
    pub fn new(capacity: u64, producers: u8) -> MpscDifferential {
        MpscDifferential {
            ring: MpscRing::new(capacity, producers),
            model: Some(MpscModel::new(capacity, producers)),
            consumer_poisoned: None,
        }
    }

    /// A run that goes on from `ring` and its `model` (which must agree).
    pub fn resume(ring: MpscRing, model: MpscModel) -> MpscDifferential {
        MpscDifferential {
            ring,
            model: Some(model),
            consumer_poisoned: None,
        }
    }

    /// The ring under test.
    pub fn ring(&self) -> &MpscRing {
        &self.ring
    }

    /// The model, until the peer first writes.
    pub fn model(&self) -> Option<&MpscModel> {
        self.model.as_ref()
    }

    /// Runs `op` on the ring (and the model while there is one) and returns
    /// the ring's answer, or what broke: an answer other than the model's, a
    /// segment word other than the model's, or (after a write by the peer)
    /// a consumer that reported corruption and then answered otherwise.
    pub fn apply(&mut self, op: &MpscOp) -> Result<MpscOutcome, String> {
        let want = match &mut self.model {
            Some(model) => model.apply(op),
            None => None,
        };
        if want.is_none() {
            self.model = None;
        }
        let got = self.ring.apply(op);
        if let Some(want) = want {
            if got != want {
                return Err(format!("{op:?}: ring {got:?}, model {want:?}"));
            }
            if let Some(model) = &self.model {
                self.ring
                    .check(model)
                    .map_err(|e| format!("after {op:?}: {e}"))?;
            }
        }
        // An operation that makes the consumer look at the ring (a batch of
        // no reads does not).
        let consumer_op = match op {
            MpscOp::Read | MpscOp::ReadDrop | MpscOp::PopInto { .. } => true,
            MpscOp::Batch { n, .. } => *n > 0,
            _ => false,
        };
        if consumer_op {
            let first = got.0.is_empty().then_some(got.1).flatten();
            match (self.consumer_poisoned, first) {
                (Some(before), now) if now != Some(Refusal::Read(before)) => {
                    return Err(format!(
                        "{op:?}: the consumer reported {before:?}, then {now:?}"
                    ));
                }
                (None, Some(Refusal::Read(e @ ReadError::Corrupted(_)))) => {
                    self.consumer_poisoned = Some(e);
                }
                _ => {}
            }
        }
        Ok(got)
    }

    /// The end of a run while the model lasts: every stalled producer dies,
    /// the consumer reads until the stream has nothing more; what it gets
    /// must be what the model still held, and then every message committed
    /// was consumed exactly once (each producer's queue is empty).
    pub fn drain(&mut self) -> Result<(), String> {
        let Some(model) = &self.model else {
            return Ok(());
        };
        for slot in model.stalled() {
            self.apply(&MpscOp::Restart { slot })?;
        }
        loop {
            let (messages, refusal) = self.apply(&MpscOp::Read)?;
            if messages.is_empty() {
                let end = [ReadError::Empty, ReadError::Closed].map(|e| Some(Refusal::Read(e)));
                if !end.contains(&refusal) {
                    return Err(format!("draining: {refusal:?}"));
                }
                break;
            }
        }
        let Some(model) = &self.model else {
            return Ok(());
        };
        for slot in 0..model.producers() {
            if model.unread(slot).next().is_some() {
                return Err(format!("drained, but producer {slot} has unread messages"));
            }
        }
        if model.committed != model.consumed {
            return Err(format!(
                "{} committed, {} consumed",
                model.committed, model.consumed
            ));
        }
        Ok(())
    }
}
