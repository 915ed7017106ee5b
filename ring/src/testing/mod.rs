//! The test kit: what the property tests, the hostile-peer tests, the fuzz
//! targets and the benches share, written once (in the spirit of tokio's
//! `test-util`). Feature `testing`; **not part of the stable API**: it
//! changes with the tests that use it.
//!
//! - [`Model`]: the oracle, a `VecDeque` of messages with the ring's byte
//!   rules (`Full`, `TooLarge`, wrap padding, `MAX_POSITION`).
//! - [`Op`]: one operation on a ring (a producer or consumer call, or a
//!   write by a hostile peer), with its generators: proptest strategies
//!   ([`sequential_strategy`], [`hostile_strategy`]) and an
//!   [`arbitrary::Arbitrary`] impl (the byte format of the `ops` fuzz target).
//! - [`TestRing::apply`] runs an operation on an in-process ring,
//!   [`Model::apply`] on the oracle, and [`Differential::apply`] on both,
//!   comparing them until the peer first writes and checking the
//!   corruption rules after.
//! - The scribbler: [`scribble`] writes bytes into a segment as a hostile
//!   peer would (`scribble_segment`, with `shm`: into a shared-memory
//!   segment through its file); [`scribble_offsets`] draws where (live
//!   words, the immutable header, record headers, data).
//! - MPSC: [`MpscModel`] (one queue per producer plus the merged order),
//!   [`MpscOp`] with [`mpsc_strategy`] and an `Arbitrary` impl (the
//!   `mpsc_ops` fuzz target), [`MpscRing`] (its liveness a [`Deaths`] table)
//!   and [`MpscDifferential`].
//! - [`TempName`] (with `shm`): a unique segment name removed on drop. It is
//!   [`crate::shm::TempName`], which the CLI and the benches use too.
//!
//! It may use every public part of the crate and nothing private: it tests
//! the ring from outside, as a peer process would see it.

mod mpsc;
mod op;
mod oracle;
mod ring;

pub use mpsc::{
    Deaths, MAX_RESTARTS, MPSC_IMMUTABLE, MpscDifferential, MpscModel, MpscOp, MpscOutcome,
    MpscRing, Refusal, abandoned_payload, assert_in_mpsc_data, mpsc_len_strategy, mpsc_payload,
    mpsc_strategy,
};
pub use op::{
    Op, Outcome, Side, Word, hostile_strategy, len_strategy, live_word_offsets, scribble_offsets,
    sequential_strategy, wrap_lengths,
};
pub use oracle::{Message, Model, bytes_of, payload};
#[cfg(feature = "shm")]
pub use ring::scribble_segment;
pub use ring::{Differential, TestRing, assert_in_data, peek, peek_word, scribble};

#[cfg(feature = "shm")]
pub use crate::shm::TempName;

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::{Arbitrary, Unstructured};
    use std::vec::Vec;

    #[test]
    fn encoded_ops_decode_to_themselves() {
        use crate::layout::HEAD_OFFSET;
        let ops = [
            Op::Push { len: 300, seed: 7 },
            Op::BatchPush {
                messages: std::vec![(3, 3), (258, 2)],
                commit: true,
            },
            Op::BatchPop {
                n: 5,
                release: false,
            },
            Op::Scribble {
                offset: 500,
                bytes: std::vec![1, 2, 3],
            },
            Op::SetWord {
                word: Word::Closed,
                value: u64::MAX,
            },
            Op::NudgeWord {
                word: Word::At(HEAD_OFFSET),
                by: -1024,
            },
            Op::NudgeWord {
                word: Word::RecordAtHead,
                by: 8,
            },
        ];
        for op in ops {
            let mut bytes = Vec::new();
            op.encode(&mut bytes);
            let decoded = Op::arbitrary(&mut Unstructured::new(&bytes)).unwrap();
            assert_eq!(decoded, op);
        }
    }

    #[test]
    fn differential_agrees_then_follows_the_corruption_rules() {
        let mut ring = Differential::new(64, 0);
        for op in [
            Op::Push { len: 8, seed: 1 },
            Op::NudgeWord {
                word: Word::At(crate::layout::HEAD_OFFSET),
                by: 3,
            },
            Op::Pop,
            Op::Pop,
            Op::ReattachConsumer,
        ] {
            ring.apply(&op).unwrap();
        }
        assert!(ring.model().is_none());
    }

    #[test]
    fn record_header_at_an_unaligned_head_is_moved_back_into_the_segment() {
        use crate::layout::HEAD_OFFSET;
        let mut ring = Differential::new(4096, 0);
        for op in [
            Op::SetWord {
                word: Word::At(HEAD_OFFSET),
                value: 4095,
            },
            Op::NudgeWord {
                word: Word::RecordAtHead,
                by: 8,
            },
            Op::SetWord {
                word: Word::RecordAtHead,
                value: 1,
            },
            Op::Pop,
        ] {
            ring.apply(&op).unwrap();
        }
    }
}
