//! The MPSC part of the test kit: the oracle of an MPSC ring (one `VecDeque`
//! per producer plus the consumer's merged order, with the byte rules that
//! decide `Full`, padding, `Pending` and `Empty`), its operations
//! ([`MpscOp`], with a proptest strategy and an `arbitrary` byte format),
//! the ring under test ([`MpscRing`]: an in-process segment, one producer
//! per slot, a consumer whose [`Liveness`] is a table the test flips), and
//! [`MpscDifferential`], which runs both and compares them until a hostile
//! peer first writes.
//!
//! The oracle is written from the rules of the protocol (`mpsc::Producer::claim`,
//! `mpsc::Consumer::find`), not from its code. In one thread every answer is
//! exact: a claim starts where the last one ended, a record that does not fit
//! before the end of the region is preceded by a padding record (which stays
//! claimed even when the record after it is `Full`), the consumer passes
//! padding, given-up and dead producers' records, and stops with `Pending`
//! at a live producer's uncommitted claim.
//!
//! It may use every public part of the crate and nothing private.
//!
//! Files: `op.rs` (operations, payloads, generators, byte format),
//! `model.rs` (the oracle), `ring.rs` (the ring under test, its liveness
//! table, the differential run).

mod model;
mod op;
mod ring;

pub use model::MpscModel;
pub use op::{
    MpscOp, MpscOutcome, Refusal, abandoned_payload, mpsc_len_strategy, mpsc_payload, mpsc_strategy,
};
pub use ring::{Deaths, MpscDifferential, MpscRing, assert_in_mpsc_data};

use crate::mpsc::layout::CHECKSUMMED;

/// Restarts of one slot the kit allows: a claim carries the low 8 bits of
/// its slot's generation, and the kit's liveness table ([`Deaths`]) is
/// keyed on them, so after 256 restarts a live producer would share its key
/// with a dead one. Past this count a restart kills the producer and leaves
/// the slot empty.
pub const MAX_RESTARTS: u32 = 250;

/// The first bytes of the header that never change: a hostile write in the
/// kit leaves them alone (the `attach` fuzz target covers them).
pub const MPSC_IMMUTABLE: usize = CHECKSUMMED + 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpsc::{PushError, ReadError};
    use arbitrary::{Arbitrary, Unstructured};
    use std::vec::Vec;

    #[test]
    fn encoded_ops_decode_to_themselves() {
        let ops = [
            MpscOp::Push {
                slot: 3,
                len: 300,
                seed: 7,
            },
            MpscOp::Stall { slot: 1, len: 9 },
            MpscOp::Restart { slot: 2 },
            MpscOp::Batch {
                n: 5,
                release: true,
            },
            MpscOp::PopInto { buf_len: 17 },
            MpscOp::ScribbleWord {
                offset: 648,
                value: u64::MAX,
            },
        ];
        for op in ops {
            let mut bytes = Vec::new();
            op.encode(&mut bytes);
            let decoded = MpscOp::arbitrary(&mut Unstructured::new(&bytes)).unwrap();
            assert_eq!(decoded, op);
        }
    }

    #[test]
    fn a_stalled_claim_is_pending_until_its_producer_dies() {
        let mut ring = MpscDifferential::new(64, 2);
        let pending = Some(Refusal::Read(ReadError::Pending { slot: 0 }));
        let ops = [
            (MpscOp::Stall { slot: 0, len: 8 }, None),
            (
                MpscOp::Push {
                    slot: 1,
                    len: 8,
                    seed: 1,
                },
                None,
            ),
            (MpscOp::Read, pending),
            (
                MpscOp::Push {
                    slot: 0,
                    len: 1,
                    seed: 0,
                },
                Some(Refusal::NoProducer),
            ),
            (MpscOp::Restart { slot: 0 }, None),
            (MpscOp::ReadDrop, None),
            (MpscOp::Read, None),
            (MpscOp::Read, Some(Refusal::Read(ReadError::Empty))),
        ];
        for (op, refusal) in ops {
            assert_eq!(ring.apply(&op).unwrap().1, refusal, "{op:?}");
        }
        assert_eq!(ring.model().unwrap().consumed, 1);
        ring.drain().unwrap();
    }

    #[test]
    fn padding_stays_claimed_when_the_record_after_it_is_full() {
        let mut ring = MpscDifferential::new(64, 1);
        let push = |len, seed| MpscOp::Push { slot: 0, len, seed };
        let full = Some(Refusal::Push(PushError::Full));
        ring.apply(&push(24, 1)).unwrap(); // 0..32
        ring.apply(&push(16, 2)).unwrap(); // 32..56
        // 8 bytes to the end: padding 56..64 fits, the record after it not.
        assert_eq!(ring.apply(&push(16, 3)).unwrap().1, full);
        assert_eq!(ring.model().unwrap().tail, 64);
        assert_eq!(
            ring.apply(&MpscOp::Read).unwrap().0,
            [mpsc_payload(0, 1, 24)]
        );
        assert_eq!(ring.apply(&push(16, 3)).unwrap().1, None); // 64..88
        let batch = MpscOp::Batch {
            n: 3,
            release: true,
        };
        let (got, refusal) = ring.apply(&batch).unwrap();
        assert_eq!(got, [mpsc_payload(0, 2, 16), mpsc_payload(0, 3, 16)]);
        assert_eq!(refusal, Some(Refusal::Read(ReadError::Empty)));
        assert_eq!(ring.model().unwrap().head, 88);
        ring.drain().unwrap();
    }
}
