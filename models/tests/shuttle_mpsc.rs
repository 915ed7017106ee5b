//! shuttle models of the MPSC protocol: three or four producers with random
//! message sizes over a small ring (many wrap-arounds and padding records),
//! one of them killed mid-claim in some runs, under random and PCT
//! schedules; and a blocking variant where producers and the consumer park.
//!
//! Iterations per scheduler: `RINGPROOF_SHUTTLE_MPSC_ITERATIONS`, else
//! `RINGPROOF_SHUTTLE_ITERATIONS` (default 200; `ci/models-full` 1,000);
//! messages per producer: `RINGPROOF_SHUTTLE_MESSAGES` (default 2,000,
//! divided by 20 here: each run has several producers). Replay a failing
//! schedule with `RINGPROOF_SHUTTLE_REPLAY='<schedule>'`.

use ringproof::mpsc::{Consumer, Producer, PushError, ReadError};
use ringproof::sync::{CrashPoint, Shared};
use ringproof_models::shuttle_shared::{self, ShuttleShared};
use ringproof_models::{
    Budget, ModelLiveness, ModelShared, SplitMix, mpsc_channel, pattern, run_until_killed,
};
use shuttle::rand::{Rng, thread_rng};
use shuttle::sync::atomic::{AtomicUsize, Ordering};
use shuttle::thread;
use std::sync::Arc;

const DEFAULT_ITERATIONS: usize = 200;

fn explore(name: &str, pct: bool, scenario: fn()) {
    let iterations = Budget::shuttle_mpsc_iterations(DEFAULT_ITERATIONS);
    let (iterations, took) = shuttle_shared::explore_n(pct, iterations, scenario);
    eprintln!(
        "shuttle {name}: {} scheduler, {iterations} iterations, {took:.2?}",
        if pct { "pct" } else { "random" },
    );
}

/// Messages per producer in one run.
fn per_producer() -> u32 {
    (Budget::shuttle_messages(2_000) / 20).max(1) as u32
}

/// Message `seq` of `slot` in the run seeded `seed`: a random size up to
/// `max` (some empty, some the largest), first bytes naming it.
fn message(seed: u64, slot: u8, seq: u32, max: usize) -> Vec<u8> {
    let mut rng = SplitMix(seed ^ (u64::from(slot) << 32 | u64::from(seq)));
    let len = match rng.below(6) {
        0 => 5,
        1 => max,
        _ => 5 + rng.below(max as u64 - 4) as usize,
    };
    let mut bytes = pattern(rng.next_u64(), len);
    bytes[0] = slot;
    bytes[1..5].copy_from_slice(&seq.to_ne_bytes());
    bytes
}

/// How a producer of the run behaves.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// Sends all its messages.
    Lives,
    /// Leaks a claim after writing half of message `at` (dies mid-payload).
    DiesMidPayload { at: u32 },
    /// Is killed at its crash point `AfterReserve` of message `at` (right
    /// after its claim), unwinding out of the protocol.
    DiesAfterClaim { at: u32 },
}

/// Sends this producer's messages; returns how many were committed.
fn produce(
    p: &mut Producer<ShuttleShared>,
    seed: u64,
    count: u32,
    fate: Fate,
    blocking: bool,
) -> u32 {
    let max = p.max_message();
    let slot = p.slot();
    for seq in 0..count {
        let bytes = message(seed, slot, seq, max);
        if let Fate::DiesMidPayload { at } = fate {
            if seq == at {
                loop {
                    match p.reserve(bytes.len()) {
                        Ok(mut grant) => {
                            let half = bytes.len() / 2;
                            grant[..half].copy_from_slice(&bytes[..half]);
                            grant.abandon();
                            break;
                        }
                        Err(PushError::Full) => thread::yield_now(),
                        Err(other) => panic!("reserve: {other}"),
                    }
                }
                p.shared().kill(slot);
                return seq;
            }
        }
        loop {
            match p.push(&bytes) {
                Ok(()) => break,
                Err(PushError::Full) if blocking => {
                    p.wait_writable(None).unwrap();
                }
                Err(PushError::Full) => p.shared().spin(),
                Err(other) => panic!("push: {other}"),
            }
        }
    }
    count
}

fn run(capacity: u64, producers: u8, blocking: bool, deaths: bool) {
    let seed: u64 = thread_rng().r#gen();
    let count = per_producer();
    let (sides, consumer) = mpsc_channel(producers, |w64, w32, slots| {
        ShuttleShared::with_words(capacity, w64, w32, slots)
    });
    let mut rng = SplitMix(seed);
    let doomed = if deaths {
        rng.below(u64::from(producers)) as u8
    } else {
        u8::MAX
    };
    let done = Arc::new(AtomicUsize::new(0));
    let sent: Vec<_> = sides
        .into_iter()
        .map(|p| {
            let slot = p.slot();
            let at = rng.below(u64::from(count)) as u32;
            let fate = match (slot == doomed, rng.below(2)) {
                (false, _) => Fate::Lives,
                (true, 0) => Fate::DiesMidPayload { at },
                (true, _) => Fate::DiesAfterClaim { at },
            };
            let done = Arc::clone(&done);
            thread::spawn(move || {
                let sent = if let Fate::DiesAfterClaim { at } = fate {
                    let view = p.shared().clone().dying_at(CrashPoint::AfterReserve, slot);
                    let mut p = p;
                    let sent = produce(&mut p, seed, at, Fate::Lives, blocking);
                    // The same slot again, through a view that dies right
                    // after its next claim.
                    let mut doomed = Producer::new(view, slot).unwrap();
                    let max = doomed.max_message();
                    let bytes = message(seed, slot, at, max);
                    assert!(!run_until_killed(|| push_spin(&mut doomed, &bytes)));
                    sent
                } else {
                    let mut p = p;
                    let sent = produce(&mut p, seed, count, fate, blocking);
                    // AcqRel: the Release half orders this producer's
                    // commits before the consumer's Acquire load of `done`;
                    // the Acquire half orders every other producer's
                    // commits before the close below.
                    let finished = done.fetch_add(1, Ordering::AcqRel) + 1;
                    if blocking && finished == usize::from(producers) {
                        // The last producer closes the stream: a consumer
                        // parked on an empty ring is woken only by a commit
                        // or a close, never by the `done` counter.
                        p.close().unwrap();
                    }
                    return sent;
                };
                // Release: this producer's commits (and death) happen before
                // the consumer's last reads; pairs with its Acquire load.
                done.fetch_add(1, Ordering::Release);
                sent
            })
        })
        .collect();
    let delivered = consume(consumer, seed, producers, &done, blocking);
    for (slot, handle) in sent.into_iter().enumerate() {
        let committed = handle.join().unwrap();
        assert_eq!(
            delivered[slot], committed,
            "producer {slot}: committed {committed}, delivered {}",
            delivered[slot]
        );
    }
}

fn push_spin(p: &mut Producer<ShuttleShared>, bytes: &[u8]) {
    loop {
        match p.push(bytes) {
            Ok(()) => return,
            Err(PushError::Full) => p.shared().spin(),
            Err(other) => panic!("push: {other}"),
        }
    }
}

/// Reads until every producer is done and the ring is drained; checks each
/// message is intact and each producer's come in order without gaps.
fn consume(
    mut c: Consumer<ShuttleShared, ModelLiveness<ShuttleShared>>,
    seed: u64,
    producers: u8,
    done: &AtomicUsize,
    blocking: bool,
) -> Vec<u32> {
    let max = ringproof::layout::max_message(c.shared().capacity()) as usize;
    let mut next = vec![0u32; producers as usize];
    loop {
        // Acquire: pairs with the Release increment of each producer.
        let all_done = done.load(Ordering::Acquire) == producers as usize;
        match c.read() {
            Ok(read) => {
                let slot = read[0];
                let seq = u32::from_ne_bytes(read[1..5].try_into().unwrap());
                assert_eq!(
                    seq, next[slot as usize],
                    "producer {slot}: lost, repeated or reordered"
                );
                assert_eq!(
                    &*read,
                    message(seed, slot, seq, max),
                    "torn message {slot}/{seq}"
                );
                next[slot as usize] += 1;
                read.release();
            }
            Err(ReadError::Empty) if all_done => break,
            Err(ReadError::Closed) => {
                // Acquire: pairs with the AcqRel increment of the closing
                // producer, which saw every other producer's.
                let all = done.load(Ordering::Acquire) == producers as usize;
                assert!(blocking && all, "closed before every producer was done");
                break;
            }
            Err(ReadError::Empty | ReadError::Pending { .. }) => {
                if blocking {
                    c.wait_readable(None).unwrap();
                } else {
                    c.shared().spin();
                }
            }
            Err(other) => panic!("read: {other}"),
        }
    }
    next
}

fn three_producers_one_dies() {
    run(128, 3, false, true);
}

fn four_producers_blocking() {
    run(64, 4, true, false);
}

#[test]
fn three_producers_one_killed_mid_claim_random_schedules() {
    explore(
        "three_producers_one_killed_mid_claim_random_schedules",
        false,
        three_producers_one_dies,
    );
}

#[test]
fn three_producers_one_killed_mid_claim_pct_schedules() {
    explore(
        "three_producers_one_killed_mid_claim_pct_schedules",
        true,
        three_producers_one_dies,
    );
}

#[test]
fn four_producers_parking_on_full_and_empty_random_schedules() {
    explore(
        "four_producers_parking_on_full_and_empty_random_schedules",
        false,
        four_producers_blocking,
    );
}

#[test]
fn four_producers_parking_on_full_and_empty_pct_schedules() {
    explore(
        "four_producers_parking_on_full_and_empty_pct_schedules",
        true,
        four_producers_blocking,
    );
}
