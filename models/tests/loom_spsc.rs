//! loom models of the SPSC protocol: the shipped `Producer` and `Consumer`
//! over loom atomics and race-checked data cells, every interleaving and
//! every allowed reordering up to the stated preemption bound.
//!
//! Each test prints its bound and the number of executions it explored
//! (`cargo test -p ringproof-models --test loom_spsc -- --nocapture`).

use loom::thread;
use ringproof::sync::Shared;
use ringproof::{Consumer, Producer};
use ringproof::{PopValueError, PushError, ReadError};
use ringproof_models::loom_shared::{LoomShared, channel, check};
use ringproof_models::{pattern, pop_retry, push_retry};

/// The preemption bound of every scenario (exhaustive at this bound; at
/// least 3 for the core scenarios).
const BOUND: usize = 5;

#[test]
fn single_message_is_delivered_intact() {
    check("single_message_is_delivered_intact", BOUND, || {
        let (mut p, mut c) = channel(32).unwrap();
        let producer = thread::spawn(move || p.push(&pattern(0, 5)).unwrap());
        assert_eq!(pop_retry(&mut c).unwrap(), pattern(0, 5));
        producer.join().unwrap();
    });
}

#[test]
fn fill_to_full_then_drain_reuses_released_space() {
    check(
        "fill_to_full_then_drain_reuses_released_space",
        BOUND,
        || {
            let (mut p, mut c) = channel(32).unwrap();
            let producer = thread::spawn(move || {
                // Two 16-byte records fill the 32-byte ring.
                p.push(&pattern(0, 8)).unwrap();
                p.push(&pattern(1, 8)).unwrap();
                // The third needs the first record's bytes back.
                push_retry(&mut p, &pattern(2, 8)).unwrap();
            });
            while c.used_bytes().unwrap() != 32 {
                c.shared().spin();
            }
            for i in 0..3 {
                assert_eq!(pop_retry(&mut c).unwrap(), pattern(i, 8));
            }
            producer.join().unwrap();
        },
    );
}

#[test]
fn wrap_around_skips_the_padding_record() {
    check("wrap_around_skips_the_padding_record", BOUND, || {
        let (mut p, mut c) = channel(32).unwrap();
        let producer = thread::spawn(move || {
            p.push(&pattern(0, 8)).unwrap(); // 0..16
            p.push(&pattern(1, 0)).unwrap(); // 16..24
            // 8 bytes left before the end: a padding record, then 32..48.
            push_retry(&mut p, &pattern(2, 7)).unwrap();
            assert_eq!(p.position(), 48);
        });
        assert_eq!(pop_retry(&mut c).unwrap(), pattern(0, 8));
        assert_eq!(pop_retry(&mut c).unwrap(), pattern(1, 0));
        assert_eq!(pop_retry(&mut c).unwrap(), pattern(2, 7));
        producer.join().unwrap();
    });
}

#[test]
fn reserve_then_abort_sends_nothing() {
    check("reserve_then_abort_sends_nothing", BOUND, || {
        let (mut p, mut c) = channel(32).unwrap();
        let producer = thread::spawn(move || {
            let mut grant = p.reserve(8).unwrap();
            grant.copy_from_slice(&[0xee; 8]);
            drop(grant);
            p.push(&pattern(0, 3)).unwrap();
            p.close().unwrap();
        });
        assert_eq!(pop_retry(&mut c).unwrap(), pattern(0, 3));
        assert_eq!(pop_retry(&mut c), Err(ReadError::Closed));
        producer.join().unwrap();
    });
}

#[test]
fn batch_commits_and_releases_all_or_nothing() {
    check("batch_commits_and_releases_all_or_nothing", BOUND, || {
        let (mut p, mut c) = channel(32).unwrap();
        let producer = thread::spawn(move || {
            let mut batch = p.batch();
            batch.push(&pattern(0, 4)).unwrap();
            batch.push(&pattern(1, 4)).unwrap();
            batch.commit();
            // Needs both records released (the ring holds two).
            push_retry(&mut p, &pattern(2, 4)).unwrap();
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            let mut batch = c.read_batch();
            loop {
                match batch.read() {
                    Ok(message) => got.push(message.to_vec()),
                    Err(ReadError::Empty) => break,
                    Err(other) => panic!("read_batch: {other}"),
                }
            }
            assert_ne!(got.len(), 1, "half of a batch became visible");
            if batch.is_empty() {
                drop(batch);
                c.shared().spin();
            } else {
                batch.release();
            }
        }
        assert_eq!(got, [pattern(0, 4), pattern(1, 4), pattern(2, 4)]);
        producer.join().unwrap();
    });
}

#[test]
fn close_with_messages_in_flight_delivers_all_then_closed() {
    check(
        "close_with_messages_in_flight_delivers_all_then_closed",
        BOUND,
        || {
            let (mut p, mut c) = channel(32).unwrap();
            let producer = thread::spawn(move || {
                p.push(&pattern(0, 8)).unwrap();
                p.push(&pattern(1, 8)).unwrap();
                p.close().unwrap();
                assert_eq!(p.push(b"late"), Err(PushError::Closed));
            });
            assert_eq!(pop_retry(&mut c).unwrap(), pattern(0, 8));
            assert_eq!(pop_retry(&mut c).unwrap(), pattern(1, 8));
            assert_eq!(pop_retry(&mut c), Err(ReadError::Closed));
            assert_eq!(c.pop(), Err(ReadError::Closed));
            producer.join().unwrap();
        },
    );
}

#[test]
fn full_and_empty_are_retried_until_every_message_passes() {
    check(
        "full_and_empty_are_retried_until_every_message_passes",
        BOUND,
        || {
            let (mut p, mut c) = channel(32).unwrap();
            let producer = thread::spawn(move || {
                for i in 0..4 {
                    push_retry(&mut p, &pattern(i, 8)).unwrap();
                }
            });
            for i in 0..4 {
                assert_eq!(pop_retry(&mut c).unwrap(), pattern(i, 8));
            }
            producer.join().unwrap();
        },
    );
}

#[test]
fn typed_values_round_trip_and_size_mismatch_keeps_the_message() {
    check(
        "typed_values_round_trip_and_size_mismatch_keeps_the_message",
        BOUND,
        || {
            let (mut p, mut c) = channel(32).unwrap();
            let producer = thread::spawn(move || {
                p.push_value(&0x0102_0304_0506_0708_u64).unwrap();
                p.push_value(&7_u32).unwrap();
            });
            let first = loop {
                match c.pop_value::<u32>() {
                    Err(PopValueError::Empty) => c.shared().spin(),
                    other => break other,
                }
            };
            assert_eq!(
                first,
                Err(PopValueError::SizeMismatch {
                    expected: 4,
                    actual: 8
                })
            );
            assert_eq!(c.pop_value::<u64>(), Ok(0x0102_0304_0506_0708));
            let second = loop {
                match c.pop_value::<u32>() {
                    Err(PopValueError::Empty) => c.shared().spin(),
                    other => break other,
                }
            };
            assert_eq!(second, Ok(7));
            producer.join().unwrap();
        },
    );
}

#[test]
fn producer_reattaching_sees_the_consumers_releases() {
    check(
        "producer_reattaching_sees_the_consumers_releases",
        BOUND,
        || {
            let shared = LoomShared::new(32);
            let mut c = Consumer::new(shared.clone()).unwrap();
            let producer = thread::spawn(move || {
                let mut first = Producer::new(shared.clone()).unwrap();
                first.push(&pattern(0, 8)).unwrap();
                first.push(&pattern(1, 8)).unwrap();
                drop(first);
                // A successor takes the role and writes into released space.
                let mut second = Producer::new(shared).unwrap();
                push_retry(&mut second, &pattern(2, 8)).unwrap();
            });
            for i in 0..3 {
                assert_eq!(pop_retry(&mut c).unwrap(), pattern(i, 8));
            }
            producer.join().unwrap();
        },
    );
}

#[test]
fn consumer_reattaching_sees_the_producers_commits() {
    check(
        "consumer_reattaching_sees_the_producers_commits",
        BOUND,
        || {
            let shared = LoomShared::new(32);
            let mut p = Producer::new(shared.clone()).unwrap();
            let producer = thread::spawn(move || {
                p.push(&pattern(0, 8)).unwrap();
                p.push(&pattern(1, 8)).unwrap();
            });
            let mut first = Consumer::new(shared.clone()).unwrap();
            assert_eq!(pop_retry(&mut first).unwrap(), pattern(0, 8));
            drop(first);
            // A successor takes the role and reads what is committed.
            let mut second = Consumer::new(shared).unwrap();
            assert_eq!(pop_retry(&mut second).unwrap(), pattern(1, 8));
            producer.join().unwrap();
        },
    );
}

#[test]
fn close_by_a_successor_producer_delivers_every_message() {
    check(
        "close_by_a_successor_producer_delivers_every_message",
        BOUND,
        || {
            let shared = LoomShared::new(32);
            let mut c = Consumer::new(shared.clone()).unwrap();
            let first_shared = shared.clone();
            let first = thread::spawn(move || {
                let mut p = Producer::new(first_shared).unwrap();
                p.push(&pattern(0, 8)).unwrap();
                p.push(&pattern(1, 8)).unwrap();
            });
            // The role passes to another thread (joining stands in for the
            // role lock), which only closes: its `closed` store must carry
            // the first producer's commits.
            let second = thread::spawn(move || {
                first.join().unwrap();
                Producer::new(shared).unwrap().close().unwrap();
            });
            assert_eq!(pop_retry(&mut c).unwrap(), pattern(0, 8));
            assert_eq!(pop_retry(&mut c).unwrap(), pattern(1, 8));
            assert_eq!(pop_retry(&mut c), Err(ReadError::Closed));
            second.join().unwrap();
        },
    );
}
