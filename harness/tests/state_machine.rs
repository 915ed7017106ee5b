//! The ring against the test kit's `VecDeque` oracle
//! (`ringproof::testing::Model`), with `proptest-state-machine`: any generated sequence of operations must return
//! exactly what the model returns (`Full`, `Empty`, `TooLarge`, `Closed` and
//! the payloads), leave the same `head`, `tail` and `closed` words in the
//! segment, and leave a header that still attaches.
//!
//! - `ring_behaves_like_a_vecdeque`: producer and consumer over one in-process
//!   segment (`ringproof::heap`, the same layout and protocol code as shm).
//! - `two_processes_deliver_the_oracle_stream`: the same generated sequences,
//!   split between a producer in this process and a consumer in a forked child,
//!   over a real shared-memory segment; the stream the child received is
//!   checked against the oracle.
//!
//! Cases: `PROPTEST_CASES` (default 1024 and 128); `ci/proptest-full` runs 10,000.
//! A failure shrinks to a minimal sequence and is saved under
//! `proptest-regressions/`, which is replayed first on every later run.

mod support;

use std::io::{Read as _, Write as _};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, pipe};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

use ringproof::Error;
use ringproof::shm::{OpenMode, Segment, ShmConsumer, ShmError, ShmProducer};
use ringproof::spsc::MAX_POSITION;
use ringproof::testing::{
    Model, Op, Outcome, Side, TempName, TestRing, bytes_of, payload, sequential_strategy,
};
use ringproof::{PopIntoError, PushError, ReadError};
use support::ForkedChild;

// ---------------------------------------------------------------------------
// Test plumbing
// ---------------------------------------------------------------------------

/// Every test in this file holds this lock, so that the forking test forks
/// while no other test thread runs (a child of a multi-threaded process may
/// only rely on what was consistent at the fork).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(cases: u32, regressions: &'static str) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------
// The reference state machine
// ---------------------------------------------------------------------------

/// The model plus what the last operation must return.
#[derive(Clone, Debug)]
struct RefState {
    model: Model,
    expected: Outcome,
}

fn unit<E: Into<Error>>(r: Result<(), E>) -> Result<Vec<u8>, Error> {
    r.map(|()| Vec::new()).map_err(Into::into)
}

/// Whether `op` runs on the producer.
fn is_producer(op: &Op) -> bool {
    op.side() == Side::Producer
}

struct RingMachine;

impl ReferenceStateMachine for RingMachine {
    type State = RefState;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<RefState> {
        let capacity = prop_oneof![Just(32u64), Just(64), Just(128), Just(256), Just(1024)];
        // Where head and tail start: the beginning, anywhere, or just below
        // the largest position the ring accepts (the producer must refuse to
        // pass it with `Corrupted(Tail)`).
        let start = prop_oneof![
            4 => Just(0u64),
            2 => (0u64..1 << 24).prop_map(|k| k * 8),
            1 => (1u64..=256).prop_map(|k| MAX_POSITION - k * 8),
        ];
        (capacity, start)
            .prop_map(|(capacity, start)| RefState {
                model: Model::new(capacity, start),
                expected: Vec::new(),
            })
            .boxed()
    }

    fn transitions(state: &RefState) -> BoxedStrategy<Op> {
        sequential_strategy(&state.model)
    }

    fn apply(mut state: RefState, op: &Op) -> RefState {
        state.expected = state.model.apply(op).expect("no write by the peer");
        state
    }
}

// ---------------------------------------------------------------------------
// The system under test: the shipped ring over an in-process segment
// ---------------------------------------------------------------------------

struct RingTest;

impl StateMachineTest for RingTest {
    type SystemUnderTest = TestRing;
    type Reference = RingMachine;

    fn init_test(state: &RefState) -> TestRing {
        TestRing::new(state.model.capacity, state.model.head)
    }

    fn apply(mut ring: TestRing, state: &RefState, op: Op) -> TestRing {
        let got = ring.apply(&op);
        assert_eq!(got, state.expected, "{op:?}");
        ring
    }

    fn check_invariants(ring: &TestRing, state: &RefState) {
        if let Err(e) = ring.check(&state.model) {
            panic!("{e}");
        }
    }
}

#[test]
fn ring_behaves_like_a_vecdeque() {
    let _serial = serial();
    let config = config(cases(1024), "proptest-regressions/state_machine.txt");
    let mut runner = TestRunner::new(config.clone());
    let result = runner.run(
        &RingMachine::sequential_strategy(1..64),
        |(state, ops, seen)| {
            RingTest::test_sequential(config.clone(), state, ops, seen);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// Two processes over a real shared-memory segment
// ---------------------------------------------------------------------------

/// How long either side waits for the other before giving up.
const PEER_TIMEOUT: Duration = Duration::from_secs(20);

/// The stream the consumer must receive when the producer runs the producer
/// operations of `ops` and every `Full` is waited out: the model with the
/// ring drained before each operation (a batch larger than the whole ring
/// still meets `Full`). Also the result of each producer operation.
fn producer_oracle(capacity: u64, ops: &[Op]) -> (Vec<Vec<u8>>, Vec<Outcome>) {
    let mut model = Model::new(capacity, 0);
    let mut stream = Vec::new();
    let mut results = Vec::new();
    for op in ops.iter().filter(|op| is_producer(op)) {
        model.queue.clear();
        model.head = model.tail;
        let before = model.tail;
        let out = model.apply(op).expect("no write by the peer");
        if model.tail != before {
            stream.extend(model.queue.iter().map(|m| m.bytes.clone()));
        }
        results.push(out);
    }
    (stream, results)
}

/// Retries `attempt` while it says `Full`, waiting for the consumer.
fn until_not_full<T>(mut attempt: impl FnMut() -> Result<T, PushError>) -> Result<T, PushError> {
    let deadline = Instant::now() + PEER_TIMEOUT;
    loop {
        match attempt() {
            Err(PushError::Full) if Instant::now() < deadline => std::thread::yield_now(),
            other => return other,
        }
    }
}

/// Whether the consumer has released everything committed (read from a
/// separate mapping: the producer is borrowed by an open batch).
fn drained(name: &str) -> bool {
    Segment::inspect(name).is_ok_and(|info| info.head == info.tail)
}

/// The parent's side: runs the producer operations, then closes. Returns the
/// producer, so that the role stays held until the child is done (the
/// child's re-attach then never finds the name removed).
fn run_producer(name: &str, ops: &[Op], expected: &[Outcome]) -> ShmProducer {
    let mut producer = ShmProducer::new(name, OpenMode::Open).expect("producer");
    let ops: Vec<&Op> = ops.iter().filter(|op| is_producer(op)).collect();
    for (op, want) in ops.iter().zip(expected) {
        let got: Outcome = match op {
            Op::Push { len, seed } => {
                let result = producer.push_blocking(&payload(*len, *seed), Some(PEER_TIMEOUT));
                vec![match result {
                    Ok(()) => Ok(Vec::new()),
                    Err(ShmError::Ring(e)) => Err(e),
                    Err(e) => panic!("push: {e}"),
                }]
            }
            Op::ReserveCommit { len, seed } => vec![unit(until_not_full(|| {
                producer.reserve(*len).map(|mut grant| {
                    grant.copy_from_slice(&payload(*len, *seed));
                    grant.commit();
                })
            }))],
            Op::ReserveAbort { len } => vec![unit(until_not_full(|| {
                producer.reserve(*len).map(|mut grant| grant.fill(0xEE))
            }))],
            Op::BatchPush { messages, commit } => {
                let mut batch = producer.batch();
                let mut out = Vec::new();
                for &(len, seed) in messages {
                    let message = payload(len, seed);
                    let deadline = Instant::now() + PEER_TIMEOUT;
                    let result = loop {
                        match batch.push(&message) {
                            // Final once the consumer has released everything:
                            // the batch itself does not fit the ring.
                            Err(PushError::Full) if !drained(name) && Instant::now() < deadline => {
                                std::thread::yield_now();
                            }
                            Err(PushError::Full) => break batch.push(&message),
                            other => break other,
                        }
                    };
                    out.push(unit(result));
                }
                if *commit {
                    batch.commit();
                }
                out
            }
            Op::Close => vec![unit(producer.close())],
            Op::FreeBytes => {
                let capacity = producer.capacity();
                vec![
                    producer
                        .free_bytes()
                        .map(|n| {
                            assert!(n <= capacity && n % 8 == 0, "free {n}");
                            bytes_of(n)
                        })
                        .map_err(Error::from),
                ]
            }
            Op::ReattachProducer => {
                // A closed ring refuses new producers (`ShmProducer::new` says
                // `Closed`); keep this one so that the role stays held.
                if !producer.is_closed() {
                    drop(producer);
                    producer = ShmProducer::new(name, OpenMode::Open).expect("re-attach");
                }
                vec![Ok(Vec::new())]
            }
            _ => unreachable!("consumer operation"),
        };
        if let Op::FreeBytes = op {
            // The value depends on the consumer's progress; the kind of result does not.
            assert_eq!(got[0].is_ok(), want[0].is_ok(), "{op:?}: {got:?}");
        } else {
            assert_eq!(&got, want, "{op:?}");
        }
    }
    producer.close().expect("close");
    producer
}

/// FNV-1a over the stream, each message prefixed with its length.
fn digest<'a>(messages: impl IntoIterator<Item = &'a [u8]>) -> (u64, u64) {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut count = 0;
    for message in messages {
        count += 1;
        for &byte in (message.len() as u64).to_le_bytes().iter().chain(message) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    (count, hash)
}

/// The child's side: runs the consumer operations of `ops` (each waits out
/// `Empty`), then pops to the end of the stream, checking every message
/// against `stream`. Returns what it received.
fn run_consumer(name: &str, ops: &[Op], stream: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, String> {
    let mut consumer = ShmConsumer::new(name, OpenMode::Open).map_err(|e| e.to_string())?;
    let mut received: Vec<Vec<u8>> = Vec::new();
    let deadline = Instant::now() + PEER_TIMEOUT;
    let check = |index: usize, got: &[u8]| -> Result<(), String> {
        match stream.get(index) {
            Some(want) if want.as_slice() == got => Ok(()),
            Some(want) => Err(format!(
                "message {index}: got {} bytes, want {} bytes",
                got.len(),
                want.len()
            )),
            None => Err(format!("message {index} beyond the {} sent", stream.len())),
        }
    };
    let consumer_ops = ops.iter().filter(|op| !is_producer(op));
    let tail_pops = std::iter::repeat(&Op::Pop);
    for op in consumer_ops.chain(tail_pops) {
        if Instant::now() > deadline {
            return Err(format!("timed out after {} messages", received.len()));
        }
        let next = received.len();
        // Wait until a message (or the end of stream) is there.
        while !consumer
            .as_consumer_mut()
            .wait_readable(Some(Duration::from_millis(20)))
            .map_err(|e| e.to_string())?
        {
            if Instant::now() > deadline {
                return Err(format!("timed out after {} messages", received.len()));
            }
        }
        let result: Result<(), Error> = match op {
            Op::Pop => match consumer.pop() {
                Ok(message) => {
                    check(next, &message)?;
                    received.push(message);
                    Ok(())
                }
                Err(e) => Err(e.into()),
            },
            Op::ReadRelease | Op::ReadDrop => match consumer.read() {
                Ok(read) => {
                    check(next, &read)?;
                    if matches!(op, Op::ReadRelease) {
                        received.push(read.to_vec());
                        read.release();
                    }
                    Ok(())
                }
                Err(e) => Err(e.into()),
            },
            Op::PopInto { buf_len } => {
                let mut buf = vec![0u8; *buf_len];
                match consumer.pop_into(&mut buf) {
                    Ok(n) => {
                        check(next, &buf[..n])?;
                        received.push(buf[..n].to_vec());
                        Ok(())
                    }
                    Err(PopIntoError::BufferTooSmall { needed }) => {
                        if stream.get(next).map(Vec::len) != Some(needed) {
                            return Err(format!("pop_into: needed {needed}"));
                        }
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Op::BatchPop { n, release } => {
                let mut batch = consumer.read_batch();
                let mut got = Vec::new();
                let mut end = Ok(());
                for _ in 0..*n {
                    match batch.read() {
                        Ok(message) => {
                            check(next + got.len(), message)?;
                            got.push(message.to_vec());
                        }
                        // End of stream after the messages of this batch: the
                        // tail pops see `Closed` once they are released.
                        Err(ReadError::Empty | ReadError::Closed) => break,
                        Err(e) => {
                            end = Err(e.into());
                            break;
                        }
                    }
                }
                if *release {
                    batch.release();
                    received.extend(got);
                }
                end
            }
            Op::UsedBytes => match consumer.used_bytes() {
                Ok(n) if n % 8 != 0 || n > consumer.capacity() => {
                    return Err(format!("used_bytes {n}"));
                }
                other => other.map(|_| ()).map_err(Error::from),
            },
            Op::ReattachConsumer => {
                drop(consumer);
                consumer = ShmConsumer::new(name, OpenMode::Open).map_err(|e| e.to_string())?;
                Ok(())
            }
            _ => unreachable!("producer operation"),
        };
        match result {
            Ok(()) | Err(Error::Empty) => {}
            Err(Error::Closed) => break,
            Err(e) => return Err(format!("{op:?}: {e}")),
        }
    }
    if received.len() != stream.len() {
        return Err(format!(
            "stream ended after {} of {} messages",
            received.len(),
            stream.len()
        ));
    }
    Ok(received)
}

fn two_process_case(capacity: u64, ops: &[Op]) {
    let (stream, producer_results) = producer_oracle(capacity, ops);
    let name = TempName::for_test("sm2");
    // Create the segment (and let go of the role) before forking, so the
    // child only opens, and no ring object is shared by both processes.
    drop(ShmConsumer::new(name.name(), OpenMode::Create { capacity }).expect("create"));
    let (rx, tx) = pipe().expect("pipe");
    // SAFETY: every other test in this binary waits on `SERIAL`, so no other
    // thread of ours runs user code; the child uses only its own stack, the
    // allocator (fork-safe in glibc) and syscalls, and leaves with `_exit`.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(rx);
            let report = match std::panic::catch_unwind(|| run_consumer(name.name(), ops, &stream))
            {
                Ok(Ok(received)) => {
                    let (count, hash) = digest(received.iter().map(Vec::as_slice));
                    format!("ok {count} {hash}")
                }
                Ok(Err(e)) => format!("error {e}"),
                Err(_) => "error consumer panicked".to_string(),
            };
            let mut tx = std::fs::File::from(tx);
            let code = i32::from(tx.write_all(report.as_bytes()).is_err());
            // SAFETY: ends the child at once, running no destructor or atexit
            // handler of state copied from the parent.
            unsafe { libc::_exit(code) };
        }
        ForkResult::Parent { child } => {
            drop(tx);
            let mut guard = ForkedChild(Some(child));
            let producer = run_producer(name.name(), ops, &producer_results);
            let mut report = String::new();
            std::fs::File::from(rx)
                .read_to_string(&mut report)
                .expect("report");
            let status = waitpid(child, None).expect("waitpid");
            guard.0 = None;
            drop(producer);
            let (count, hash) = digest(stream.iter().map(Vec::as_slice));
            assert_eq!(report, format!("ok {count} {hash}"), "child's report");
            assert_eq!(status, WaitStatus::Exited(child, 0));
        }
    }
}

#[test]
fn two_processes_deliver_the_oracle_stream() {
    let _serial = serial();
    let config = config(cases(128), "proptest-regressions/two_process.txt");
    let mut runner = TestRunner::new(config);
    let strategy = RingMachine::sequential_strategy(1..64).prop_filter(
        "shared-memory rings start at position 0",
        |(state, _, _)| state.model.head == 0,
    );
    let result = runner.run(&strategy, |(state, ops, seen)| {
        if let Some(seen) = seen {
            // SeqCst: a plain count read after the runner returns (any
            // ordering would do; nothing pairs with it).
            seen.fetch_add(ops.len(), AtomicOrdering::SeqCst);
        }
        two_process_case(state.model.capacity, &ops);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
