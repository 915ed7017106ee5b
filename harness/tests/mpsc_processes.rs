//! MPSC rings in shared memory with real producer processes: several into
//! one consumer (per-producer order, exactly once), one killed with a claim
//! open (skipped as soon as the kernel drops its slot lease, what it
//! committed before delivered), one stopped with a claim open (waited for,
//! delivered after `SIGCONT`).
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
