//! The MPSC checker shown able to fail: doctored evidence with a message
//! lost, delivered twice, torn, abandoned, out of order, or repeated by a
//! consumer outside its unreleased batch.

use super::check::{ABANDONED, Delivered, Evidence, ProducerFacts, check};

fn d(producer: u64, seq: u64) -> Delivered {
    Delivered {
        producer,
        seq,
        whole: true,
    }
}

/// Two producers of 3 messages each, all delivered once, interleaved.
fn clean() -> Evidence {
    Evidence {
        producers: vec![
            ProducerFacts {
                next: 3,
                ..ProducerFacts::default()
            };
            2
        ],
        deliveries: vec![d(0, 0), d(1, 0), d(0, 1), d(1, 1), d(1, 2), d(0, 2)],
        unreleased: Vec::new(),
        max_batch: 3,
    }
}

#[test]
fn clean_evidence_passes() {
    let v = check(&clean());
    assert!(v.passed(), "{:?}", v.violations);
    assert_eq!((v.committed, v.delivered), (6, 6));
}

#[test]
fn a_lost_committed_message_is_caught() {
    let mut e = clean();
    e.deliveries.remove(3); // producer 1's message 1
    let v = check(&e);
    assert_eq!(v.lost, 1);
    assert!(!v.passed());
}

#[test]
fn a_message_in_doubt_may_be_missing_but_not_one_known_committed() {
    let mut e = clean();
    e.deliveries.remove(3);
    e.producers[1].maybe.push(1..2);
    let v = check(&e);
    assert!(v.passed(), "{:?}", v.violations);
    assert_eq!(v.in_doubt, 1);
}

#[test]
fn a_message_delivered_twice_is_caught() {
    let mut e = clean();
    e.deliveries.push(d(0, 1));
    let v = check(&e);
    assert_eq!(v.duplicates_outside_batch, 1);
    assert!(!v.passed());
}

#[test]
fn a_dead_consumers_unreleased_batch_may_come_again_once() {
    let mut e = clean();
    // The consumer died after delivering indices 2..4 unreleased; its
    // successor delivers them again.
    e.deliveries.insert(4, d(0, 1));
    e.deliveries.insert(5, d(1, 1));
    e.unreleased.push(2..4);
    let v = check(&e);
    assert!(v.passed(), "{:?}", v.violations);
    assert_eq!(v.duplicates, 2);
    // A third delivery of one of them is not explained.
    e.deliveries.push(d(0, 1));
    assert_eq!(check(&e).duplicates_outside_batch, 1);
    // Nor is an unreleased window longer than a batch.
    let mut long = clean();
    long.unreleased.push(0..5);
    assert!(!check(&long).passed());
}

#[test]
fn torn_abandoned_and_uncommitted_deliveries_are_caught() {
    let mut e = clean();
    e.deliveries[0].whole = false;
    e.deliveries.push(d(ABANDONED, 7));
    e.deliveries.push(d(1, 3)); // past the producer's record
    e.producers[0].never.push(2..3);
    let v = check(&e);
    assert_eq!(v.torn, 1);
    // Abandoned, past the record, and producer 0's message 2 (known never committed).
    assert_eq!(v.uncommitted_delivered, 3);
    assert!(!v.passed());
}

#[test]
fn a_producer_out_of_order_is_caught() {
    let mut e = clean();
    e.deliveries.swap(0, 2); // producer 0: 1 before 0
    let v = check(&e);
    assert_eq!(v.order_violations, 1);
    assert!(!v.passed());
}
