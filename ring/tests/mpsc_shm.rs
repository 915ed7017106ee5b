//! MPSC rings in shared memory, within one process: kind checks, slots,
//! the liveness of a producer that left mid-claim, inspection, removal.
//! The tests with real processes (killed, stopped) are in
//! `harness/tests/mpsc_processes.rs`.

use std::time::Duration;

use ringproof::mpsc::{PopValueError, PushError, ReadError};
use ringproof::shm::mpsc::inspect;
use ringproof::shm::{
    OpenMode, RingKind, Role, ShmConsumer, ShmError, ShmMpscConsumer, ShmMpscProducer, ShmProducer,
    TempName,
};

const CREATE: OpenMode = OpenMode::Create { capacity: 4096 };

#[test]
fn producers_in_slots_meet_the_consumer_through_a_name() {
    let name = TempName::for_test("mpsc-meet");
    let mut c = ShmMpscConsumer::with_slots(name.name(), CREATE, 4).unwrap();
    let mut a = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    let mut b = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    assert_eq!((a.slot(), b.slot()), (0, 1));
    a.push(b"a0").unwrap();
    b.push(b"b0").unwrap();
    a.push(b"a1").unwrap();
    for want in [&b"a0"[..], b"b0", b"a1"] {
        assert_eq!(c.pop_blocking(Some(Duration::from_secs(10))).unwrap(), want);
    }
    assert!(matches!(c.pop(), Err(ReadError::Empty)));
    // The README's size: the header, the data, then the record word table.
    let file = std::path::Path::new("/dev/shm").join(name.name().trim_start_matches('/'));
    assert_eq!(std::fs::metadata(file).unwrap().len(), 640 + 2 * 4096);
}

#[test]
fn typed_values_cross_the_segment() {
    let name = TempName::for_test("mpsc-typed");
    let mut c = ShmMpscConsumer::with_slots(name.name(), CREATE, 2).unwrap();
    let mut p = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    p.push_value(&[1u64, 2, 3]).unwrap();
    p.push_value(&9u16).unwrap();
    assert_eq!(c.pop_value::<[u64; 3]>(), Ok([1, 2, 3]));
    assert!(matches!(
        c.pop_value::<u64>(),
        Err(PopValueError::SizeMismatch {
            expected: 8,
            actual: 2
        })
    ));
    assert_eq!(c.pop_value::<u16>(), Ok(9));
}

#[test]
fn attaching_the_other_kind_is_a_typed_error_both_ways() {
    let spsc = TempName::for_test("mpsc-kind-s");
    let _p = ShmProducer::new(spsc.name(), CREATE).unwrap();
    let err = ShmMpscProducer::new(spsc.name(), OpenMode::Open).unwrap_err();
    assert!(
        matches!(
            err,
            ShmError::WrongKind {
                found: RingKind::Spsc,
                expected: RingKind::Mpsc,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "segment {} holds an SPSC ring, not an MPSC one (open it as spsc)",
            spsc.name()
        )
    );
    let err =
        ShmMpscConsumer::new(spsc.name(), OpenMode::CreateOrOpen { capacity: 4096 }).unwrap_err();
    assert!(matches!(err, ShmError::WrongKind { .. }), "{err}");

    let mpsc = TempName::for_test("mpsc-kind-m");
    let _c = ShmMpscConsumer::new(mpsc.name(), CREATE).unwrap();
    for err in [
        ShmProducer::new(mpsc.name(), OpenMode::Open).unwrap_err(),
        ShmConsumer::new(mpsc.name(), OpenMode::CreateOrOpen { capacity: 64 }).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                ShmError::WrongKind {
                    found: RingKind::Mpsc,
                    expected: RingKind::Spsc,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert!(matches!(
        inspect(spsc.name()).unwrap_err(),
        ShmError::WrongKind { .. }
    ));
}

#[test]
fn all_slots_taken_is_a_typed_error_and_a_freed_slot_is_taken_anew() {
    let name = TempName::for_test("mpsc-slots");
    let _c = ShmMpscConsumer::with_slots(name.name(), CREATE, 2).unwrap();
    let a = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    let b = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    let err = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap_err();
    assert!(matches!(err, ShmError::SlotsTaken { max: 2 }), "{err}");
    assert!(err.to_string().contains("all 2 producer slots"), "{err}");
    let info = inspect(name.name()).unwrap();
    assert_eq!(info.max_producers, 2);
    assert!(info.slots.iter().all(|s| s.held && s.generation == 1));
    assert!(info.consumer_held);
    drop(a);
    let info = inspect(name.name()).unwrap();
    assert!(!info.slots[0].held && info.slots[1].held);
    let again = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    assert_eq!((again.slot(), again.generation()), (0, 2));
    drop((b, again));
}

#[test]
fn a_claim_left_by_a_producer_that_left_is_skipped_and_a_live_one_waited_for() {
    let name = TempName::for_test("mpsc-left");
    let mut c = ShmMpscConsumer::with_slots(name.name(), CREATE, 4).unwrap();
    let mut gone = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    let mut live = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    gone.push(b"before").unwrap();
    let mut grant = gone.reserve(6).unwrap();
    grant.copy_from_slice(b"never!");
    grant.abandon();
    live.push(b"after").unwrap();
    assert_eq!(c.pop().unwrap(), b"before");
    // The claimer holds its slot: waited for, never skipped.
    assert!(matches!(c.pop(), Err(ReadError::Pending { slot: 0 })));
    assert!(matches!(
        c.wait_message(Some(Duration::from_millis(50))),
        Err(ShmError::TimedOut)
    ));
    drop(gone); // lets the slot go: its claim is dead
    assert_eq!(
        c.pop_blocking(Some(Duration::from_secs(10))).unwrap(),
        b"after"
    );
    drop(live);
}

#[test]
fn a_claim_whose_slot_was_taken_over_by_a_newer_generation_is_skipped() {
    let name = TempName::for_test("mpsc-gen");
    let mut c = ShmMpscConsumer::with_slots(name.name(), CREATE, 1).unwrap();
    let mut first = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    first.reserve(8).unwrap().abandon();
    drop(first);
    // The same slot, held again, one generation on.
    let mut second = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    assert_eq!((second.slot(), second.generation()), (0, 2));
    second.push(b"next").unwrap();
    assert_eq!(
        c.pop_blocking(Some(Duration::from_secs(10))).unwrap(),
        b"next"
    );
}

#[test]
fn finishing_last_closes_and_the_last_side_to_leave_removes_the_name() {
    let name = TempName::for_test("mpsc-finish");
    let mut c = ShmMpscConsumer::new(name.name(), CREATE).unwrap();
    let mut a = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    let mut b = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    a.push(b"a").unwrap();
    b.push(b"b").unwrap();
    assert!(!a.finish().unwrap(), "b is still attached: not closed");
    assert!(b.finish().unwrap(), "the last producer closes");
    let late = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap_err();
    assert!(
        matches!(late, ShmError::MpscPush(PushError::Closed)),
        "{late}"
    );
    assert_eq!(c.pop_blocking(None).unwrap(), b"a");
    assert_eq!(c.pop_blocking(None).unwrap(), b"b");
    assert!(matches!(
        c.pop_blocking(None),
        Err(ShmError::MpscRead(ReadError::Closed))
    ));
    assert!(name.exists());
    drop(c);
    assert!(!name.exists(), "the consumer left last a finished stream");
}

#[test]
fn a_consumer_sees_every_producer_gone_after_the_last_message() {
    let name = TempName::for_test("mpsc-gone");
    let mut c = ShmMpscConsumer::new(name.name(), CREATE).unwrap();
    let mut p = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    p.push(b"last").unwrap();
    drop(p); // leaves without closing
    assert_eq!(c.pop_blocking(None).unwrap(), b"last");
    assert!(matches!(
        c.pop_blocking(Some(Duration::from_secs(10))),
        Err(ShmError::PeerDied(Role::Producer))
    ));
}

#[test]
fn a_full_ring_blocks_a_producer_until_the_consumer_releases() {
    let name = TempName::for_test("mpsc-full");
    let mut c = ShmMpscConsumer::new(name.name(), OpenMode::Create { capacity: 64 }).unwrap();
    let mut p = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    let producer = std::thread::spawn(move || {
        for i in 0u32..200 {
            p.push_blocking(&i.to_le_bytes(), Some(Duration::from_secs(20)))
                .unwrap();
        }
        p.finish().unwrap()
    });
    for i in 0u32..200 {
        let got = c.pop_blocking(Some(Duration::from_secs(20))).unwrap();
        assert_eq!(got, i.to_le_bytes());
    }
    assert!(producer.join().unwrap());
    assert!(matches!(
        c.pop_blocking(None),
        Err(ShmError::MpscRead(ReadError::Closed))
    ));
}

#[test]
fn bad_producer_counts_are_refused_before_anything_is_left_behind() {
    let name = TempName::for_test("mpsc-bad");
    let err = ShmMpscProducer::with_slots(name.name(), CREATE, 65).unwrap_err();
    assert!(
        matches!(err, ShmError::InvalidMpsc { producers: 65, .. }),
        "{err}"
    );
    assert!(!name.exists());
}
