//! The MPSC halves of the targets: [`run_attach_mpsc`] (called by
//! `run_attach`, so that every `attach` input is also tried as an MPSC
//! segment) and [`run_mpsc_ops`] (the `mpsc_ops` target: an [`MpscOpsInput`]
//! through the test kit's [`MpscDifferential`]).

use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use ringproof::heap::AlignedBuf;
use ringproof::mpsc::heap::{HeapShared, shared};
use ringproof::mpsc::layout::{MAX_SLOTS, segment_size};
use ringproof::mpsc::validate::attach;
use ringproof::mpsc::{AlwaysAlive, Consumer, Producer};
use ringproof::testing::{MPSC_IMMUTABLE, MpscDifferential, MpscOp, assert_in_mpsc_data, payload};

use super::MAX_OPS;

// ---------------------------------------------------------------------------
// `attach`, MPSC
// ---------------------------------------------------------------------------

/// `segment` attached as an MPSC segment must return `Ok` or a typed
/// error. On `Ok`: the capacity is a power of two, the length is header +
/// capacity, the slot count is in `1..=MAX_SLOTS`; producers (slot 0 and
/// slot 1) and a consumer attach or fail with a typed error; each operation
/// byte pair (push, reserve + commit/drop, close, read + release/drop, batch,
/// `pop_into`, re-take a slot, a new consumer) returns `Ok` or a typed error,
/// and every slice handed out lies inside the data region.
pub fn run_attach_mpsc(segment: &[u8], ops: &[u8]) {
    let buf = Arc::new(AlignedBuf::from_bytes(segment));
    // SAFETY: the buffer is readable for its length while `buf` lives.
    let checked = match unsafe { attach(buf.as_ptr(), buf.len()) } {
        Ok(checked) => checked,
        Err(e) => {
            assert!(!e.to_string().contains('\n'));
            return;
        }
    };
    let capacity = checked.capacity();
    assert!(capacity.is_power_of_two());
    assert_eq!(segment_size(capacity), buf.len() as u64);
    assert!((1..=MAX_SLOTS as u32).contains(&checked.max_producers()));
    let slots = checked.max_producers().min(2) as u8;
    let view = || {
        // SAFETY: one producer per slot (a slot's old producer is replaced
        // at once) and one consumer at a time; one thread.
        unsafe { shared(&buf) }.expect("attached above").0
    };
    let producer = |slot| Producer::new(view(), slot).ok();
    let mut producers: Vec<Option<Producer<HeapShared>>> = (0..slots).map(producer).collect();
    let mut consumer = consumer_again(&buf);
    let mut bytes = ops.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = usize::from(bytes.next().unwrap_or(0));
        let slot = usize::from(op >> 3) % usize::from(slots);
        match (op % 8, producers[slot].as_mut(), consumer.as_mut()) {
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
                let _ = p.close();
            }
            (3, _, Some(c)) => {
                if let Ok(read) = c.read() {
                    assert_in_mpsc_data(&buf, capacity, &read);
                    if arg % 2 == 0 {
                        read.release();
                    }
                }
            }
            (4, _, Some(c)) => {
                let mut batch = c.read_batch();
                for _ in 0..arg % 5 {
                    if let Ok(slice) = batch.read() {
                        assert_in_mpsc_data(&buf, capacity, slice);
                    }
                }
                batch.release();
            }
            (5, _, Some(c)) => {
                let mut out = vec![0u8; arg];
                if let Ok(Some(n)) = c.pop_into(&mut out) {
                    assert!(n <= arg);
                }
            }
            (6, _, _) => {
                // The old producer goes before its slot is taken again.
                drop(producers[slot].take());
                producers[slot] = producer(slot as u8);
            }
            (7, _, _) => {
                drop(consumer.take());
                consumer = consumer_again(&buf);
            }
            _ => {}
        }
    }
}

/// A consumer over `buf`, or `None` after a typed error.
fn consumer_again(buf: &Arc<AlignedBuf>) -> Option<Consumer<HeapShared, AlwaysAlive>> {
    // SAFETY: the caller holds no other consumer of `buf`; one thread.
    let view = unsafe { shared(buf) }.ok()?.0;
    Consumer::new(view, AlwaysAlive).ok()
}

// ---------------------------------------------------------------------------
// `mpsc_ops`
// ---------------------------------------------------------------------------

/// The `mpsc_ops` target's input.
///
/// Byte format: `cap_exp: u8` (capacity `32 << (cap_exp % 8)`, 32 to 4096
/// bytes), `producers: u8` (`1 + producers % 8` slots), then operations in
/// the byte format of [`MpscOp`]'s `Arbitrary` impl until the input ends
/// (at most [`MAX_OPS`]), each fitted with [`MpscOp::fit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpscOpsInput {
    /// Capacity selector.
    pub cap_exp: u8,
    /// Producer count selector.
    pub producers: u8,
    /// The operations, fitted.
    pub ops: Vec<MpscOp>,
}

impl MpscOpsInput {
    /// Data region size: 32 to 4096 bytes.
    pub fn capacity(&self) -> u64 {
        32 << (self.cap_exp % 8)
    }

    /// Producer slots: 1 to 8.
    pub fn slots(&self) -> u8 {
        1 + self.producers % 8
    }

    /// The bytes `arbitrary` decodes back into this input (for seed corpora).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.cap_exp, self.producers];
        for op in &self.ops {
            // The inverse of `fit` for a scribble offset.
            let raw = match op {
                MpscOp::ScribbleWord { offset, value } => MpscOp::ScribbleWord {
                    offset: offset - MPSC_IMMUTABLE,
                    value: *value,
                },
                other => other.clone(),
            };
            raw.encode(&mut out);
        }
        out
    }
}

impl<'a> Arbitrary<'a> for MpscOpsInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut input = MpscOpsInput {
            cap_exp: u.arbitrary()?,
            producers: u.arbitrary()?,
            ops: Vec::new(),
        };
        let (capacity, slots) = (input.capacity(), input.slots());
        while !u.is_empty() && input.ops.len() < MAX_OPS {
            input.ops.push(MpscOp::arbitrary(u)?.fit(capacity, slots));
        }
        Ok(input)
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

/// The `mpsc_ops` target: the operations through [`MpscDifferential`]
/// (every answer and the segment's words equal to the oracle's until the
/// peer first writes; every slice inside the data region, always; a
/// consumer that reported corruption keeps reporting it), then, while the
/// oracle lasts, the end-of-run drain: every committed message consumed
/// exactly once.
pub fn run_mpsc_ops(input: &MpscOpsInput) {
    let mut ring = MpscDifferential::new(input.capacity(), input.slots());
    for op in &input.ops {
        ring.apply(op).unwrap_or_else(|e| panic!("{e}"));
    }
    ring.drain().unwrap_or_else(|e| panic!("{e}"));
}
