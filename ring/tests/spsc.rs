//! Black-box tests of the protocol over an in-process segment.

use std::sync::Arc;

use ringproof::heap::{self, AlignedBuf, HeapError};
use ringproof::layout::{HEAD_OFFSET, HEADER_SIZE, RECORD_PADDING, TAIL_OFFSET, max_message};
use ringproof::spsc::MAX_POSITION;
use ringproof::testing::scribble;
use ringproof::{Corruption, Error};
use ringproof::{PopIntoError, PopValueError, PushError, ReadError};

#[test]
fn push_then_pop_returns_the_message() {
    let (mut p, mut c) = heap::channel(256).unwrap();
    assert_eq!(c.pop().unwrap_err(), ReadError::Empty);
    p.push(b"hello").unwrap();
    p.push(b"").unwrap();
    assert_eq!(c.pop().unwrap(), b"hello");
    assert_eq!(c.pop().unwrap(), b"");
    assert_eq!(c.pop().unwrap_err(), ReadError::Empty);
}

#[test]
fn full_ring_refuses_until_released() {
    let (mut p, mut c) = heap::channel(64).unwrap();
    // 24-byte payload -> 32-byte records: two fill 64 bytes.
    p.push(&[1; 24]).unwrap();
    p.push(&[2; 24]).unwrap();
    assert_eq!(p.push(&[3; 1]).unwrap_err(), PushError::Full);
    assert_eq!(c.pop().unwrap(), vec![1; 24]);
    p.push(&[3; 24]).unwrap();
    assert_eq!(c.pop().unwrap(), vec![2; 24]);
    assert_eq!(c.pop().unwrap(), vec![3; 24]);
}

#[test]
fn too_large_is_refused_with_the_limit() {
    let (mut p, _c) = heap::channel(64).unwrap();
    let max = max_message(64) as usize;
    assert_eq!(
        p.push(&vec![0; max + 1]).unwrap_err(),
        PushError::TooLarge { len: max + 1, max }
    );
    p.push(&vec![0; max]).unwrap();
}

#[test]
fn channel_refuses_a_capacity_that_is_not_a_power_of_two_in_range() {
    for capacity in [0, 16, 100, 1 << 41] {
        let refused = heap::channel(capacity).map(|_| ());
        assert_eq!(refused, Err(HeapError::InvalidCapacity(capacity)));
        let message = refused.unwrap_err().to_string();
        assert!(message.contains(&capacity.to_string()), "{message}");
    }
    assert!(heap::channel(32).is_ok());
}

#[test]
fn wrap_inserts_padding_record() {
    let buf = Arc::new(AlignedBuf::segment(64).unwrap());
    // SAFETY: no other producer of this buffer is used while it lives.
    let mut p = unsafe { heap::producer(&buf) }.unwrap();
    // SAFETY: no other consumer of this buffer is used while it lives.
    let mut c = unsafe { heap::consumer(&buf) }.unwrap();
    p.push(&[1; 16]).unwrap(); // 24 bytes: 0..24
    p.push(&[2; 16]).unwrap(); // 24..48
    assert_eq!(c.pop().unwrap(), vec![1; 16]);
    assert_eq!(c.pop().unwrap(), vec![2; 16]);
    // 24-byte record does not fit in 48..64: padding 16, record at 0.
    p.push(&[3; 16]).unwrap();
    // SAFETY: the buffer holds HEADER_SIZE + 64 bytes; no ring operation runs meanwhile.
    let data = unsafe { std::slice::from_raw_parts(buf.as_ptr().add(HEADER_SIZE), 64) };
    assert_eq!(
        u32::from_ne_bytes(data[52..56].try_into().unwrap()),
        RECORD_PADDING
    );
    assert_eq!(u32::from_ne_bytes(data[48..52].try_into().unwrap()), 8);
    assert_eq!(p.position(), 64 + 24);
    assert_eq!(c.pop().unwrap(), vec![3; 16]);
}

#[test]
fn dropped_grant_sends_nothing() {
    let (mut p, mut c) = heap::channel(256).unwrap();
    {
        let mut grant = p.reserve(10).unwrap();
        grant.copy_from_slice(b"abandoned!");
    }
    assert_eq!(c.pop().unwrap_err(), ReadError::Empty);
    let mut grant = p.reserve(3).unwrap();
    grant.copy_from_slice(b"yes");
    grant.commit();
    assert_eq!(c.pop().unwrap(), b"yes");
}

#[test]
fn batch_commits_with_one_store_and_drop_aborts() {
    let (mut p, mut c) = heap::channel(1024).unwrap();
    let mut batch = p.batch();
    batch.push(b"a").unwrap();
    batch.reserve(2).unwrap().copy_from_slice(b"bc");
    assert_eq!(batch.len(), 2);
    let _ = batch; // dropped uncommitted
    assert_eq!(c.pop().unwrap_err(), ReadError::Empty);
    let mut batch = p.batch();
    for i in 0..10u8 {
        batch.push(&[i; 5]).unwrap();
    }
    batch.commit();
    let mut reads = c.read_batch();
    for i in 0..10u8 {
        assert_eq!(reads.read().unwrap(), &[i; 5]);
    }
    assert_eq!(reads.read().unwrap_err(), ReadError::Empty);
    reads.release();
    assert_eq!(c.used_bytes().unwrap(), 0);
}

#[test]
fn batches_are_empty_until_a_record_is_staged_or_read() {
    let (mut p, mut c) = heap::channel(256).unwrap();
    let mut batch = p.batch();
    assert!(batch.is_empty());
    batch.push(b"a").unwrap();
    assert!(!batch.is_empty());
    batch.commit();
    let mut reads = c.read_batch();
    assert!(reads.is_empty());
    assert_eq!(reads.len(), 0);
    assert_eq!(reads.read().unwrap(), b"a");
    assert!(!reads.is_empty());
    assert_eq!(reads.len(), 1);
    reads.release();
}

#[test]
fn unreleased_read_is_read_again() {
    let (mut p, mut c) = heap::channel(256).unwrap();
    p.push(b"one").unwrap();
    p.push(b"two").unwrap();
    assert_eq!(&*c.read().unwrap(), b"one");
    let mut batch = c.read_batch();
    assert_eq!(batch.read().unwrap(), b"one");
    assert_eq!(batch.read().unwrap(), b"two");
    let _ = batch; // dropped unreleased
    assert_eq!(c.pop().unwrap(), b"one");
}

#[test]
fn close_is_end_of_stream_after_draining() {
    let (mut p, mut c) = heap::channel(256).unwrap();
    p.push(b"last").unwrap();
    p.close().unwrap();
    assert_eq!(p.push(b"more").unwrap_err(), PushError::Closed);
    assert_eq!(c.pop().unwrap(), b"last");
    assert_eq!(c.pop().unwrap_err(), ReadError::Closed);
    assert!(c.wait_readable(None).unwrap());
}

#[test]
fn typed_values_round_trip_and_wrong_size_stays() {
    let (mut p, mut c) = heap::channel(256).unwrap();
    p.push_value(&0x1122_3344_5566_7788u64).unwrap();
    assert_eq!(
        c.pop_value::<u32>().unwrap_err(),
        PopValueError::SizeMismatch {
            expected: 4,
            actual: 8
        }
    );
    assert_eq!(c.pop_value::<u64>().unwrap(), 0x1122_3344_5566_7788);
}

#[test]
fn pop_into_small_buffer_keeps_the_message() {
    let (mut p, mut c) = heap::channel(256).unwrap();
    p.push(b"twelve bytes").unwrap();
    let mut small = [0u8; 4];
    assert_eq!(
        c.pop_into(&mut small).unwrap_err(),
        PopIntoError::BufferTooSmall { needed: 12 }
    );
    let mut big = [0u8; 64];
    assert_eq!(c.pop_into(&mut big).unwrap(), 12);
    assert_eq!(&big[..12], b"twelve bytes");
}

#[test]
fn state_survives_detach_and_reattach() {
    let buf = Arc::new(AlignedBuf::segment(64).unwrap());
    {
        // SAFETY: no other producer of this buffer is used while it lives.
        let mut p = unsafe { heap::producer(&buf) }.unwrap();
        for i in 0..4u8 {
            p.push(&[i; 7]).unwrap(); // 16-byte records: 4 fill the ring
        }
        assert_eq!(p.push(&[9; 7]).unwrap_err(), PushError::Full);
    }
    {
        // SAFETY: no other consumer of this buffer is used while it lives.
        let mut c = unsafe { heap::consumer(&buf) }.unwrap();
        assert_eq!(c.pop().unwrap(), vec![0; 7]);
    }
    // SAFETY: no other producer of this buffer is used while it lives.
    let mut p = unsafe { heap::producer(&buf) }.unwrap();
    // SAFETY: no other consumer of this buffer is used while it lives.
    let mut c = unsafe { heap::consumer(&buf) }.unwrap();
    p.push(&[9; 7]).unwrap();
    assert_eq!(p.push(&[10; 7]).unwrap_err(), PushError::Full);
    for i in 1..4u8 {
        assert_eq!(c.pop().unwrap(), vec![i; 7]);
    }
    assert_eq!(c.pop().unwrap(), vec![9; 7]);
    assert_eq!(c.pop().unwrap_err(), ReadError::Empty);
}

#[test]
fn hostile_tail_poisons_the_consumer() {
    let buf = Arc::new(AlignedBuf::segment(256).unwrap());
    // SAFETY: no other consumer of this buffer is used while it lives.
    let mut c = unsafe { heap::consumer(&buf) }.unwrap();
    scribble(&buf, TAIL_OFFSET, &10_000u64.to_ne_bytes());
    assert_eq!(c.pop().unwrap_err(), ReadError::Corrupted(Corruption::Tail));
    // Poisoned: stays an error even after the value is fixed.
    scribble(&buf, TAIL_OFFSET, &0u64.to_ne_bytes());
    assert_eq!(c.pop().unwrap_err(), ReadError::Corrupted(Corruption::Tail));
}

#[test]
fn hostile_record_length_is_corruption_not_a_panic() {
    let buf = Arc::new(AlignedBuf::segment(256).unwrap());
    // SAFETY: no other producer of this buffer is used while it lives.
    let mut p = unsafe { heap::producer(&buf) }.unwrap();
    // SAFETY: no other consumer of this buffer is used while it lives.
    let mut c = unsafe { heap::consumer(&buf) }.unwrap();
    p.push(b"abc").unwrap();
    scribble(&buf, HEADER_SIZE, &u32::MAX.to_ne_bytes());
    assert_eq!(
        c.pop().unwrap_err(),
        ReadError::Corrupted(Corruption::RecordLength)
    );
    let buf = Arc::new(AlignedBuf::segment(256).unwrap());
    // SAFETY: no other producer of this buffer is used while it lives.
    let mut p = unsafe { heap::producer(&buf) }.unwrap();
    // SAFETY: no other consumer of this buffer is used while it lives.
    let mut c = unsafe { heap::consumer(&buf) }.unwrap();
    p.push(b"abc").unwrap();
    scribble(&buf, HEADER_SIZE + 4, &7u32.to_ne_bytes());
    assert_eq!(
        c.pop().unwrap_err(),
        ReadError::Corrupted(Corruption::RecordKind)
    );
}

#[test]
fn hostile_head_poisons_the_producer() {
    let buf = Arc::new(AlignedBuf::segment(64).unwrap());
    // SAFETY: no other producer of this buffer is used while it lives.
    let mut p = unsafe { heap::producer(&buf) }.unwrap();
    p.push(&[0; 24]).unwrap();
    p.push(&[0; 24]).unwrap();
    scribble(&buf, HEAD_OFFSET, &1000u64.to_ne_bytes());
    assert_eq!(
        p.push(b"x").unwrap_err(),
        PushError::Corrupted(Corruption::Head)
    );
}

#[test]
fn hostile_head_past_tail_after_a_release_poisons_the_producer() {
    let buf = Arc::new(AlignedBuf::segment(64).unwrap());
    // SAFETY: no other producer of this buffer is used while it lives.
    let mut p = unsafe { heap::producer(&buf) }.unwrap();
    // SAFETY: no other consumer of this buffer is used while it lives.
    let mut c = unsafe { heap::consumer(&buf) }.unwrap();
    p.push(&[1; 24]).unwrap(); // 32-byte records: tail 64
    p.push(&[2; 24]).unwrap();
    assert_eq!(c.pop().unwrap(), vec![1; 24]);
    assert_eq!(c.pop().unwrap(), vec![2; 24]);
    // The producer has now seen head 64 = tail: the valid heads are [64, 64].
    assert_eq!(p.free_bytes(), Ok(64));
    // Aligned and less than `tail + last seen head`, but past `tail`.
    scribble(&buf, HEAD_OFFSET, &72u64.to_ne_bytes());
    assert_eq!(p.free_bytes(), Err(PushError::Corrupted(Corruption::Head)));
    assert_eq!(p.push(b"x"), Err(PushError::Corrupted(Corruption::Head)));
}

#[test]
fn hostile_tail_more_than_a_capacity_past_head_after_reads_poisons_the_consumer() {
    let buf = Arc::new(AlignedBuf::segment(64).unwrap());
    // SAFETY: no other producer of this buffer is used while it lives.
    let mut p = unsafe { heap::producer(&buf) }.unwrap();
    // SAFETY: no other consumer of this buffer is used while it lives.
    let mut c = unsafe { heap::consumer(&buf) }.unwrap();
    p.push(&[1; 24]).unwrap(); // 32-byte records: tail 64
    p.push(&[2; 24]).unwrap();
    assert_eq!(c.pop().unwrap(), vec![1; 24]);
    assert_eq!(c.pop().unwrap(), vec![2; 24]);
    // head = last seen tail = 64: the valid tails are [64, 64 + 64].
    scribble(&buf, TAIL_OFFSET, &136u64.to_ne_bytes());
    assert_eq!(c.pop().unwrap_err(), ReadError::Corrupted(Corruption::Tail));
    assert_eq!(c.used_bytes(), Err(Corruption::Tail));
}

#[test]
fn positions_run_up_to_max_position_and_a_tail_past_it_is_corruption() {
    let buf = Arc::new(AlignedBuf::segment(64).unwrap());
    let start = MAX_POSITION - 32;
    scribble(&buf, HEAD_OFFSET, &start.to_ne_bytes());
    scribble(&buf, TAIL_OFFSET, &start.to_ne_bytes());
    // SAFETY: no other producer of this buffer is used while it lives.
    let mut p = unsafe { heap::producer(&buf) }.unwrap();
    // SAFETY: no other consumer of this buffer is used while it lives.
    let mut c = unsafe { heap::consumer(&buf) }.unwrap();
    // The last record that fits ends exactly at MAX_POSITION, and is delivered.
    p.push(&[5; 24]).unwrap();
    assert_eq!(p.position(), MAX_POSITION);
    assert_eq!(c.pop().unwrap(), vec![5; 24]);
    assert_eq!(c.position(), MAX_POSITION);
    // The producer refuses to go past it...
    assert_eq!(p.push(b"x"), Err(PushError::Corrupted(Corruption::Tail)));
    // ...and a tail moved past it is corrupt, though within a capacity of head.
    scribble(&buf, TAIL_OFFSET, &(MAX_POSITION + 8).to_ne_bytes());
    assert_eq!(c.pop().unwrap_err(), ReadError::Corrupted(Corruption::Tail));
}

#[test]
fn unaligned_or_too_large_tail_is_refused_when_a_side_attaches() {
    // (head, tail): tail unaligned but within a capacity of head, or past
    // MAX_POSITION but within a capacity of a head at the limit.
    for (head, tail) in [
        (0u64, 4u64),
        (0, 60),
        (64, 68),
        (MAX_POSITION, MAX_POSITION + 8),
    ] {
        let buf = Arc::new(AlignedBuf::segment(256).unwrap());
        scribble(&buf, HEAD_OFFSET, &head.to_ne_bytes());
        scribble(&buf, TAIL_OFFSET, &tail.to_ne_bytes());
        let want = Err(HeapError::Corrupted(Corruption::Tail));
        // SAFETY: the side is dropped at once (attach fails); no other producer exists.
        let got = unsafe { heap::producer(&buf) }.map(|_| ());
        assert_eq!(got, want, "{head}, {tail}");
        // SAFETY: the side is dropped at once (attach fails); no other consumer exists.
        let got = unsafe { heap::consumer(&buf) }.map(|_| ());
        assert_eq!(got, want, "{head}, {tail}");
    }
}

#[test]
fn positions_up_to_max_position_are_accepted_when_a_side_attaches() {
    for (head, tail) in [
        (MAX_POSITION, MAX_POSITION),
        (MAX_POSITION - 256, MAX_POSITION),
    ] {
        let buf = Arc::new(AlignedBuf::segment(256).unwrap());
        scribble(&buf, HEAD_OFFSET, &head.to_ne_bytes());
        scribble(&buf, TAIL_OFFSET, &tail.to_ne_bytes());
        // SAFETY: no other producer of this buffer is used while it lives.
        let p = unsafe { heap::producer(&buf) }.unwrap();
        // SAFETY: no other consumer of this buffer is used while it lives.
        let c = unsafe { heap::consumer(&buf) }.unwrap();
        assert_eq!((c.position(), p.position()), (head, tail));
    }
}

#[test]
fn corruption_and_error_messages_name_what_is_wrong() {
    let corruptions = [
        (Corruption::Head, "head index out of range"),
        (Corruption::Tail, "tail index out of range"),
        (Corruption::RecordKind, "unknown record kind"),
        (Corruption::RecordLength, "record length out of range"),
        (
            Corruption::OwnIndex,
            "own index overwritten by another writer",
        ),
    ];
    for (corruption, text) in corruptions {
        assert_eq!(corruption.to_string(), text);
        assert_eq!(
            Error::Corrupted(corruption).to_string(),
            format!("ring is corrupted: {text}")
        );
    }
    let errors = [
        (Error::Full, "ring is full"),
        (Error::Empty, "ring is empty"),
        (
            Error::TooLarge { len: 100, max: 24 },
            "message of 100 bytes exceeds this ring's maximum of 24 bytes",
        ),
        (Error::Closed, "ring is closed"),
        (
            Error::BufferTooSmall { needed: 12 },
            "buffer too small: the message has 12 bytes",
        ),
        (
            Error::SizeMismatch {
                expected: 4,
                actual: 8,
            },
            "message has 8 bytes, expected 4",
        ),
    ];
    for (error, text) in errors {
        assert_eq!(error.to_string(), text);
    }
}

#[test]
fn overwritten_own_index_is_detected() {
    let buf = Arc::new(AlignedBuf::segment(256).unwrap());
    // SAFETY: no other producer of this buffer is used while it lives.
    let mut p = unsafe { heap::producer(&buf) }.unwrap();
    p.push(b"abc").unwrap();
    scribble(&buf, TAIL_OFFSET, &0u64.to_ne_bytes());
    assert_eq!(
        p.push(b"x").unwrap_err(),
        PushError::Corrupted(Corruption::OwnIndex)
    );
}

#[test]
fn threads_stream_many_messages_in_order() {
    let (mut p, mut c) = heap::channel(1024).unwrap();
    const N: u32 = 200_000;
    let producer = std::thread::spawn(move || {
        for i in 0..N {
            let len = (i % 37) as usize;
            let mut msg = i.to_le_bytes().to_vec();
            msg.resize(4 + len, i as u8);
            loop {
                match p.push(&msg) {
                    Ok(()) => break,
                    Err(PushError::Full) => {
                        p.wait_writable(msg.len(), Some(std::time::Duration::from_millis(10)))
                            .unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        p.close().unwrap();
    });
    let mut next = 0u32;
    loop {
        match c.pop() {
            Ok(msg) => {
                assert_eq!(u32::from_le_bytes(msg[..4].try_into().unwrap()), next);
                assert_eq!(msg.len(), 4 + (next % 37) as usize);
                assert!(msg[4..].iter().all(|&b| b == next as u8));
                next += 1;
            }
            Err(ReadError::Empty) => {
                c.wait_readable(Some(std::time::Duration::from_millis(10)))
                    .unwrap();
            }
            Err(ReadError::Closed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(next, N);
    producer.join().unwrap();
}
