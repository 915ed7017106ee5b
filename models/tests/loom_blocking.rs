//! loom models of the park/wake handshake (`wait_readable`, `wait_writable`
//! and the wake in commit, close and release). The futex is a Mutex+Condvar
//! stand-in that ignores timeouts, so a lost wake-up leaves a thread parked
//! for ever, which loom reports as a deadlock.

use loom::thread;

use ringproof::{PushError, ReadError};
use ringproof_models::loom_shared::{channel, check};
use ringproof_models::pattern;

const BOUND: usize = 5;

#[test]
fn consumer_parked_on_empty_is_woken_by_commit() {
    check("consumer_parked_on_empty_is_woken_by_commit", BOUND, || {
        let (mut p, mut c) = channel(32).unwrap();
        let producer = thread::spawn(move || p.push(&pattern(0, 6)).unwrap());
        let message = loop {
            match c.pop() {
                Err(ReadError::Empty) => {
                    c.wait_readable(None).unwrap();
                }
                other => break other,
            }
        };
        assert_eq!(message.unwrap(), pattern(0, 6));
        producer.join().unwrap();
    });
}

#[test]
fn consumer_parked_on_empty_is_woken_by_close() {
    check("consumer_parked_on_empty_is_woken_by_close", BOUND, || {
        let (mut p, mut c) = channel(32).unwrap();
        let producer = thread::spawn(move || p.close().unwrap());
        let end = loop {
            match c.pop() {
                Err(ReadError::Empty) => {
                    c.wait_readable(None).unwrap();
                }
                other => break other,
            }
        };
        assert_eq!(end, Err(ReadError::Closed));
        producer.join().unwrap();
    });
}

#[test]
fn producer_parked_on_full_is_woken_by_release() {
    check("producer_parked_on_full_is_woken_by_release", BOUND, || {
        let (mut p, mut c) = channel(32).unwrap();
        p.push(&pattern(0, 8)).unwrap();
        p.push(&pattern(1, 8)).unwrap();
        let producer = thread::spawn(move || {
            loop {
                match p.push(&pattern(2, 8)) {
                    Err(PushError::Full) => {
                        p.wait_writable(8, None).unwrap();
                    }
                    other => break other.unwrap(),
                }
            }
        });
        for i in 0..3 {
            let message = loop {
                match c.pop() {
                    Err(ReadError::Empty) => {
                        c.wait_readable(None).unwrap();
                    }
                    other => break other,
                }
            };
            assert_eq!(message.unwrap(), pattern(i, 8));
        }
        producer.join().unwrap();
    });
}
