//! The MPSC ring against the test kit's oracle
//! (`ringproof::testing::MpscModel`: one `VecDeque` per producer plus the
//! consumer's merged order), with `proptest-state-machine`. Producers push,
//! reserve and commit, give up a reservation, stall holding a claim, die
//! (with or without a claim) and are replaced in their slot, and close; the
//! consumer reads and releases, reads and drops (redelivery), copies into a
//! buffer, reads batches and releases or drops them.
//!
//! After every operation:
//! - the ring's answer equals the oracle's: the same messages byte for byte
//!   (so none torn, none from an abandoned or uncommitted claim, each
//!   producer's in its commit order), and `Full`, `TooLarge`, `Closed`,
//!   `Empty`, `Pending { slot }` exactly when the oracle says (`Pending`
//!   only at a live producer's uncommitted claim; a dead one's is skipped);
//! - the segment's `head`, `tail` hint, `closed` flag and slot generations,
//!   and the consumer's position, equal the oracle's, and the header still
//!   attaches;
//! - each message the oracle delivers is first in its producer's queue.
//!
//! At the end every stalled producer dies and the consumer drains the ring:
//! every committed message was consumed exactly once.
//!
//! Cases: `PROPTEST_CASES` (default 1024); `ci/proptest-full` runs 10,000.
//! A failure shrinks to a minimal sequence and is saved under
//! `proptest-regressions/`, which is replayed first on every later run.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

use ringproof::testing::{
    MpscDifferential, MpscModel, MpscOp, MpscOutcome, MpscRing, mpsc_strategy,
};

/// `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The oracle plus what the last operation must return.
#[derive(Clone, Debug)]
struct RefState {
    model: MpscModel,
    expected: MpscOutcome,
}

struct MpscMachine;

impl ReferenceStateMachine for MpscMachine {
    type State = RefState;
    type Transition = MpscOp;

    fn init_state() -> BoxedStrategy<RefState> {
        let capacity = prop_oneof![Just(32u64), Just(64), Just(128), Just(256), Just(1024)];
        (capacity, 1u8..=4)
            .prop_map(|(capacity, producers)| RefState {
                model: MpscModel::new(capacity, producers),
                expected: (Vec::new(), None),
            })
            .boxed()
    }

    fn transitions(state: &RefState) -> BoxedStrategy<MpscOp> {
        mpsc_strategy(state.model.capacity, state.model.producers())
    }

    fn apply(mut state: RefState, op: &MpscOp) -> RefState {
        state.expected = state.model.apply(op).expect("no write by the peer");
        state
    }
}

struct MpscTest;

impl StateMachineTest for MpscTest {
    type SystemUnderTest = MpscRing;
    type Reference = MpscMachine;

    fn init_test(state: &RefState) -> MpscRing {
        MpscRing::new(state.model.capacity, state.model.producers())
    }

    fn apply(mut ring: MpscRing, state: &RefState, op: MpscOp) -> MpscRing {
        let got = ring.apply(&op);
        assert_eq!(got, state.expected, "{op:?}");
        ring
    }

    fn check_invariants(ring: &MpscRing, state: &RefState) {
        if let Err(e) = ring.check(&state.model) {
            panic!("{e}");
        }
    }

    fn teardown(ring: MpscRing, state: RefState) {
        let mut run = MpscDifferential::resume(ring, state.model);
        if let Err(e) = run.drain() {
            panic!("at the end: {e}");
        }
    }
}

#[test]
fn mpsc_ring_behaves_like_one_vecdeque_per_producer() {
    let config = Config {
        cases: cases(1024),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/mpsc_state_machine.txt",
        ))),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(
        &MpscMachine::sequential_strategy(1..64),
        |(state, ops, seen)| {
            MpscTest::test_sequential(config.clone(), state, ops, seen);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
