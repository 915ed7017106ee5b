//! The ring against a `VecDeque` oracle (`tests/oracle/mod.rs`), with
//! `proptest-state-machine`: any generated sequence of operations must return
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

mod oracle;

use std::io::{Read as _, Write as _};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

use oracle::{Model, Outcome, payload};
use ringproof::heap::{self, AlignedBuf, HeapShared};
use ringproof::layout::{HEAD_OFFSET, HEADER_SIZE, TAIL_OFFSET, max_message};
use ringproof::shm::{OpenMode, Segment, ShmConsumer, ShmError, ShmProducer};
use ringproof::spsc::MAX_POSITION;
use ringproof::spsc::Words;
use ringproof::sync::{Ordering, Shared};
use ringproof::{Consumer, Error, Producer};
use ringproof::{PopIntoError, PushError, ReadError};

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

/// A unique segment name, removed on drop (also when the test fails).
use ringproof_harness::testing::TestName as Name;

// ---------------------------------------------------------------------------
// The reference state machine
// ---------------------------------------------------------------------------

/// One generated operation. Lengths may exceed the ring's maximum message.
#[derive(Clone, Debug)]
enum Op {
    /// `Producer::push`.
    Push { len: usize, seed: u8 },
    /// A push whose length was chosen from the tail's offset so that its
    /// record ends exactly at the end of the data region or crosses it
    /// (a padding record, then the record at offset 0).
    Wrap { len: usize, seed: u8 },
    /// `reserve`, write, `commit`.
    ReserveCommit { len: usize, seed: u8 },
    /// `reserve`, write, drop the grant.
    ReserveAbort { len: usize },
    /// `batch`, one push per message, then `commit` (or drop).
    BatchPush {
        messages: Vec<(usize, u8)>,
        commit: bool,
    },
    /// `Consumer::pop`.
    Pop,
    /// `read`, then `release`.
    ReadRelease,
    /// `read`, then drop: the message stays.
    ReadDrop,
    /// `pop_into` a buffer of this size.
    PopInto { buf_len: usize },
    /// `read_batch`, `n` reads, then `release` (or drop).
    BatchPop { n: usize, release: bool },
    /// `Producer::close`.
    Close,
    /// `Producer::free_bytes`.
    FreeBytes,
    /// `Consumer::used_bytes`.
    UsedBytes,
    /// Drop the producer and take a new one over the same segment.
    ReattachProducer,
    /// Drop the consumer and take a new one over the same segment.
    ReattachConsumer,
}

impl Op {
    fn is_producer(&self) -> bool {
        matches!(
            self,
            Op::Push { .. }
                | Op::Wrap { .. }
                | Op::ReserveCommit { .. }
                | Op::ReserveAbort { .. }
                | Op::BatchPush { .. }
                | Op::Close
                | Op::FreeBytes
                | Op::ReattachProducer
        )
    }
}

/// The model plus what the last operation must return.
#[derive(Clone, Debug)]
struct RefState {
    model: Model,
    expected: Outcome,
}

fn bytes_of(n: u64) -> Vec<u8> {
    n.to_le_bytes().to_vec()
}

fn unit(r: Result<(), Error>) -> Result<Vec<u8>, Error> {
    r.map(|()| Vec::new())
}

/// Applies `op` to the model and returns what the ring must return.
fn model_apply(model: &mut Model, op: &Op) -> Outcome {
    match op {
        Op::Push { len, seed } | Op::Wrap { len, seed } | Op::ReserveCommit { len, seed } => {
            vec![unit(model.push(payload(*len, *seed)))]
        }
        Op::ReserveAbort { len } => vec![unit(model.reserve_abort(*len))],
        Op::BatchPush { messages, commit } => {
            let messages: Vec<Vec<u8>> = messages.iter().map(|&(l, s)| payload(l, s)).collect();
            model.batch_push(&messages, *commit)
        }
        Op::Pop | Op::ReadRelease => vec![model.pop()],
        Op::ReadDrop => vec![model.peek(0).map(|m| m.bytes.clone())],
        Op::PopInto { buf_len } => vec![model.pop_into(*buf_len)],
        Op::BatchPop { n, release } => model.read_batch(*n, *release),
        Op::Close => vec![unit(model.close())],
        Op::FreeBytes => vec![model.free_bytes().map(bytes_of)],
        Op::UsedBytes => vec![Ok(bytes_of(model.used()))],
        Op::ReattachProducer => {
            model.reattach_producer();
            vec![Ok(Vec::new())]
        }
        Op::ReattachConsumer => vec![Ok(Vec::new())],
    }
}

/// Payload lengths for a ring of `capacity`: mostly ones that fit, often the
/// boundary around the maximum, sometimes more than the whole ring.
fn len_strategy(capacity: u64) -> BoxedStrategy<usize> {
    let max = max_message(capacity) as usize;
    let cap = capacity as usize;
    prop_oneof![
        6 => 0..=max,
        2 => max.saturating_sub(2)..=max + 2,
        1 => max + 1..=cap + 16,
    ]
    .boxed()
}

/// A length whose record, claimed at the current tail, ends exactly at the
/// end of the data region or crosses it (clamped to what the ring accepts).
fn wrap_lengths(model: &Model) -> BoxedStrategy<usize> {
    let max = model.max_message();
    let to_end = (model.capacity - model.tail_offset()) as usize;
    let exact = to_end.saturating_sub(8).min(max);
    let cross = (to_end.saturating_sub(7)).min(max);
    prop_oneof![Just(exact), Just(cross), Just(to_end.min(max))].boxed()
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
        let cap = state.model.capacity;
        let len = len_strategy(cap);
        let seed = any::<u8>();
        prop_oneof![
            8 => (len.clone(), seed).prop_map(|(len, seed)| Op::Push { len, seed }),
            2 => (wrap_lengths(&state.model), seed)
                .prop_map(|(len, seed)| Op::Wrap { len, seed }),
            3 => (len.clone(), seed)
                .prop_map(|(len, seed)| Op::ReserveCommit { len, seed }),
            2 => len.clone().prop_map(|len| Op::ReserveAbort { len }),
            3 => (proptest::collection::vec((len, seed), 0..6), any::<bool>())
                .prop_map(|(messages, commit)| Op::BatchPush { messages, commit }),
            5 => Just(Op::Pop),
            3 => Just(Op::ReadRelease),
            2 => Just(Op::ReadDrop),
            2 => (0..=cap as usize / 2).prop_map(|buf_len| Op::PopInto { buf_len }),
            3 => (0usize..6, any::<bool>()).prop_map(|(n, release)| Op::BatchPop { n, release }),
            1 => Just(Op::Close),
            1 => Just(Op::FreeBytes),
            1 => Just(Op::UsedBytes),
            1 => Just(Op::ReattachProducer),
            1 => Just(Op::ReattachConsumer),
        ]
        .boxed()
    }

    fn apply(mut state: RefState, op: &Op) -> RefState {
        state.expected = model_apply(&mut state.model, op);
        state
    }
}

// ---------------------------------------------------------------------------
// The system under test: the shipped ring over an in-process segment
// ---------------------------------------------------------------------------

struct Ring {
    buf: Arc<AlignedBuf>,
    producer: Producer<HeapShared>,
    consumer: Consumer<HeapShared>,
}

/// Asserts that `slice` lies inside the data region of `buf`.
fn assert_in_data(buf: &AlignedBuf, slice: &[u8], capacity: u64) {
    let data = buf.as_ptr() as usize + HEADER_SIZE;
    let start = slice.as_ptr() as usize;
    assert!(
        slice.is_empty() || (start >= data && start + slice.len() <= data + capacity as usize),
        "slice {start:#x}+{} outside data {data:#x}+{capacity}",
        slice.len()
    );
}

fn ring_apply(ring: &mut Ring, op: &Op, capacity: u64) -> Outcome {
    let Ring {
        buf,
        producer,
        consumer,
    } = ring;
    match op {
        Op::Push { len, seed } | Op::Wrap { len, seed } => {
            vec![unit(producer.push(&payload(*len, *seed)))]
        }
        Op::ReserveCommit { len, seed } => vec![unit(producer.reserve(*len).map(|mut grant| {
            grant.copy_from_slice(&payload(*len, *seed));
            grant.commit();
        }))],
        Op::ReserveAbort { len } => vec![unit(producer.reserve(*len).map(|mut grant| {
            grant.fill(0xEE);
        }))],
        Op::BatchPush { messages, commit } => {
            let mut batch = producer.batch();
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
        Op::Pop => vec![consumer.pop()],
        Op::ReadRelease => vec![consumer.read().map(|read| {
            assert_in_data(buf, &read, capacity);
            let bytes = read.to_vec();
            read.release();
            bytes
        })],
        Op::ReadDrop => vec![consumer.read().map(|read| {
            assert_in_data(buf, &read, capacity);
            read.to_vec()
        })],
        Op::PopInto { buf_len } => {
            let mut out = vec![0u8; *buf_len];
            vec![consumer.pop_into(&mut out).map(|n| out[..n].to_vec())]
        }
        Op::BatchPop { n, release } => {
            let mut batch = consumer.read_batch();
            let out: Outcome = (0..*n)
                .map(|_| {
                    batch.read().map(|s| {
                        assert_in_data(buf, s, capacity);
                        s.to_vec()
                    })
                })
                .collect();
            if *release {
                batch.release();
            }
            out
        }
        Op::Close => vec![unit(producer.close())],
        Op::FreeBytes => vec![producer.free_bytes().map(bytes_of)],
        Op::UsedBytes => vec![consumer.used_bytes().map(bytes_of)],
        Op::ReattachProducer => {
            // Detach first (nothing of the old producer survives), then attach.
            // SAFETY: the new producer replaces the old one at once, which is
            // then dropped; one thread.
            *producer = unsafe { heap::producer(buf) }.expect("re-attach producer");
            vec![Ok(Vec::new())]
        }
        Op::ReattachConsumer => {
            // SAFETY: as above, for the consumer.
            *consumer = unsafe { heap::consumer(buf) }.expect("re-attach consumer");
            vec![Ok(Vec::new())]
        }
    }
}

struct RingTest;

impl StateMachineTest for RingTest {
    type SystemUnderTest = Ring;
    type Reference = RingMachine;

    fn init_test(state: &RefState) -> Ring {
        let model = &state.model;
        let mut buf = AlignedBuf::segment(model.capacity).expect("segment");
        let bytes = buf.bytes_mut();
        bytes[HEAD_OFFSET..HEAD_OFFSET + 8].copy_from_slice(&model.head.to_ne_bytes());
        bytes[TAIL_OFFSET..TAIL_OFFSET + 8].copy_from_slice(&model.tail.to_ne_bytes());
        let buf = Arc::new(buf);
        // SAFETY: a fresh buffer; these are its first producer and consumer.
        let producer = unsafe { heap::producer(&buf) }.expect("producer");
        // SAFETY: as above.
        let consumer = unsafe { heap::consumer(&buf) }.expect("consumer");
        Ring {
            buf,
            producer,
            consumer,
        }
    }

    fn apply(mut ring: Ring, state: &RefState, op: Op) -> Ring {
        let got = ring_apply(&mut ring, &op, state.model.capacity);
        assert_eq!(got, state.expected, "{op:?}");
        ring
    }

    fn check_invariants(ring: &Ring, state: &RefState) {
        let model = &state.model;
        // SAFETY: the buffer is readable for its length while `ring` lives.
        let checked = unsafe { ringproof::attach(ring.buf.as_ptr(), ring.buf.len()) }
            .expect("header still validates");
        assert_eq!(checked.capacity(), model.capacity);
        // SAFETY: the view only loads the shared words; no side runs over it.
        let shared = unsafe { heap::shared(&ring.buf) }.expect("shared view");
        // Acquire: pairs with the consumer's Release store of `head` (same thread here).
        assert_eq!(
            shared.head().load(Ordering::Acquire),
            model.head,
            "head word"
        );
        // Acquire: pairs with the producer's Release store of `tail`.
        assert_eq!(
            shared.tail().load(Ordering::Acquire),
            model.tail,
            "tail word"
        );
        // Acquire: pairs with the Release store in `Producer::close`.
        let closed = shared.closed().load(Ordering::Acquire) != 0;
        assert_eq!(closed, model.closed, "closed word");
        assert_eq!(ring.producer.position(), model.tail);
        assert_eq!(ring.consumer.position(), model.head);
        assert_eq!(ring.producer.is_closed(), model.closed);
        assert_eq!(ring.producer.max_message(), model.max_message());
        assert!(model.used() <= model.capacity);
        assert_eq!(
            model.used(),
            model.queue.back().map_or(model.head, |m| m.end) - model.head,
            "model: the last record ends at tail"
        );
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
    for op in ops.iter().filter(|op| op.is_producer()) {
        model.queue.clear();
        model.head = model.tail;
        let before = model.tail;
        let out = model_apply(&mut model, op);
        if model.tail != before {
            stream.extend(model.queue.iter().map(|m| m.bytes.clone()));
        }
        results.push(out);
    }
    (stream, results)
}

/// Retries `attempt` while it says `Full`, waiting for the consumer.
fn until_not_full<T>(mut attempt: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let deadline = Instant::now() + PEER_TIMEOUT;
    loop {
        match attempt() {
            Err(Error::Full) if Instant::now() < deadline => std::thread::yield_now(),
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
    let ops: Vec<&Op> = ops.iter().filter(|op| op.is_producer()).collect();
    for (op, want) in ops.iter().zip(expected) {
        let got: Outcome = match op {
            Op::Push { len, seed } | Op::Wrap { len, seed } => {
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
                let capacity = producer.shared().capacity();
                vec![producer.free_bytes().map(|n| {
                    assert!(n <= capacity && n % 8 == 0, "free {n}");
                    bytes_of(n)
                })]
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
    let consumer_ops = ops.iter().filter(|op| !op.is_producer());
    let tail_pops = std::iter::repeat(&Op::Pop);
    for op in consumer_ops.chain(tail_pops) {
        if Instant::now() > deadline {
            return Err(format!("timed out after {} messages", received.len()));
        }
        let next = received.len();
        // Wait until a message (or the end of stream) is there.
        while !consumer
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
                Err(e) => Err(e),
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
                Err(e) => Err(e),
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
                    Err(e) => Err(e),
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
                            end = Err(e);
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
                Ok(n) if n % 8 != 0 || n > consumer.shared().capacity() => {
                    return Err(format!("used_bytes {n}"));
                }
                other => other.map(|_| ()),
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

/// Kills and reaps the child if the parent fails first.
struct Child(Option<Pid>);

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

fn two_process_case(capacity: u64, ops: &[Op]) {
    let (stream, producer_results) = producer_oracle(capacity, ops);
    let name = Name::new("sm2");
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
            let mut guard = Child(Some(child));
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
            seen.fetch_add(ops.len(), AtomicOrdering::SeqCst);
        }
        two_process_case(state.model.capacity, &ops);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
