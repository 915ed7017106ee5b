//! Black-box tests of the MPSC protocol over in-process heap segments:
//! per-producer order and exactly-once delivery, dead and stalled
//! producers, wrap-around, full/empty, close, and corrupt segments.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ringproof::heap::AlignedBuf;
use ringproof::mpsc::heap::{HeapShared, channel, segment, shared};
use ringproof::mpsc::layout::{Claim, free_word, kind};
use ringproof::mpsc::{
    AlwaysAlive, Consumer, Corruption, Liveness, OpenError, PopValueError, Producer, PushError,
    ReadError, Words,
};
use ringproof::sync::Shared;

/// A liveness table the test flips: every slot alive until `kill`.
#[derive(Clone, Debug)]
struct Flags(Arc<[AtomicBool; 64]>);

impl Flags {
    fn new() -> Self {
        Flags(Arc::new(std::array::from_fn(|_| AtomicBool::new(true))))
    }
    /// Marks `slot` dead; its producer must not touch the ring again.
    fn kill(&self, slot: u8) {
        // Release: the dead producer's accesses happen before the consumer
        // acts on its death; pairs with the Acquire load in `alive`.
        self.0[slot as usize].store(false, Ordering::Release);
    }
}

// SAFETY: `kill` is called only after the slot's producer made its last
// access (on this thread, or joined), and publishes it with Release.
unsafe impl Liveness for Flags {
    fn alive(&self, slot: u8, _generation: u32) -> bool {
        // Acquire: pairs with the Release store in `kill`.
        self.0[slot as usize].load(Ordering::Acquire)
    }
}

/// Message `seq` of producer `slot`: its length varies, every byte says
/// who and which, so a torn or misdelivered message fails the check.
fn message(slot: u8, seq: u32, max: usize) -> Vec<u8> {
    let len = 8 + (seq as usize * 7 + slot as usize * 3) % (max - 7);
    let mut bytes = vec![slot ^ (seq as u8).wrapping_mul(31); len];
    bytes[..4].copy_from_slice(&seq.to_ne_bytes());
    bytes[4] = slot;
    bytes
}

/// Checks a delivered message and returns (slot, seq).
fn parse(bytes: &[u8], max: usize) -> (u8, u32) {
    let seq = u32::from_ne_bytes(bytes[..4].try_into().unwrap());
    let slot = bytes[4];
    assert_eq!(bytes, message(slot, seq, max), "torn message {slot}/{seq}");
    (slot, seq)
}

/// A ring plus a spare view over the same bytes for scribbling.
fn ring(
    capacity: u64,
    producers: u32,
) -> (
    Vec<Producer<HeapShared>>,
    Consumer<HeapShared, Flags>,
    Flags,
    HeapShared,
) {
    let buf = Arc::new(segment(capacity, producers).unwrap());
    let flags = Flags::new();
    // SAFETY: one producer per slot and one consumer; the spare view only
    // loads and stores words.
    let view = || unsafe { shared(&buf) }.unwrap().0;
    let sides = (0..producers)
        .map(|slot| Producer::new(view(), slot as u8).unwrap())
        .collect();
    let consumer = Consumer::new(view(), flags.clone()).unwrap();
    (sides, consumer, flags, view())
}

fn push_retry(p: &mut Producer<HeapShared>, bytes: &[u8]) {
    loop {
        match p.push(bytes) {
            Ok(()) => return,
            Err(PushError::Full) => {
                p.wait_writable(Some(std::time::Duration::from_millis(5)))
                    .unwrap();
            }
            Err(e) => panic!("push: {e}"),
        }
    }
}

#[test]
fn producer_threads_deliver_every_message_once_in_each_producers_order() {
    let (producers, mut consumer) = channel(1024, 4, AlwaysAlive).unwrap();
    let max = producers[0].max_message().min(100);
    let per = 5_000u32;
    let threads: Vec<_> = producers
        .into_iter()
        .map(|mut p| {
            std::thread::spawn(move || {
                let slot = p.slot();
                for seq in 0..per {
                    push_retry(&mut p, &message(slot, seq, max));
                }
            })
        })
        .collect();
    let mut next = [0u32; 4];
    let mut got = 0;
    while got < 4 * per {
        match consumer.read() {
            Ok(read) => {
                let (slot, seq) = parse(&read, max);
                assert_eq!(seq, next[slot as usize], "producer {slot} out of order");
                next[slot as usize] += 1;
                got += 1;
                read.release();
            }
            Err(ReadError::Empty | ReadError::Pending { .. }) => {
                consumer
                    .wait_readable(Some(std::time::Duration::from_millis(5)))
                    .unwrap();
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(next, [per; 4]);
    assert_eq!(consumer.read().err(), Some(ReadError::Empty));
}

#[test]
fn a_stalled_live_producer_is_waited_for_never_skipped() {
    let (mut producers, mut consumer, _flags, _) = ring(256, 2);
    let (first, second) = producers.split_at_mut(1);
    let mut grant = first[0].reserve(5).unwrap();
    grant.copy_from_slice(b"early");
    second[0].push(b"later").unwrap();
    for _ in 0..3 {
        assert_eq!(consumer.read().err(), Some(ReadError::Pending { slot: 0 }));
        assert!(
            !consumer
                .wait_readable(Some(std::time::Duration::ZERO))
                .unwrap()
        );
    }
    grant.commit();
    assert_eq!(consumer.pop().unwrap(), b"early");
    assert_eq!(consumer.pop().unwrap(), b"later");
    assert_eq!(consumer.pop(), Err(ReadError::Empty));
}

#[test]
fn a_producer_dead_mid_claim_is_skipped_and_the_rest_delivered() {
    let (mut producers, mut consumer, flags, _) = ring(256, 2);
    producers[0].push(b"before death").unwrap();
    let mut grant = producers[0].reserve(12).unwrap();
    grant[..6].copy_from_slice(b"half o");
    grant.abandon(); // the producer dies here, mid-payload
    producers[1].push(b"other").unwrap();
    assert_eq!(consumer.pop().unwrap(), b"before death");
    assert_eq!(consumer.read().err(), Some(ReadError::Pending { slot: 0 }));
    flags.kill(0);
    assert_eq!(consumer.pop().unwrap(), b"other");
    assert_eq!(consumer.pop(), Err(ReadError::Empty));
    // 24 + 24 (skipped) + 16 bytes released: the space is back.
    assert_eq!(consumer.position(), 64);
    producers[1].push(b"after").unwrap();
    assert_eq!(consumer.pop().unwrap(), b"after");
}

#[test]
fn a_dropped_grant_is_skipped() {
    let (mut producers, mut consumer) = channel(64, 1, AlwaysAlive).unwrap();
    let p = &mut producers[0];
    drop(p.reserve(8).unwrap());
    p.push(b"kept").unwrap();
    assert_eq!(consumer.pop().unwrap(), b"kept");
    assert_eq!(consumer.position(), 32);
}

#[test]
fn wrap_around_claims_padding_to_the_end() {
    let (mut producers, mut consumer) = channel(64, 2, AlwaysAlive).unwrap();
    let (a, b) = producers.split_at_mut(1);
    a[0].push(&[1; 16]).unwrap(); // 0..24
    b[0].push(&[2; 16]).unwrap(); // 24..48
    assert_eq!(consumer.pop().unwrap(), [1; 16]);
    // 16 bytes left before the end: padding 48..64, then 64..88.
    let mut grant = b[0].reserve(16).unwrap();
    assert_eq!(grant.position(), 64);
    grant.copy_from_slice(&[3; 16]);
    grant.commit();
    assert_eq!(consumer.pop().unwrap(), [2; 16]);
    assert_eq!(consumer.pop().unwrap(), [3; 16]);
    for round in 0..50u8 {
        a[0].push(&[round; 13]).unwrap();
        b[0].push(&[round; 3]).unwrap();
        assert_eq!(consumer.pop().unwrap(), [round; 13]);
        assert_eq!(consumer.pop().unwrap(), [round; 3]);
    }
}

#[test]
fn full_then_drained_then_empty() {
    let (mut producers, mut consumer) = channel(64, 2, AlwaysAlive).unwrap();
    let max = producers[0].max_message();
    assert_eq!(
        producers[0].push(&[0; 64]),
        Err(PushError::TooLarge { len: 64, max })
    );
    assert_eq!(consumer.pop(), Err(ReadError::Empty));
    for i in 0..4 {
        producers[i % 2].push(&[i as u8; 8]).unwrap();
    }
    assert_eq!(producers[1].push(&[9; 8]), Err(PushError::Full));
    assert!(
        !producers[1]
            .wait_writable(Some(std::time::Duration::ZERO))
            .unwrap()
    );
    assert_eq!(consumer.pop().unwrap(), [0; 8]);
    producers[1].push(&[4; 8]).unwrap();
    for i in 1..5 {
        assert_eq!(consumer.pop().unwrap(), [i as u8; 8]);
    }
    assert_eq!(consumer.pop(), Err(ReadError::Empty));
}

#[test]
fn batches_release_together_and_pop_into_keeps_what_does_not_fit() {
    let (mut producers, mut consumer) = channel(128, 1, AlwaysAlive).unwrap();
    for i in 0..3u8 {
        producers[0].push(&[i; 5]).unwrap();
    }
    let mut small = [0u8; 4];
    assert_eq!(consumer.pop_into(&mut small), Ok(None));
    let mut batch = consumer.read_batch();
    assert_eq!(batch.read().unwrap(), [0; 5]);
    assert_eq!(batch.read().unwrap(), [1; 5]);
    assert_eq!(batch.len(), 2);
    batch.release();
    assert_eq!(consumer.position(), 32);
    let mut buf = [0u8; 8];
    assert_eq!(consumer.pop_into(&mut buf), Ok(Some(5)));
    assert_eq!(consumer.read_batch().read().err(), Some(ReadError::Empty));
}

#[test]
fn a_batch_that_read_a_whole_lap_finds_nothing_more_not_a_corruption() {
    let (mut producers, mut consumer) = channel(128, 1, AlwaysAlive).unwrap();
    for i in 0..8u8 {
        producers[0].push(&[i; 8]).unwrap();
    }
    assert_eq!(producers[0].push(&[9; 8]), Err(PushError::Full));
    let mut batch = consumer.read_batch();
    for i in 0..8u8 {
        assert_eq!(batch.read().unwrap(), [i; 8]);
    }
    // The next word is this batch's first record, unreleased, of lap 0.
    assert_eq!(batch.read().err(), Some(ReadError::Empty));
    batch.release();
    assert_eq!(consumer.position(), 128);
    producers[0].push(&[9; 8]).unwrap();
    assert_eq!(consumer.pop().unwrap(), [9; 8]);
}

#[test]
fn close_by_any_producer_ends_the_stream_after_what_was_committed() {
    let (mut producers, mut consumer) = channel(128, 2, AlwaysAlive).unwrap();
    producers[0].push(b"one").unwrap();
    producers[1].close().unwrap();
    assert_eq!(producers[0].push(b"two"), Err(PushError::Closed));
    assert!(consumer.wait_readable(None).unwrap());
    assert_eq!(consumer.pop().unwrap(), b"one");
    assert_eq!(consumer.pop(), Err(ReadError::Closed));
    assert!(consumer.wait_readable(None).unwrap());
}

#[test]
fn bad_slots_are_refused() {
    let buf = Arc::new(segment(64, 1).unwrap());
    // SAFETY: the producer is never used.
    let (view, _) = unsafe { shared(&buf) }.unwrap();
    assert_eq!(
        Producer::new(view, 64).err(),
        Some(OpenError::BadSlot { slot: 64, max: 64 })
    );
    assert!(channel(64, 0, AlwaysAlive).is_err());
    assert!(channel(48, 1, AlwaysAlive).is_err());
    let _ = AlignedBuf::zeroed(1);
}

/// Scribbles `word` over the first record header and returns what the consumer says.
fn consumer_sees(word: u64) -> ReadError {
    let (_, mut consumer, _, view) = ring(64, 1);
    // Relaxed: one thread; the consumer reads the word after.
    view.table_word64(0)
        .store(word, ringproof::sync::Ordering::Relaxed);
    let err = consumer.read().err().unwrap();
    assert_eq!(
        consumer.read().err(),
        Some(err),
        "the consumer stays poisoned"
    );
    err
}

#[test]
fn corrupt_record_words_are_typed_errors() {
    let claim = |kind, lap, len| Claim {
        kind,
        slot: 0,
        gen_low: 1,
        lap_low: lap,
        len,
    };
    let corrupted = ReadError::Corrupted;
    assert_eq!(
        consumer_sees(claim(6, 0, 8).word()),
        corrupted(Corruption::RecordKind)
    );
    assert_eq!(
        consumer_sees(claim(kind::MESSAGE, 1, 8).word()),
        corrupted(Corruption::RecordLap)
    );
    assert_eq!(
        consumer_sees(claim(kind::MESSAGE, 0, 25).word()),
        corrupted(Corruption::RecordLength)
    );
    assert_eq!(
        consumer_sees(claim(kind::PADDING, 0, 8).word()),
        corrupted(Corruption::RecordLength)
    );
    assert_eq!(
        consumer_sees(free_word(1)),
        corrupted(Corruption::RecordKind)
    );
}

/// A producer that stalls between loading the word at a position and its
/// compare-exchange (here: position 16 of lap 0, expecting "free in lap 0")
/// may resume after the ring moved a whole lap on, when a message of the
/// next lap has its payload over offset 16. The exchange must fail: had the
/// record words been the data bytes themselves, a payload word holding the
/// expected value (zero here, as common as payload bytes get) would let the
/// stalled producer claim inside another producer's message and overwrite
/// it (seen as a torn message and `RecordKind` in `ringproof crash --mode
/// mpsc --producers 6`).
#[test]
fn a_stalled_claim_never_lands_in_a_payload_of_the_next_lap() {
    // Relaxed (both): one thread; the consumer reads the word after.
    use ringproof::sync::Ordering::Relaxed;
    let (mut producers, mut consumer, _, view) = ring(64, 1);
    for _ in 0..4 {
        producers[0].push(&[7; 8]).unwrap();
        assert_eq!(consumer.pop().unwrap(), [7; 8]);
    }
    // Lap 1: one record over offsets 0..32, its payload zero (offsets 8..32).
    producers[0].push(&[0; 24]).unwrap();
    let stalled = Claim {
        kind: kind::UNCOMMITTED,
        slot: 0,
        gen_low: 1,
        lap_low: 0,
        len: 8,
    };
    let exchanged =
        view.record_word(16)
            .compare_exchange(free_word(0), stalled.word(), Relaxed, Relaxed);
    assert_eq!(
        exchanged,
        Err(free_word(1)),
        "the word at offset 16 is the consumer's stamp for lap 1, not payload"
    );
    assert_eq!(consumer.pop().unwrap(), [0; 24], "the message is whole");
}

/// The end of stream is a record the consumer puts at `head`: a producer
/// that never saw the `closed` flag (here: the flag cleared again, as a
/// stale load would see it) meets the record and is refused, so no message
/// is ever committed after the end the consumer reported; a successor
/// consumer finds the same end.
#[test]
fn the_end_of_stream_is_a_record_no_later_push_passes() {
    // Relaxed (all): one thread; each side reads the words after.
    use ringproof::sync::Ordering::Relaxed;
    let buf = Arc::new(segment(64, 2).unwrap());
    // SAFETY: one producer per slot and one consumer at a time; the spare
    // view only loads and stores words.
    let view = || unsafe { shared(&buf) }.unwrap().0;
    let mut first = Producer::new(view(), 0).unwrap();
    let mut consumer = Consumer::new(view(), AlwaysAlive).unwrap();
    first.push(b"before").unwrap();
    first.close().unwrap();
    assert_eq!(consumer.pop().unwrap(), b"before");
    assert_eq!(consumer.pop(), Err(ReadError::Closed));
    drop(consumer);
    let end = Claim::from_word(view().record_word(16).load(Relaxed));
    assert_eq!(
        (end.kind, end.len),
        (kind::END, 0),
        "the end record at head"
    );
    view().closed().store(0, Relaxed);
    let mut late = Producer::new(view(), 1).unwrap();
    assert_eq!(late.push(b"after"), Err(PushError::Closed));
    let mut successor = Consumer::new(view(), AlwaysAlive).unwrap();
    assert_eq!(successor.pop(), Err(ReadError::Closed));
}

#[test]
fn corrupt_indices_are_typed_errors() {
    // Relaxed (every scribble below): one thread; the sides read after.
    use ringproof::sync::Ordering::Relaxed;
    let (mut producers, mut consumer, _, view) = ring(64, 1);
    producers[0].push(b"x").unwrap();
    view.tail_hint().store(12, Relaxed);
    assert_eq!(
        producers[0].push(b"y"),
        Err(PushError::Corrupted(Corruption::TailHint))
    );
    view.head().store(4, Relaxed);
    assert_eq!(
        consumer.read().err(),
        Some(ReadError::Corrupted(Corruption::OwnIndex))
    );
    let (mut producers, _, _, view) = ring(64, 1);
    view.head().store(4, Relaxed);
    assert_eq!(
        producers[0].push(b"y"),
        Err(PushError::Corrupted(Corruption::Head))
    );
    let (mut producers, _, _, view) = ring(64, 1);
    view.table_word64(0).store(free_word(7), Relaxed);
    view.head().store(0, Relaxed);
    assert_eq!(
        producers[0].push(b"z"),
        Err(PushError::Full),
        "a word stamped for a later lap is the consumer mid-release"
    );
    view.table_word64(0)
        .store(Claim::from_word(0).with_kind(7).word(), Relaxed);
    assert_eq!(
        producers[0].push(b"z"),
        Err(PushError::Corrupted(Corruption::RecordKind))
    );
    let (_, _, _, view) = ring(64, 1);
    view.head().store(7, Relaxed);
    assert_eq!(
        Consumer::new(view, AlwaysAlive).err(),
        Some(OpenError::Corrupted(Corruption::Head))
    );
}

#[test]
fn a_whole_lap_of_skipped_records_reads_empty_and_is_released() {
    // 512 + 72 + 440 = 1024 bytes of given-up records: the ring is full of
    // records the consumer passes, and the word after them is the first
    // one's own (not stamped yet).
    let (mut producers, mut consumer) = channel(1024, 1, AlwaysAlive).unwrap();
    let p = &mut producers[0];
    for len in [504, 57, 425] {
        drop(p.reserve(len).unwrap());
    }
    assert_eq!(p.push(b""), Err(PushError::Full));
    assert_eq!(consumer.read().err(), Some(ReadError::Empty));
    assert_eq!(
        consumer.position(),
        1024,
        "the skipped records are released"
    );
    p.push(b"after a lap").unwrap();
    assert_eq!(consumer.pop().unwrap(), b"after a lap");
    // From 1048: 512 + 488 to the end of the region, 24 after the wrap.
    for len in [504, 480, 16] {
        drop(p.reserve(len).unwrap());
    }
    assert_eq!(p.push(b""), Err(PushError::Full));
    p.close().unwrap();
    assert_eq!(consumer.read_batch().read().err(), Some(ReadError::Closed));
}

/// A crash hook that unwinds at one crash point: the death of a side there,
/// in one process (what the side wrote before it stays written).
struct DieAt(ringproof::sync::CrashPoint);

impl ringproof::sync::CrashHook for DieAt {
    fn crash_point(&self, point: ringproof::sync::CrashPoint) {
        if point == self.0 {
            panic!("killed at {}", point.name());
        }
    }
}

/// A consumer that dies between stamping its released words free for the
/// next lap and its store of `head` leaves them stamped at `head`; its
/// successor completes that release and reads on (the crash harness found
/// this: it read `Corrupted(RecordKind)`).
#[test]
fn a_consumer_dead_before_its_head_store_leaves_a_readable_ring() {
    let buf = Arc::new(segment(512, 1).expect("segment"));
    // SAFETY: one producer (slot 0) and one consumer at a time over `buf`.
    let (view, _) = unsafe { shared(&buf) }.expect("view");
    let mut producer = Producer::new(view, 0).expect("producer");
    for i in 0..4u8 {
        producer.push(&[i; 20]).expect("push");
    }
    // SAFETY: as above; the dying consumer is gone before the next one.
    let (view, _) = unsafe { shared(&buf) }.expect("view");
    let hooked = view.with_hook(DieAt(ringproof::sync::CrashPoint::BeforeRelease));
    let mut dying = Consumer::new(hooked, AlwaysAlive).expect("consumer");
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut batch = dying.read_batch();
        assert_eq!(batch.read().expect("first").to_vec(), vec![0; 20]);
        assert_eq!(batch.read().expect("second").to_vec(), vec![1; 20]);
        batch.release();
    }));
    assert!(died.is_err(), "the hook unwinds at before-release");
    drop(dying);
    // SAFETY: as above.
    let (view, _) = unsafe { shared(&buf) }.expect("view");
    let mut next = Consumer::new(view, AlwaysAlive).expect("successor");
    assert_eq!(next.pop(), Ok(vec![2; 20]), "the cut release is completed");
    assert_eq!(next.pop(), Ok(vec![3; 20]));
    assert_eq!(next.pop(), Err(ReadError::Empty));
    // The producer reuses the released bytes.
    for i in 4..40u8 {
        producer.push(&[i; 20]).expect("push after the cut release");
        assert_eq!(next.pop(), Ok(vec![i; 20]));
    }
}

/// A ring of 512 bytes holding messages 0..4 (20 bytes each: records of 32
/// bytes at 0, 32, 64, 96), with the words of a consumer that died inside
/// its release of the first three records as `cut` leaves them; returns
/// what a successor pops, and whether the producer then runs on.
fn successor_after_cut_release(cut: impl Fn(&HeapShared)) -> Vec<Vec<u8>> {
    let buf = Arc::new(segment(512, 1).expect("segment"));
    // SAFETY: one producer (slot 0), then one consumer, over `buf`.
    let (view, _) = unsafe { shared(&buf) }.expect("view");
    let mut producer = Producer::new(view, 0).expect("producer");
    for i in 0..4u8 {
        producer.push(&[i; 20]).expect("push");
    }
    // SAFETY: as above (the scribbling view is the dead consumer's).
    let (view, _) = unsafe { shared(&buf) }.expect("view");
    cut(&view);
    // SAFETY: as above.
    let (view, _) = unsafe { shared(&buf) }.expect("view");
    let mut next = Consumer::new(view, AlwaysAlive).expect("successor");
    let mut got = Vec::new();
    while let Ok(message) = next.pop() {
        got.push(message);
    }
    for i in 4..60u8 {
        producer.push(&[i; 20]).expect("push after the cut release");
        assert_eq!(next.pop(), Ok(vec![i; 20]), "message {i} after the cut");
    }
    got
}

fn skip(view: &HeapShared, position: u64) {
    // Relaxed (both): one thread; the successor reads after.
    let word = view
        .record_word(position)
        .load(ringproof::sync::Ordering::Relaxed);
    let skipped = Claim::from_word(word).with_kind(kind::SKIPPED).word();
    view.record_word(position)
        .store(skipped, ringproof::sync::Ordering::Relaxed);
}

#[test]
fn a_release_cut_before_its_stamps_delivers_the_unturned_records_again() {
    let got = successor_after_cut_release(|view| {
        skip(view, 0);
        skip(view, 32);
    });
    assert_eq!(got, vec![vec![2; 20], vec![3; 20]]);
}

#[test]
fn a_release_cut_among_its_stamps_is_completed_and_delivers_nothing_torn() {
    let got = successor_after_cut_release(|view| {
        for at in [0, 32, 64] {
            skip(view, at);
        }
        // Stamped from the end down, cut inside record 1.
        for at in (48..96).step_by(8) {
            // Relaxed: as in `skip`.
            view.record_word(at)
                .store(free_word(1), ringproof::sync::Ordering::Relaxed);
        }
    });
    assert_eq!(got, vec![vec![3; 20]]);
}

/// A typed message: the trading example's order.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    zerocopy::FromBytes,
    zerocopy::IntoBytes,
    zerocopy::Immutable,
    zerocopy::KnownLayout,
)]
#[repr(C)]
struct Order {
    id: u64,
    price: u32,
    qty: u32,
}

#[test]
fn typed_values_round_trip_and_a_size_mismatch_stays_in_the_ring() {
    let (mut producers, mut consumer) = channel(1024, 2, AlwaysAlive).unwrap();
    let order = Order {
        id: 7,
        price: 10_050,
        qty: 3,
    };
    producers[0].push_value(&order).unwrap();
    producers[1].push_value(&5u32).unwrap();
    assert_eq!(consumer.pop_value::<Order>(), Ok(order));
    assert_eq!(
        consumer.pop_value::<Order>(),
        Err(PopValueError::SizeMismatch {
            expected: 16,
            actual: 4
        })
    );
    // Still there, readable as what it is.
    assert_eq!(consumer.pop_value::<u32>(), Ok(5));
    assert_eq!(
        consumer.pop_value::<u32>(),
        Err(PopValueError::Read(ReadError::Empty))
    );
    assert_eq!(
        PopValueError::SizeMismatch {
            expected: 16,
            actual: 4
        }
        .to_string(),
        "message of 4 bytes read as a value of 16 bytes"
    );
}
