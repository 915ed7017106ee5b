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

mod support;

use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::fcntl::OFlag;
use nix::sys::mman::shm_open;
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, ftruncate, pipe};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

use ringproof::heap::{self, AlignedBuf, HeapError, HeapShared};
use ringproof::layout::{
    CLOSED_OFFSET, HEAD_OFFSET, HEADER_SIZE, RECORD_MESSAGE, RECORD_PADDING, TAIL_OFFSET,
};
use ringproof::shm::{OpenMode, Segment, ShmConsumer, ShmError, ShmProducer};
use ringproof::testing::{Differential, Op, TempName, TestRing, hostile_strategy, scribble};
use ringproof::validate::AttachError;
use ringproof::{Consumer, Corruption, Producer};
use ringproof::{PushError, ReadError};
use support::ForkedChild;

/// Every test in this file holds this lock, so that the forking test forks
/// while no other test thread runs.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn ring(capacity: u64) -> (Arc<AlignedBuf>, Producer<HeapShared>, Consumer<HeapShared>) {
    TestRing::new(capacity, 0).into_parts()
}

fn corrupted<E: From<Corruption>>(what: Corruption) -> E {
    E::from(what)
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
            assert!(matches!(fresh, Err(HeapError::Corrupted(_))), "{fresh:?}");
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
        let want = Err(HeapError::Corrupted(Corruption::Head));
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

/// The operations through the test kit's `Differential`: the oracle's
/// results before the first rewrite; after it, typed results only, slices
/// inside the data region, and a side that reported `Corrupted(x)` keeps
/// reporting it until it is re-attached.
fn hostile_case(capacity: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut ring = Differential::new(capacity, 0);
    for op in ops {
        ring.apply(op).map_err(TestCaseError::fail)?;
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
            proptest::collection::vec(hostile_strategy(cap), 1..80),
        )
    });
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, |(cap, ops)| hostile_case(cap, &ops)) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------
// Truncation under a live mapping
// ---------------------------------------------------------------------------

/// Another process shrinks the segment file while a consumer has it mapped.
/// The kernel answers a touch of a page past the new end with `SIGBUS`: no
/// library code runs, so the consumer process dies. This test shows it
/// happening in a forked child (and nothing else: the parent, which does not
/// touch the lost pages, lives on), and that every *new* open of the
/// truncated segment is a typed size error, not a crash.
#[test]
fn truncated_segment_kills_a_toucher_with_sigbus_and_reopen_is_a_size_error() {
    let _serial = serial();
    let name = TempName::for_test("trunc");
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
            let mut guard = ForkedChild(Some(child));
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
