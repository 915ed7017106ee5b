//! A hostile or buggy peer: bytes of the live segment rewritten between
//! operations, and the segment truncated under a mapping.
//!
//! What the ring promises (see `ring/src/spsc/`): every value it reads from
//! the segment is checked before use; a value that breaks an invariant makes
//! the call return `Err(Corrupted(_))` and poisons that side (every later call
//! returns the same error); nothing panics and nothing is read or written
//! outside the segment. A rewrite that keeps every invariant (a plausible
//! length, a payload byte) cannot be told from the truth: the consumer then
//! delivers wrong bytes, still from inside the data region.
//!
//! A side notices a rewritten word when it next *reads* it:
//! - its own index (`head` for the consumer, `tail` for the producer) on its
//!   next call (`Corrupted(OwnIndex)`);
//! - the peer's index when it reloads it: the consumer reloads `tail` when
//!   its cached copy says empty (and in `used_bytes`), the producer reloads
//!   `head` when its cached copy says full (and in `free_bytes`);
//! - a record header when the consumer reads that record.

mod oracle;

use std::io::{Read as _, Write as _};

use std::sync::{Arc, Mutex, MutexGuard};

use nix::fcntl::OFlag;
use nix::sys::mman::shm_open;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, ftruncate, pipe};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

use oracle::{Model, payload};
use ringproof::heap::{self, AlignedBuf, HeapError, HeapShared};
use ringproof::layout::{
    CLOSED_OFFSET, HEAD_OFFSET, HEADER_SIZE, RECORD_MESSAGE, RECORD_PADDING, TAIL_OFFSET,
};
use ringproof::shm::{OpenMode, Segment, ShmConsumer, ShmError, ShmProducer};
use ringproof::validate::AttachError;
use ringproof::{Consumer, Corruption, Error, Producer};
use ringproof::{PushError, ReadError};

/// Every test in this file holds this lock, so that the forking test forks
/// while no other test thread runs.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A unique segment name, removed on drop (also when the test fails).
use ringproof_harness::testing::TestName as Name;

/// Writes `value` at byte `offset` of the segment, as a hostile peer would.
fn scribble(buf: &AlignedBuf, offset: usize, value: &[u8]) {
    assert!(offset + value.len() <= buf.len());
    // SAFETY: the range is inside the buffer (asserted above); no ring call
    // runs during the write (single thread), and the ring reads these bytes
    // only through atomics or volatile reads, as it would from another process.
    unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), buf.as_ptr().add(offset), value.len()) };
}

fn ring(capacity: u64) -> (Arc<AlignedBuf>, Producer<HeapShared>, Consumer<HeapShared>) {
    let buf = Arc::new(AlignedBuf::segment(capacity).unwrap());
    // SAFETY: a fresh buffer; these are its first producer and consumer.
    let producer = unsafe { heap::producer(&buf) }.unwrap();
    // SAFETY: as above.
    let consumer = unsafe { heap::consumer(&buf) }.unwrap();
    (buf, producer, consumer)
}

const fn corrupted(what: Corruption) -> Error {
    Error::Corrupted(what)
}

// ---------------------------------------------------------------------------
// Each word, rewritten between operations
// ---------------------------------------------------------------------------

#[test]
fn rewritten_head_poisons_the_consumer_at_once_and_the_producer_when_it_reloads() {
    let _serial = serial();
    for bad in [3u64, 8, 1 << 40, u64::MAX, u64::MAX - 7] {
        let (buf, mut p, mut c) = ring(256);
        p.push(b"one").unwrap();
        scribble(&buf, HEAD_OFFSET, &bad.to_ne_bytes());
        assert_eq!(c.pop(), Err(corrupted(Corruption::OwnIndex)), "head {bad}");
        // Sticky, even after the word is put back.
        scribble(&buf, HEAD_OFFSET, &0u64.to_ne_bytes());
        assert_eq!(c.pop(), Err(corrupted(Corruption::OwnIndex)));
        assert_eq!(c.used_bytes(), Err(corrupted(Corruption::OwnIndex)));
        // The producer checks `head` when it reloads it: unaligned, or
        // outside [last seen head, tail] = [0, 16] is corrupt; 8 is a
        // plausible released position and is believed.
        scribble(&buf, HEAD_OFFSET, &bad.to_ne_bytes());
        let free = p.free_bytes();
        if bad == 8 {
            assert_eq!(free, Ok(256 - 8), "a plausible head is believed");
        } else {
            assert_eq!(free, Err(corrupted(Corruption::Head)), "head {bad}");
            assert_eq!(p.push(b"x"), Err(corrupted(Corruption::Head)));
            assert_eq!(p.close(), Err(corrupted(Corruption::Head)));
        }
        // A new consumer over the same bytes checks the positions afresh.
        // SAFETY: `c` is not used again; one thread.
        let fresh = unsafe { heap::consumer(&buf) };
        if bad % 8 != 0 || bad > 16 {
            assert!(
                matches!(fresh, Err(HeapError::Ring(Error::Corrupted(_)))),
                "{fresh:?}"
            );
        }
    }
}

/// Found by `random_rewrites_between_operations_give_typed_errors_never_a_panic`
/// (saved in `proptest-regressions/hostile.txt`): a `head` of 2^64 - 8 with
/// `tail` 0 passed the fresh-side check `tail - head <= capacity` by wrapping,
/// and the next push overflowed in `claim`. Attach now refuses any position
/// above `MAX_POSITION`.
#[test]
fn head_near_the_top_of_u64_is_refused_when_a_side_attaches() {
    let _serial = serial();
    for head in [u64::MAX - 7, u64::MAX - 31, (1 << 62) + 8] {
        let (buf, _p, _c) = ring(32);
        scribble(&buf, HEAD_OFFSET, &head.to_ne_bytes());
        let want = Err(HeapError::Ring(corrupted(Corruption::Head)));
        // SAFETY: `_p` and `_c` are never used; the new side is dropped at once.
        let producer = unsafe { heap::producer(&buf) };
        assert_eq!(producer.map(|_| ()), want, "head {head}");
        // SAFETY: as above.
        let consumer = unsafe { heap::consumer(&buf) };
        assert_eq!(consumer.map(|_| ()), want, "head {head}");
    }
}

#[test]
fn rewritten_tail_poisons_the_producer_at_once_and_the_consumer_when_it_reloads() {
    let _serial = serial();
    // Valid tails are multiples of 8 in [head, head + capacity]; head is 0.
    for bad in [4u64, 264, 1 << 40, u64::MAX - 7] {
        let (buf, mut p, mut c) = ring(256);
        scribble(&buf, TAIL_OFFSET, &bad.to_ne_bytes());
        assert_eq!(
            p.push(b"x"),
            Err(corrupted(Corruption::OwnIndex)),
            "tail {bad}"
        );
        assert_eq!(
            p.reserve(1).map(|_| ()),
            Err(corrupted(Corruption::OwnIndex))
        );
        assert_eq!(p.close(), Err(corrupted(Corruption::OwnIndex)));
        assert_eq!(c.pop(), Err(corrupted(Corruption::Tail)), "tail {bad}");
        scribble(&buf, TAIL_OFFSET, &0u64.to_ne_bytes());
        assert_eq!(c.pop(), Err(corrupted(Corruption::Tail)), "sticky");
    }
    // A tail moved *back* is caught by the consumer too (it never shrinks).
    let (buf, mut p, mut c) = ring(256);
    p.push(b"abc").unwrap();
    p.push(b"def").unwrap();
    assert_eq!(c.used_bytes(), Ok(32));
    scribble(&buf, TAIL_OFFSET, &16u64.to_ne_bytes());
    assert_eq!(c.used_bytes(), Err(corrupted(Corruption::Tail)));
}

#[test]
fn plausible_tail_over_unwritten_bytes_is_a_record_kind_error() {
    let _serial = serial();
    let (buf, _p, mut c) = ring(256);
    // Aligned and within a capacity of head: passes the index check, but the
    // bytes there were never a record (zero kind).
    scribble(&buf, TAIL_OFFSET, &64u64.to_ne_bytes());
    assert_eq!(c.pop(), Err(corrupted(Corruption::RecordKind)));
}

#[test]
fn tail_pushed_ahead_by_exactly_a_capacity_is_corrupted_not_the_last_lap_again() {
    let _serial = serial();
    let (buf, mut p, mut c) = ring(256);
    // One whole lap of 16-byte records, each delivered: every byte of the
    // data region now holds a well-formed record of lap 0.
    for i in 0..16u8 {
        p.push(&[i; 8]).unwrap();
        assert_eq!(c.pop().unwrap(), [i; 8]);
    }
    assert_eq!(c.position(), 256);
    // A plausible tail (aligned, exactly a capacity ahead of head) over
    // those bytes: the records there carry lap 0, the consumer expects lap 1.
    scribble(&buf, TAIL_OFFSET, &512u64.to_ne_bytes());
    assert_eq!(c.pop(), Err(corrupted(Corruption::RecordKind)));
}

#[test]
fn rewritten_record_header_is_caught_when_the_record_is_read() {
    let _serial = serial();
    let record = |len: u32, kind: u32| {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&len.to_ne_bytes());
        bytes[4..].copy_from_slice(&kind.to_ne_bytes());
        bytes
    };
    // Lengths past the tail, past the end of the data region, past the
    // maximum message, and the largest u32.
    for (len, want) in [
        (17u32, Corruption::RecordLength),
        (200, Corruption::RecordLength),
        (121, Corruption::RecordLength),
        (u32::MAX, Corruption::RecordLength),
    ] {
        let (buf, mut p, mut c) = ring(256);
        p.push(&[7; 16]).unwrap(); // record 0..24
        scribble(&buf, HEADER_SIZE, &record(len, RECORD_MESSAGE));
        assert_eq!(c.pop(), Err(corrupted(want)), "len {len}");
        assert_eq!(c.pop(), Err(corrupted(want)), "sticky");
    }
    // Unknown kinds, including the two kinds with one bit flipped.
    for kind in [0, 7, RECORD_MESSAGE ^ 1, RECORD_PADDING ^ 0x100] {
        let (buf, mut p, mut c) = ring(256);
        p.push(&[7; 16]).unwrap();
        scribble(&buf, HEADER_SIZE, &record(16, kind));
        assert_eq!(
            c.pop(),
            Err(corrupted(Corruption::RecordKind)),
            "kind {kind:#x}"
        );
    }
    // A padding record that does not reach exactly to the end of the region.
    let (buf, mut p, mut c) = ring(256);
    p.push(&[7; 16]).unwrap();
    scribble(&buf, HEADER_SIZE, &record(16, RECORD_PADDING));
    assert_eq!(c.pop(), Err(corrupted(Corruption::RecordLength)));
    // A plausible shorter length is believed: the prefix is delivered, from
    // inside the record, and the next record is looked for where it says.
    let (buf, mut p, mut c) = ring(256);
    p.push(&[7; 16]).unwrap();
    scribble(&buf, HEADER_SIZE, &record(8, RECORD_MESSAGE));
    assert_eq!(c.pop(), Ok(vec![7; 8]));
    assert_eq!(c.pop(), Err(corrupted(Corruption::RecordKind)));
}

#[test]
fn rewritten_closed_flag_is_end_of_stream_after_the_committed_messages() {
    let _serial = serial();
    let (buf, mut p, mut c) = ring(256);
    p.push(b"kept").unwrap();
    scribble(&buf, CLOSED_OFFSET, &1u32.to_ne_bytes());
    // The flag is a plain boolean: any non-zero value means closed; messages
    // already committed are still delivered, then `Closed`.
    assert_eq!(c.pop(), Ok(b"kept".to_vec()));
    assert_eq!(c.pop(), Err(ReadError::Closed));
    // This producer did not close; it keeps pushing, and the consumer sees them.
    p.push(b"more").unwrap();
    assert_eq!(c.pop(), Ok(b"more".to_vec()));
    // A new producer finds the ring closed.
    // SAFETY: `p` is not used again; one thread.
    let mut p2 = unsafe { heap::producer(&buf) }.unwrap();
    assert_eq!(p2.push(b"x"), Err(PushError::Closed));
}

#[test]
fn rewritten_immutable_header_fails_the_next_attach_with_its_error() {
    let _serial = serial();
    let (buf, mut p, mut c) = ring(256);
    p.push(b"before").unwrap();
    scribble(&buf, 16, &512u64.to_ne_bytes()); // capacity
    // Sides already attached keep the capacity they checked at attach.
    assert_eq!(c.pop(), Ok(b"before".to_vec()));
    p.push(b"after").unwrap();
    assert_eq!(c.pop(), Ok(b"after".to_vec()));
    assert_eq!(
        // SAFETY: `c` is not used again; one thread.
        unsafe { heap::consumer(&buf) }.map(|_| ()),
        Err(HeapError::Attach(AttachError::ChecksumMismatch))
    );
}

// ---------------------------------------------------------------------------
// Random rewrites between random operations
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Push {
        len: usize,
        seed: u8,
    },
    ReserveAbort {
        len: usize,
    },
    BatchPush {
        lens: Vec<usize>,
        commit: bool,
    },
    Pop,
    ReadDrop,
    BatchPop {
        n: usize,
        release: bool,
    },
    Close,
    FreeBytes,
    UsedBytes,
    ReattachProducer,
    ReattachConsumer,
    /// The peer writes `bytes` at segment offset `offset` (clamped to the segment).
    Scribble {
        offset: usize,
        bytes: Vec<u8>,
    },
    /// The peer moves a live word by a multiple of 8 (plausible but wrong).
    Nudge {
        offset: usize,
        by: i64,
    },
}

fn step_strategy(capacity: u64) -> impl Strategy<Value = Step> {
    let cap = capacity as usize;
    let len = 0..=cap / 2;
    let live_word = prop_oneof![
        Just(HEAD_OFFSET),
        Just(TAIL_OFFSET),
        Just(CLOSED_OFFSET),
        Just(HEAD_OFFSET + 4),
        Just(TAIL_OFFSET + 4),
    ];
    let offset = prop_oneof![
        2 => live_word.clone(),
        1 => 0..HEADER_SIZE,
        3 => (0..cap / 8).prop_map(|k| HEADER_SIZE + 8 * k),
        2 => HEADER_SIZE..HEADER_SIZE + cap,
    ];
    prop_oneof![
        6 => (len.clone(), any::<u8>()).prop_map(|(len, seed)| Step::Push { len, seed }),
        1 => len.clone().prop_map(|len| Step::ReserveAbort { len }),
        2 => (proptest::collection::vec(len, 0..5), any::<bool>())
            .prop_map(|(lens, commit)| Step::BatchPush { lens, commit }),
        4 => Just(Step::Pop),
        1 => Just(Step::ReadDrop),
        2 => (0usize..5, any::<bool>()).prop_map(|(n, release)| Step::BatchPop { n, release }),
        1 => Just(Step::Close),
        1 => Just(Step::FreeBytes),
        1 => Just(Step::UsedBytes),
        1 => Just(Step::ReattachProducer),
        1 => Just(Step::ReattachConsumer),
        2 => (offset, proptest::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(offset, bytes)| Step::Scribble { offset, bytes }),
        1 => (live_word, -4i64..=4).prop_map(|(offset, by)| Step::Nudge { offset, by: by * 8 }),
    ]
}

/// The side a step runs on, for the poisoning rule.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Producer,
    Consumer,
    Peer,
}

fn side(step: &Step) -> Side {
    match step {
        Step::Push { .. }
        | Step::ReserveAbort { .. }
        | Step::BatchPush { .. }
        | Step::Close
        | Step::FreeBytes
        | Step::ReattachProducer => Side::Producer,
        Step::Scribble { .. } | Step::Nudge { .. } => Side::Peer,
        _ => Side::Consumer,
    }
}

/// Runs one step on the ring; returns every ring result it got.
fn run_step(
    buf: &Arc<AlignedBuf>,
    p: &mut Producer<HeapShared>,
    c: &mut Consumer<HeapShared>,
    step: &Step,
    capacity: u64,
) -> Vec<Result<Vec<u8>, Error>> {
    let data = buf.as_ptr() as usize + HEADER_SIZE;
    let inside = |s: &[u8]| {
        let start = s.as_ptr() as usize;
        assert!(
            s.is_empty() || (start >= data && start + s.len() <= data + capacity as usize),
            "slice outside the data region"
        );
    };
    let unit = |r: Result<(), Error>| r.map(|()| Vec::new());
    match step {
        Step::Push { len, seed } => vec![unit(p.push(&payload(*len, *seed)))],
        Step::ReserveAbort { len } => vec![unit(p.reserve(*len).map(|mut g| g.fill(0xEE)))],
        Step::BatchPush { lens, commit } => {
            let mut batch = p.batch();
            let out = lens
                .iter()
                .map(|&len| unit(batch.push(&payload(len, len as u8))))
                .collect();
            if *commit {
                batch.commit();
            }
            out
        }
        Step::Pop => vec![c.read().map(|r| {
            inside(&r);
            let v = r.to_vec();
            r.release();
            v
        })],
        Step::ReadDrop => vec![c.read().map(|r| {
            inside(&r);
            r.to_vec()
        })],
        Step::BatchPop { n, release } => {
            let mut batch = c.read_batch();
            let out = (0..*n)
                .map(|_| {
                    batch.read().map(|s| {
                        inside(s);
                        s.to_vec()
                    })
                })
                .collect();
            if *release {
                batch.release();
            }
            out
        }
        Step::Close => vec![unit(p.close())],
        Step::FreeBytes => vec![p.free_bytes().map(|n| n.to_le_bytes().to_vec())],
        Step::UsedBytes => vec![c.used_bytes().map(|n| n.to_le_bytes().to_vec())],
        // SAFETY: a new side replaces the old one at once, which is then
        // dropped; one thread.
        Step::ReattachProducer => match unsafe { heap::producer(buf) } {
            Ok(new) => {
                *p = new;
                vec![Ok(Vec::new())]
            }
            Err(HeapError::Ring(e)) => vec![Err(e)],
            Err(HeapError::Attach(_)) => vec![],
            Err(e) => panic!("untyped: {e}"),
        },
        // SAFETY: as above.
        Step::ReattachConsumer => match unsafe { heap::consumer(buf) } {
            Ok(new) => {
                *c = new;
                vec![Ok(Vec::new())]
            }
            Err(HeapError::Ring(e)) => vec![Err(e)],
            Err(HeapError::Attach(_)) => vec![],
            Err(e) => panic!("untyped: {e}"),
        },
        Step::Scribble { offset, bytes } => {
            let offset = (*offset).min(buf.len() - bytes.len());
            scribble(buf, offset, bytes);
            vec![]
        }
        Step::Nudge { offset, by } => {
            let mut word = [0u8; 8];
            // SAFETY: `offset` is a header word offset, 8 bytes inside the
            // buffer; single thread, no ring call runs meanwhile.
            unsafe {
                std::ptr::copy_nonoverlapping(buf.as_ptr().add(*offset), word.as_mut_ptr(), 8)
            };
            let moved = u64::from_ne_bytes(word).wrapping_add_signed(*by);
            scribble(buf, *offset, &moved.to_ne_bytes());
            vec![]
        }
    }
}

/// The model's answer for a step before any rewrite (differential phase).
fn model_step(model: &mut Model, step: &Step) -> Option<Vec<Result<Vec<u8>, Error>>> {
    let unit = |r: Result<(), Error>| r.map(|()| Vec::new());
    Some(match step {
        Step::Push { len, seed } => vec![unit(model.push(payload(*len, *seed)))],
        Step::ReserveAbort { len } => vec![unit(model.reserve_abort(*len))],
        Step::BatchPush { lens, commit } => {
            let messages: Vec<Vec<u8>> = lens.iter().map(|&l| payload(l, l as u8)).collect();
            model.batch_push(&messages, *commit)
        }
        Step::Pop => vec![model.pop()],
        Step::ReadDrop => vec![model.peek(0).map(|m| m.bytes.clone())],
        Step::BatchPop { n, release } => model.read_batch(*n, *release),
        Step::Close => vec![unit(model.close())],
        Step::FreeBytes => vec![model.free_bytes().map(|n| n.to_le_bytes().to_vec())],
        Step::UsedBytes => vec![Ok(model.used().to_le_bytes().to_vec())],
        Step::ReattachProducer => {
            model.reattach_producer();
            vec![Ok(Vec::new())]
        }
        Step::ReattachConsumer => vec![Ok(Vec::new())],
        Step::Scribble { .. } | Step::Nudge { .. } => return None,
    })
}

fn hostile_case(capacity: u64, steps: &[Step]) -> Result<(), TestCaseError> {
    let (buf, mut p, mut c) = ring(capacity);
    let mut model = Some(Model::new(capacity, 0));
    // The corruption each side reported, which it must keep reporting.
    let mut producer_poison: Option<Error> = None;
    let mut consumer_poison: Option<Error> = None;
    for step in steps {
        let expected = model.as_mut().and_then(|m| model_step(m, step));
        if expected.is_none() {
            model = None; // after the first rewrite, only typed errors are promised
        }
        let results = run_step(&buf, &mut p, &mut c, step, capacity);
        if let Some(expected) = expected {
            prop_assert_eq!(&results, &expected, "{:?} before any rewrite", step);
        }
        let poison = match side(step) {
            Side::Producer => &mut producer_poison,
            Side::Consumer => &mut consumer_poison,
            Side::Peer => continue,
        };
        match step {
            Step::ReattachProducer | Step::ReattachConsumer => {
                // A new side that attached starts clean.
                if results.first().is_some_and(|r| r.is_ok()) {
                    *poison = None;
                }
            }
            _ => {
                for result in &results {
                    if let Some(previous) = poison {
                        prop_assert_eq!(result, &Err(*previous), "{:?}: poison is sticky", step);
                    }
                    if let Err(e @ Error::Corrupted(_)) = result {
                        *poison = Some(*e);
                    }
                }
            }
        }
        // The header's immutable part is still checked on every attach.
        // SAFETY: the buffer is readable for its length.
        let _ = unsafe { ringproof::attach(buf.as_ptr(), buf.len()) };
    }
    Ok(())
}

#[test]
fn random_rewrites_between_operations_give_typed_errors_never_a_panic() {
    let _serial = serial();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let config = Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/hostile.txt",
        ))),
        ..Config::default()
    };
    let strategy = prop_oneof![Just(32u64), Just(64), Just(256), Just(1024)].prop_flat_map(|cap| {
        (
            Just(cap),
            proptest::collection::vec(step_strategy(cap), 1..80),
        )
    });
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, |(cap, steps)| hostile_case(cap, &steps)) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// Truncation under a live mapping
// ---------------------------------------------------------------------------

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

/// Another process shrinks the segment file while a consumer has it mapped.
/// The kernel answers a touch of a page past the new end with `SIGBUS`: no
/// library code runs, so the consumer process dies. This test shows it
/// happening in a forked child (and nothing else: the parent, which does not
/// touch the lost pages, lives on), and that every *new* open of the
/// truncated segment is a typed size error, not a crash.
#[test]
fn truncated_segment_kills_a_toucher_with_sigbus_and_reopen_is_a_size_error() {
    let _serial = serial();
    let name = Name::new("trunc");
    let capacity = 16384u64;
    let mut producer = ShmProducer::new(name.name(), OpenMode::Create { capacity }).unwrap();
    // 1000-byte payloads, 1008-byte records from data offset 0: records 0..2
    // end below file offset 4096 (384 + 3 * 1008 = 3408), record 3 crosses it.
    for i in 0..4u8 {
        producer.push(&[i; 1000]).unwrap();
    }
    let (ready_rx, ready_tx) = pipe().unwrap();
    let (go_rx, go_tx) = pipe().unwrap();
    // SAFETY: every other test in this binary waits on `SERIAL`; the child
    // uses only syscalls, the allocator (fork-safe in glibc) and the ring,
    // and leaves with `_exit`.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop((ready_rx, go_tx));
            // No core file for the expected SIGBUS.
            let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
            let mut ready = std::fs::File::from(ready_tx);
            let code = (|| {
                let mut consumer = ShmConsumer::new(name.name(), OpenMode::Open).ok()?;
                ready.write_all(b"r").ok()?;
                let mut go = [0u8; 1];
                std::fs::File::from(go_rx).read_exact(&mut go).ok()?;
                for _ in 0..4 {
                    consumer.pop().ok()?;
                    ready.write_all(b"m").ok()?;
                }
                Some(0)
            })()
            .unwrap_or(1);
            // SAFETY: ends the child at once, running no destructor of state
            // copied from the parent.
            unsafe { libc::_exit(code) };
        }
        ForkResult::Parent { child } => {
            drop((ready_tx, go_rx));
            let mut guard = Child(Some(child));
            let mut from_child = std::fs::File::from(ready_rx);
            let mut byte = [0u8; 1];
            from_child.read_exact(&mut byte).unwrap();
            assert_eq!(&byte, b"r");
            // The hostile peer: open the same name and shrink it to one page.
            let fd = shm_open(name.name(), OFlag::O_RDWR, Mode::empty()).unwrap();
            ftruncate(&fd, 4096).unwrap();
            drop(fd);
            std::fs::File::from(go_tx).write_all(b"g").unwrap();
            let mut progress = Vec::new();
            from_child.read_to_end(&mut progress).unwrap();
            let status = waitpid(child, None).unwrap();
            guard.0 = None;
            assert_eq!(
                status,
                WaitStatus::Signaled(child, Signal::SIGBUS, false),
                "the consumer touched a truncated page"
            );
            assert_eq!(progress, b"mmm", "three messages lay in the kept page");

            // The parent lives on; its mapping's header page is still there
            // (the child released three records before it died).
            assert_eq!(producer.free_bytes(), Ok(capacity - 1008));
            // New opens check the real size first: a typed error, no mapping
            // of missing pages.
            let expected = AttachError::SizeMismatch {
                expected: HEADER_SIZE as u64 + capacity,
                actual: 4096,
            };
            let err = Segment::open(name.name()).unwrap_err();
            assert!(matches!(err, ShmError::Attach(e) if e == expected), "{err}");
            let err = ShmConsumer::new(name.name(), OpenMode::Open).unwrap_err();
            assert!(matches!(err, ShmError::Attach(e) if e == expected), "{err}");
            let info = Segment::inspect(name.name()).unwrap();
            assert_eq!(info.file_size, 4096);
            assert_eq!(info.error, Some(expected));
            // Dropping the producer touches only the header page.
            drop(producer);
        }
    }
}
