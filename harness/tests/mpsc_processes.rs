//! MPSC rings in shared memory with real producer processes: several into
//! one consumer (per-producer order, exactly once), one killed with a claim
//! open (skipped as soon as the kernel drops its slot lease, what it
//! committed before delivered), one stopped with a claim open (waited for,
//! delivered after `SIGCONT`); and generated plans (proptest) of pushes,
//! commits, given-up reservations and deaths with a claim open, in forked
//! producer processes, against the per-producer oracle: each producer's
//! committed messages delivered whole, in its order, exactly once, nothing
//! else (`RINGPROOF_MPSC_PROCESS_CASES`, else `PROPTEST_CASES`, else 256;
//! `ci/proptest-full` runs 10,000, about 25 s on 2 cores).
//!
//! Children are forked: each test holds `SERIAL` while it forks, and a
//! child uses only system calls, the allocator and the ring, then `_exit`s.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork, pipe};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use ringproof::mpsc::ReadError;
use ringproof::shm::mpsc::inspect;
use ringproof::shm::{OpenMode, Role, ShmError, ShmMpscConsumer, ShmMpscProducer, TempName};
use support::{ForkedChild, env_count, wait_until};

static SERIAL: Mutex<()> = Mutex::new(());

/// Generous: a wait that fails the test only when something is wrong.
const LONG: Option<Duration> = Some(Duration::from_secs(20));

/// A forked child running `body`, with a pipe each way: `to_child` (parent
/// writes) and `from_child` (parent reads).
struct Child {
    guard: ForkedChild,
    to_child: File,
    from_child: File,
}

impl Child {
    fn spawn(body: impl FnOnce(&mut File, &mut File) -> Option<()>) -> Child {
        let (down_rx, down_tx): (OwnedFd, OwnedFd) = pipe().unwrap();
        let (up_rx, up_tx): (OwnedFd, OwnedFd) = pipe().unwrap();
        // The caller holds `SERIAL`, so no other test of this binary forks
        // or holds a lock the child needs.
        // SAFETY: the child runs only system calls, the allocator (fork-safe
        // in glibc) and the ring, and leaves with `_exit`.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                drop((down_tx, up_rx));
                let mut from_parent = File::from(down_rx);
                let mut to_parent = File::from(up_tx);
                let code = match body(&mut from_parent, &mut to_parent) {
                    Some(()) => 0,
                    None => 1,
                };
                // SAFETY: ends the child at once, running no destructor of
                // state copied from the parent.
                unsafe { libc::_exit(code) };
            }
            ForkResult::Parent { child } => {
                drop((down_rx, up_tx));
                Child {
                    guard: ForkedChild(Some(child)),
                    to_child: File::from(down_tx),
                    from_child: File::from(up_rx),
                }
            }
        }
    }

    fn pid(&self) -> nix::unistd::Pid {
        self.guard.0.unwrap()
    }

    /// Waits for the byte `want` from the child.
    #[track_caller]
    fn expect(&mut self, want: u8) {
        let mut byte = [0u8; 1];
        self.from_child.read_exact(&mut byte).unwrap();
        assert_eq!(byte[0], want, "child said {:?}", byte[0] as char);
    }

    fn say(&mut self, byte: u8) {
        self.to_child.write_all(&[byte]).unwrap();
    }

    /// Reaps the child if it has exited; its exit code.
    fn try_join(&mut self) -> Option<i32> {
        let pid = self.guard.0?;
        match waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).unwrap() {
            nix::sys::wait::WaitStatus::StillAlive => None,
            nix::sys::wait::WaitStatus::Exited(_, code) => {
                self.guard.0 = None;
                Some(code)
            }
            other => panic!("child ended as {other:?}"),
        }
    }

    /// Reaps the child; its exit code.
    fn join(mut self) -> i32 {
        let pid = self.guard.0.take().unwrap();
        match waitpid(pid, None).unwrap() {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("child ended as {other:?}"),
        }
    }
}

fn say(to: &mut File, byte: u8) -> Option<()> {
    to.write_all(&[byte]).ok()
}

fn hear(from: &mut File) -> Option<u8> {
    let mut byte = [0u8; 1];
    from.read_exact(&mut byte).ok()?;
    Some(byte[0])
}

/// Message `seq` of producer `id`: both, then filler of a length that
/// varies, so records wrap at different places.
fn message(id: u32, seq: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.resize(8 + (seq as usize * 7 + id as usize) % 40, id as u8);
    out
}

fn parse(msg: &[u8]) -> (u32, u32) {
    let id = u32::from_le_bytes(msg[..4].try_into().unwrap());
    let seq = u32::from_le_bytes(msg[4..8].try_into().unwrap());
    assert_eq!(msg, message(id, seq), "payload of {id}/{seq}");
    (id, seq)
}

#[test]
fn producer_processes_deliver_each_in_order_exactly_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = TempName::for_test("mpsc-procs");
    let producers = 4u32;
    let count = env_count("RINGPROOF_MPSC_MESSAGES", 2000) as u32;
    // A small ring: producers fill it and park, and records wrap often.
    let open = OpenMode::Create { capacity: 1024 };
    let mut consumer = ShmMpscConsumer::with_slots(name.name(), open, 8).unwrap();
    let mut children = Vec::new();
    for id in 0..producers {
        let name = name.name().to_string();
        children.push(Child::spawn(move |from, to| {
            let mut p = ShmMpscProducer::new(&name, OpenMode::Open).ok()?;
            say(to, b'r')?;
            (hear(from)? == b'g').then_some(())?;
            for seq in 0..count {
                p.push_blocking(&message(id, seq), LONG).ok()?;
            }
            p.finish().ok()?;
            Some(())
        }));
    }
    // Every producer attached before any may finish (and close the stream).
    for child in &mut children {
        child.expect(b'r');
    }
    for child in &mut children {
        child.say(b'g');
    }
    let mut next = vec![0u32; producers as usize];
    loop {
        match consumer.pop_blocking(LONG) {
            Ok(msg) => {
                let (id, seq) = parse(&msg);
                assert_eq!(seq, next[id as usize], "producer {id} out of order");
                next[id as usize] += 1;
            }
            Err(ShmError::MpscRead(ReadError::Closed)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(next.iter().all(|n| *n == count), "delivered {next:?}");
    for child in children {
        assert_eq!(child.join(), 0);
    }
    drop(consumer);
    assert!(!name.exists(), "the last side removed the finished segment");
}

#[test]
fn a_producer_killed_with_a_claim_open_is_skipped_once_its_lease_is_gone() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = TempName::for_test("mpsc-kill");
    let open = OpenMode::Create { capacity: 4096 };
    let mut consumer = ShmMpscConsumer::with_slots(name.name(), open, 4).unwrap();
    let seg = name.name().to_string();
    let mut doomed = Child::spawn(move |from, to| {
        let mut p = ShmMpscProducer::new(&seg, OpenMode::Open).ok()?;
        for seq in 0..3 {
            p.push(&message(0, seq)).ok()?;
        }
        let mut grant = p.reserve(16).ok()?;
        grant[..8].copy_from_slice(b"half-wr!");
        grant.abandon();
        say(to, b'c')?;
        hear(from); // waits to be killed
        None
    });
    doomed.expect(b'c');
    let seg = name.name().to_string();
    let mut other = Child::spawn(move |_, to| {
        let mut p = ShmMpscProducer::new(&seg, OpenMode::Open).ok()?;
        for seq in 0..2 {
            p.push(&message(1, seq)).ok()?;
        }
        say(to, b'd')?;
        // The killed producer is still attached when this one finishes (so
        // it does not close), or already gone (then it does): both end the
        // stream for the consumer after the last message.
        p.finish().ok()?;
        Some(())
    });
    other.expect(b'd');
    for seq in 0..3 {
        let msg = consumer.pop_blocking(LONG).unwrap();
        assert_eq!(parse(&msg), (0, seq), "committed before the claim");
    }
    // The claimer lives: its claim at `head` is waited for.
    assert!(matches!(
        consumer.pop(),
        Err(ReadError::Pending { slot: 0 })
    ));
    let killed = Instant::now();
    kill(doomed.pid(), Signal::SIGKILL).unwrap();
    let msg = consumer.pop_blocking(LONG).unwrap();
    let passed = killed.elapsed();
    println!("SIGKILL to the consumer passing the dead claim: {passed:?}");
    assert_eq!(parse(&msg), (1, 0));
    assert_eq!(parse(&consumer.pop_blocking(LONG).unwrap()), (1, 1));
    match consumer.pop_blocking(LONG) {
        Err(ShmError::MpscRead(ReadError::Closed)) | Err(ShmError::PeerDied(Role::Producer)) => {}
        other => panic!("expected the end of stream, got {other:?}"),
    }
    assert_eq!(other.join(), 0);
    drop(doomed);
}

#[test]
fn a_stopped_producer_with_a_claim_open_is_waited_for_and_delivered_after_sigcont() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = TempName::for_test("mpsc-stop");
    let open = OpenMode::Create { capacity: 4096 };
    let mut consumer = ShmMpscConsumer::with_slots(name.name(), open, 4).unwrap();
    let seg = name.name().to_string();
    let mut stopped = Child::spawn(move |from, to| {
        let mut p = ShmMpscProducer::new(&seg, OpenMode::Open).ok()?;
        let mut grant = p.reserve(message(0, 0).len()).ok()?;
        grant[..4].copy_from_slice(&message(0, 0)[..4]);
        say(to, b'c')?;
        (hear(from)? == b'g').then_some(())?;
        grant.copy_from_slice(&message(0, 0));
        grant.commit();
        say(to, b'k')?;
        // Stays attached until told, so the other producer does not close.
        (hear(from)? == b'q').then_some(())?;
        p.finish().ok()?;
        Some(())
    });
    stopped.expect(b'c');
    kill(stopped.pid(), Signal::SIGSTOP).unwrap();
    let seg = name.name().to_string();
    let mut other = Child::spawn(move |_, to| {
        let mut p = ShmMpscProducer::new(&seg, OpenMode::Open).ok()?;
        p.push(&message(1, 0)).ok()?;
        say(to, b'd')?;
        p.finish().ok()?;
        Some(())
    });
    other.expect(b'd');
    assert_eq!(other.join(), 0);
    // Stopped, not dead: its slot lease is held, so its claim is waited for
    // however long it stays stopped.
    for _ in 0..3 {
        assert!(matches!(
            consumer.wait_message(Some(Duration::from_millis(100))),
            Err(ShmError::TimedOut)
        ));
        assert!(matches!(
            consumer.pop(),
            Err(ReadError::Pending { slot: 0 })
        ));
    }
    let info = inspect(name.name()).unwrap();
    assert!(info.slots[0].held && !info.slots[1].held, "{info:?}");
    kill(stopped.pid(), Signal::SIGCONT).unwrap();
    stopped.say(b'g');
    stopped.expect(b'k');
    assert_eq!(parse(&consumer.pop_blocking(LONG).unwrap()), (0, 0));
    assert_eq!(parse(&consumer.pop_blocking(LONG).unwrap()), (1, 0));
    stopped.say(b'q');
    assert_eq!(stopped.join(), 0);
    assert!(matches!(
        consumer.pop_blocking(LONG),
        Err(ShmError::MpscRead(ReadError::Closed))
    ));
    wait_until("the slots are free", || {
        inspect(name.name()).is_ok_and(|i| i.slots.iter().all(|s| !s.held))
    });
}

// ---------------------------------------------------------------------------
// Generated plans across processes, against the per-producer oracle
// ---------------------------------------------------------------------------

/// One step of a producer process.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// `push_blocking` of a `len`-byte message.
    Push(usize),
    /// Reserve, write, commit.
    Commit(usize),
    /// Reserve, write half, drop the grant: given up, never delivered.
    GiveUp(usize),
}

/// How a producer process ends.
#[derive(Clone, Copy, Debug)]
enum End {
    /// `finish`: lets go of its slot; the last producer to finish closes.
    Finish,
    /// Exits holding an uncommitted claim (the kernel drops its slot lease
    /// at exit): the consumer must skip the claim, never deliver it.
    DieHoldingClaim(usize),
}

/// How the consumer takes its next message(s).
#[derive(Clone, Copy, Debug)]
enum Take {
    Pop,
    /// Reads in place and drops without releasing: the same message must
    /// come again.
    ReadDrop,
    /// A batch of up to `n` messages, released together.
    Batch(usize),
}

#[derive(Clone, Debug)]
struct Plan {
    capacity: u64,
    producers: Vec<(Vec<Step>, End)>,
    takes: Vec<Take>,
}

fn plan_strategy() -> impl Strategy<Value = Plan> {
    (prop_oneof![Just(64u64), Just(256), Just(1024)], 1usize..=4).prop_flat_map(
        |(capacity, producers)| {
            // Lengths from 8 (the id and sequence number) to the largest
            // message the ring takes.
            let len = 8usize..=ringproof::layout::max_message(capacity) as usize;
            let step = prop_oneof![
                4 => len.clone().prop_map(Step::Push),
                2 => len.clone().prop_map(Step::Commit),
                1 => len.clone().prop_map(Step::GiveUp),
            ];
            let end = prop_oneof![
                3 => Just(End::Finish),
                1 => len.prop_map(End::DieHoldingClaim),
            ];
            let producer = (proptest::collection::vec(step, 0..40), end);
            let take = prop_oneof![
                3 => Just(Take::Pop),
                1 => Just(Take::ReadDrop),
                2 => (2usize..=5).prop_map(Take::Batch),
            ];
            (
                proptest::collection::vec(producer, producers),
                proptest::collection::vec(take, 1..8),
            )
                .prop_map(move |(producers, takes)| Plan {
                    capacity,
                    producers,
                    takes,
                })
        },
    )
}

/// Message `seq` of producer `id`, `len` bytes: both numbers, then filler
/// that depends on both, so a torn or misplaced message shows.
fn planned(id: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend((8..len).map(|i| (i as u32 ^ seq.wrapping_mul(31) ^ id.wrapping_mul(97)) as u8));
    out
}

/// Reserves `len` bytes, waiting while the ring is full, and hands the
/// grant to `use_it`.
fn with_reservation(
    p: &mut ShmMpscProducer,
    len: usize,
    use_it: impl FnOnce(ringproof::mpsc::Grant<'_, ringproof::shm::mpsc::MpscView>),
) -> Option<()> {
    let deadline = Instant::now() + LONG.unwrap();
    loop {
        match p.reserve(len) {
            Ok(grant) => {
                use_it(grant);
                return Some(());
            }
            Err(ringproof::mpsc::PushError::Full) if Instant::now() < deadline => {}
            Err(_) => return None,
        }
        p.as_producer_mut()
            .wait_writable(Some(Duration::from_millis(10)))
            .ok()?;
    }
}

/// The producer process: attach, wait for the go, run the steps, end.
fn run_producer(
    name: &str,
    id: u32,
    steps: &[Step],
    end: End,
    from: &mut File,
    to: &mut File,
) -> Option<()> {
    let mut p = ShmMpscProducer::new(name, OpenMode::Open).ok()?;
    say(to, b'r')?;
    (hear(from)? == b'g').then_some(())?;
    for (seq, step) in steps.iter().enumerate() {
        let seq = seq as u32;
        match *step {
            Step::Push(len) => p.push_blocking(&planned(id, seq, len), LONG).ok()?,
            Step::Commit(len) => with_reservation(&mut p, len, |mut grant| {
                grant.copy_from_slice(&planned(id, seq, len));
                grant.commit();
            })?,
            Step::GiveUp(len) => with_reservation(&mut p, len, |mut grant| {
                grant[..len / 2].copy_from_slice(&planned(id, seq, len)[..len / 2]);
                drop(grant);
            })?,
        }
    }
    match end {
        End::Finish => {
            p.finish().ok()?;
        }
        End::DieHoldingClaim(len) => {
            let seq = steps.len() as u32;
            with_reservation(&mut p, len, |mut grant| {
                grant[..len / 2].copy_from_slice(&planned(id, seq, len)[..len / 2]);
                grant.abandon();
            })?;
            // The caller `_exit`s: the claim stays uncommitted and the kernel
            // drops the slot lease with the process.
        }
    }
    Some(())
}

/// What the oracle expects from producer `id`: its committed messages, in order.
fn committed(id: u32, steps: &[Step]) -> Vec<Vec<u8>> {
    steps
        .iter()
        .enumerate()
        .filter_map(|(seq, step)| match *step {
            Step::Push(len) | Step::Commit(len) => Some(planned(id, seq as u32, len)),
            Step::GiveUp(_) => None,
        })
        .collect()
}

/// Runs one plan: producers in forked processes, the consumer here. Every
/// producer's committed messages must arrive whole, in its order, exactly
/// once, and nothing else (no given-up or uncommitted claim) ever.
fn run_plan(plan: &Plan) -> Result<(), TestCaseError> {
    let name = TempName::for_test("mpsc-plan");
    let open = OpenMode::Create {
        capacity: plan.capacity,
    };
    let slots = plan.producers.len() as u32;
    let mut consumer = ShmMpscConsumer::with_slots(name.name(), open, slots).unwrap();
    let mut children = Vec::new();
    for (id, (steps, end)) in plan.producers.iter().enumerate() {
        let (seg, steps, end) = (name.name().to_string(), steps.clone(), *end);
        children.push(Child::spawn(move |from, to| {
            run_producer(&seg, id as u32, &steps, end, from, to)
        }));
    }
    // Every producer attached before any may finish (and close the stream).
    for child in &mut children {
        child.expect(b'r');
    }
    for child in &mut children {
        child.say(b'g');
    }
    let mut expected: Vec<std::collections::VecDeque<Vec<u8>>> = plan
        .producers
        .iter()
        .enumerate()
        .map(|(id, (steps, _))| committed(id as u32, steps).into())
        .collect();
    let mut left: usize = expected.iter().map(|q| q.len()).sum();
    // Checks one delivery against the front of its producer's queue.
    let deliver = |msg: &[u8], expected: &mut [std::collections::VecDeque<Vec<u8>>]| {
        prop_assert!(msg.len() >= 8, "a {}-byte message", msg.len());
        let id = u32::from_le_bytes(msg[..4].try_into().unwrap()) as usize;
        let queue = expected.get_mut(id);
        prop_assert!(queue.is_some(), "a message of unknown producer {id}");
        let queue = queue.unwrap();
        prop_assert_eq!(
            queue.front().map(Vec::as_slice),
            Some(msg),
            "producer {}",
            id
        );
        queue.pop_front();
        Ok(())
    };
    let mut turn = 0;
    let mut stuck_after = Instant::now() + LONG.unwrap();
    while left > 0 {
        let take = plan.takes[turn % plan.takes.len()];
        turn += 1;
        match take {
            Take::Pop => {
                let msg = consumer.pop_blocking(LONG).map_err(|e| fail(&e, left))?;
                deliver(&msg, &mut expected)?;
                left -= 1;
            }
            Take::ReadDrop => {
                let first = consumer
                    .read_blocking(LONG)
                    .map_err(|e| fail(&e, left))?
                    .to_vec();
                let again = consumer.pop_blocking(LONG).map_err(|e| fail(&e, left))?;
                prop_assert_eq!(&first, &again, "a dropped read comes again");
                deliver(&again, &mut expected)?;
                left -= 1;
            }
            Take::Batch(n) => {
                consumer.wait_message(LONG).map_err(|e| fail(&e, left))?;
                let mut batch = consumer.as_consumer_mut().read_batch();
                let mut got = Vec::new();
                let mut stop = None;
                while got.len() < n {
                    match batch.read() {
                        Ok(msg) => got.push(msg.to_vec()),
                        Err(e) => {
                            stop = Some(e);
                            break;
                        }
                    }
                }
                batch.release();
                if got.is_empty() {
                    // Ready but nothing delivered: a dead claim was skipped
                    // (go on), or the stream ended early (a loss).
                    prop_assert!(
                        !matches!(stop, Some(ReadError::Closed | ReadError::Corrupted(_))),
                        "{:?} with {} committed messages not delivered",
                        stop,
                        left
                    );
                    prop_assert!(Instant::now() < stuck_after, "no progress for 20 s");
                    continue;
                }
                stuck_after = Instant::now() + LONG.unwrap();
                for msg in &got {
                    deliver(msg, &mut expected)?;
                }
                left -= got.len();
            }
        }
    }
    // Every committed message is in: keep reading (given-up and dead
    // records are released on the way, which producers still reserving
    // need) until every producer has exited; no message may come.
    let deadline = Instant::now() + LONG.unwrap();
    let mut running = children;
    loop {
        match consumer.pop() {
            Err(ReadError::Empty | ReadError::Closed | ReadError::Pending { .. }) => {}
            other => prop_assert!(false, "after the last message: {:?}", other),
        }
        let mut still = Vec::new();
        for mut child in running {
            match child.try_join() {
                Some(code) => prop_assert_eq!(code, 0, "a producer process failed"),
                None => still.push(child),
            }
        }
        running = still;
        if running.is_empty() {
            break;
        }
        prop_assert!(
            Instant::now() < deadline,
            "producers still running after 20 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Every producer is gone: a claim left by one that died is skipped now
    // that its lease is free, and nothing else is in the ring.
    match consumer.pop() {
        Err(ReadError::Empty | ReadError::Closed) => {}
        other => prop_assert!(false, "after every producer left: {:?}", other),
    }
    Ok(())
}

fn fail(e: &ShmError, left: usize) -> TestCaseError {
    TestCaseError::fail(format!("{e} with {left} committed messages not delivered"))
}

#[test]
fn generated_producer_plans_across_processes_match_the_oracle() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cases = std::env::var("RINGPROOF_MPSC_PROCESS_CASES")
        .or_else(|_| std::env::var("PROPTEST_CASES"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/mpsc_processes.txt",
        ))),
        ..Config::default()
    });
    runner
        .run(&plan_strategy(), |plan| run_plan(&plan))
        .unwrap();
}
