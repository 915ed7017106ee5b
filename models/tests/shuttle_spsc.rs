//! shuttle models: long runs of the shipped protocol over bigger rings, with
//! random message sizes, every producer and consumer API mixed, batches and
//! many wrap-arounds, under random and PCT schedules.
//!
//! Iterations per scheduler: `RINGPROOF_SHUTTLE_ITERATIONS` (default 300 in
//! plain `cargo test`; `ci/models-full` runs 10,000). Messages per run:
//! `RINGPROOF_SHUTTLE_MESSAGES` (default 2,000).
//!
//! On failure shuttle prints the failing schedule. Replay it with
//! `RINGPROOF_SHUTTLE_REPLAY='<schedule>' cargo test -p ringproof-models
//! --test shuttle_spsc <test name>`: the test then runs that one schedule
//! (`shuttle::replay`) instead of exploring.

use ringproof::PushError;
use ringproof::spsc::{Consumer, Producer};
use ringproof::sync::Shared;
use ringproof::{Error, layout::max_message};
use ringproof_models::shuttle_shared::{self, ShuttleShared, channel};
use ringproof_models::{Budget, SplitMix, pattern};
use shuttle::rand::{Rng, thread_rng};
use shuttle::thread;

/// Default iterations per scheduler inside plain `cargo test`.
const DEFAULT_ITERATIONS: usize = 300;
/// Default messages per run.
const DEFAULT_MESSAGES: usize = 2_000;

fn explore(name: &str, pct: bool, scenario: fn()) {
    let (iterations, took) = shuttle_shared::explore(pct, DEFAULT_ITERATIONS, scenario);
    eprintln!(
        "shuttle {name}: {} scheduler, {iterations} iterations of {} messages, {took:.2?}",
        if pct { "pct" } else { "random" },
        Budget::shuttle_messages(DEFAULT_MESSAGES),
    );
}

/// Size of message `index` of the run seeded with `seed`: mostly small, some
/// up to the ring's maximum, some empty.
fn size_of(seed: u64, index: u64, max: usize) -> usize {
    let mut rng = SplitMix(seed ^ index.wrapping_mul(0x2545_f491_4f6c_dd1d));
    match rng.below(8) {
        0 => 0,
        1 => max,
        2 | 3 => rng.below(max as u64 + 1) as usize,
        _ => rng.below(24) as usize,
    }
}

/// Sends `count` messages with every producer API, then closes.
fn produce(mut p: Producer<ShuttleShared>, seed: u64, count: u64, blocking: bool) {
    let max = p.max_message();
    let mut rng = SplitMix(seed);
    let mut next = 0;
    while next < count {
        let len = size_of(seed, next, max);
        let sent = match rng.below(4) {
            0 => p.push(&pattern(next, len)).map(|()| 1),
            1 => p.reserve(len).map(|mut grant| {
                grant.copy_from_slice(&pattern(next, len));
                if rng.below(4) == 0 {
                    drop(grant); // abort: sends nothing
                    0
                } else {
                    grant.commit();
                    1
                }
            }),
            2 => {
                let mut batch = p.batch();
                let want = 1 + rng.below(4);
                let mut staged = 0;
                while staged < want && next + staged < count {
                    let len = size_of(seed, next + staged, max);
                    match batch.push(&pattern(next + staged, len)) {
                        Ok(()) => staged += 1,
                        Err(PushError::Full) => break,
                        Err(other) => panic!("batch push: {other}"),
                    }
                }
                if staged == 0 {
                    Err(PushError::Full)
                } else {
                    batch.commit();
                    Ok(staged)
                }
            }
            _ => p.push_value(&next).map(|()| 1),
        };
        match sent {
            Ok(n) => next += n,
            Err(PushError::Full) => wait_for_room(&mut p, len, blocking),
            Err(other) => panic!("producer: {other}"),
        }
    }
    p.close().unwrap();
}

fn wait_for_room(p: &mut Producer<ShuttleShared>, len: usize, blocking: bool) {
    if blocking {
        // `push_value` messages are 8 bytes; wait for the larger of the two.
        p.wait_writable(len.max(8), None).unwrap();
    } else {
        p.shared().spin();
    }
}

/// Checks message `index` (sent by `push_value` or as a pattern).
fn check_message(seed: u64, index: u64, max: usize, bytes: &[u8]) {
    let len = size_of(seed, index, max);
    let expected = pattern(index, len);
    assert!(
        bytes == expected.as_slice() || bytes == index.to_ne_bytes().as_slice(),
        "message {index}: got {bytes:?}, expected {expected:?} or the value {index}"
    );
}

/// Receives every message with every consumer API, then expects `Closed`.
fn consume(mut c: Consumer<ShuttleShared>, seed: u64, count: u64, blocking: bool) {
    let max = max_message(c.shared().capacity()) as usize;
    let mut rng = SplitMix(!seed);
    let mut next = 0;
    loop {
        let got: Result<u64, Error> = match rng.below(4) {
            0 => c
                .pop()
                .map(|bytes| {
                    check_message(seed, next, max, &bytes);
                    1
                })
                .map_err(Error::from),
            1 => c
                .read()
                .map(|read| {
                    check_message(seed, next, max, &read);
                    if rng.below(3) == 0 {
                        drop(read); // not consumed: read again next time
                        0
                    } else {
                        read.release();
                        1
                    }
                })
                .map_err(Error::from),
            2 => {
                let mut batch = c.read_batch();
                let mut result = Ok(0);
                for _ in 0..1 + rng.below(4) {
                    let index = next + batch.len() as u64;
                    match batch.read() {
                        Ok(bytes) => check_message(seed, index, max, bytes),
                        Err(e) => {
                            if batch.is_empty() {
                                result = Err(e);
                            }
                            break;
                        }
                    }
                }
                if result.is_ok() {
                    result = Ok(batch.len() as u64);
                }
                batch.release();
                result.map_err(Error::from)
            }
            _ => {
                let mut buf = [0u8; 64];
                c.pop_into(&mut buf[..max.min(64)])
                    .map(|len| {
                        check_message(seed, next, max, &buf[..len]);
                        1
                    })
                    .map_err(Error::from)
            }
        };
        match got {
            Ok(n) => next += n,
            Err(Error::BufferTooSmall { .. }) => {}
            Err(Error::Empty) => {
                if blocking {
                    c.wait_readable(None).unwrap();
                } else {
                    c.shared().spin();
                }
            }
            Err(Error::Closed) => break,
            Err(other) => panic!("consumer: {other}"),
        }
    }
    assert_eq!(next, count, "end of stream before every message arrived");
}

fn run(capacity: u64, blocking: bool) {
    let seed: u64 = thread_rng().r#gen();
    let count = Budget::shuttle_messages(DEFAULT_MESSAGES) as u64;
    let (p, c) = channel(capacity).unwrap();
    let producer = thread::spawn(move || produce(p, seed, count, blocking));
    consume(c, seed, count, blocking);
    producer.join().unwrap();
}

fn spinning_stream() {
    run(256, false);
}

fn blocking_stream() {
    run(64, true);
}

#[test]
fn long_stream_random_sizes_random_schedules() {
    explore(
        "long_stream_random_sizes_random_schedules",
        false,
        spinning_stream,
    );
}

#[test]
fn long_stream_random_sizes_pct_schedules() {
    explore(
        "long_stream_random_sizes_pct_schedules",
        true,
        spinning_stream,
    );
}

#[test]
fn blocking_stream_parks_and_wakes_random_schedules() {
    explore(
        "blocking_stream_parks_and_wakes_random_schedules",
        false,
        blocking_stream,
    );
}

#[test]
fn blocking_stream_parks_and_wakes_pct_schedules() {
    explore(
        "blocking_stream_parks_and_wakes_pct_schedules",
        true,
        blocking_stream,
    );
}
