//! The messages: numbered, checksummed and of varying sizes, so that a torn
//! or misplaced one is recognised; and the plans that say how each is sent
//! and read (the same in every run, so that crossings can be counted).

use ringproof::layout::record_size;

use super::MESSAGE_HEADER;

pub(super) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Length of message `seq` in a ring of `capacity` bytes: 24 to 24 + capacity/16.
pub(super) fn message_len(seq: u64, capacity: u64) -> usize {
    MESSAGE_HEADER + (splitmix(seq ^ 0x5151) % (capacity / 16 + 1)) as usize
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn payload_byte(seq: u64, i: usize) -> u8 {
    (splitmix(seq.wrapping_mul(31).wrapping_add(i as u64 / 8)) >> ((i % 8) * 8)) as u8
}

/// Writes message `seq` from producer `producer` into `out` (its exact length).
pub(super) fn encode(seq: u64, producer: u64, out: &mut [u8]) {
    let len = out.len();
    out[..8].copy_from_slice(&seq.to_le_bytes());
    out[8..12].copy_from_slice(&(producer as u32).to_le_bytes());
    out[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    for (i, b) in out[16..len - 8].iter_mut().enumerate() {
        *b = payload_byte(seq, i);
    }
    let sum = fnv1a(&out[..len - 8]);
    out[len - 8..].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a delivered message; `Some((seq, producer))` when whole.
pub(super) fn decode(bytes: &[u8], capacity: u64) -> Option<(u64, u64)> {
    let len = bytes.len();
    if len < MESSAGE_HEADER {
        return None;
    }
    let seq = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    let producer = u64::from(u32::from_le_bytes(bytes[8..12].try_into().ok()?));
    let stated = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(bytes[len - 8..].try_into().ok()?);
    let whole = stated == len
        && message_len(seq, capacity) == len
        && sum == fnv1a(&bytes[..len - 8])
        && bytes[16..len - 8]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == payload_byte(seq, i));
    whole.then_some((seq, producer))
}

/// How the producer sends the message(s) starting at `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SendOp {
    Push,
    Grant,
    Batch(u64),
}

pub(super) fn send_plan(seq: u64) -> SendOp {
    match splitmix(seq ^ 0xB47C) % 8 {
        0..=2 => SendOp::Push,
        3..=4 => SendOp::Grant,
        r => SendOp::Batch(r - 3), // 2 or 3 (MAX_BATCH) records
    }
}

/// How many messages the consumer's `n`-th read takes (1: `read`, else a `read_batch`).
pub(super) fn read_plan(n: u64) -> u64 {
    match splitmix(n ^ 0xC0C0) % 4 {
        0 | 1 => 1,
        r => r, // 2 or 3 (MAX_BATCH)
    }
}

/// Bytes a batch of these messages needs past `tail`, wrap padding included
/// (as the producer's `claim` places them).
pub(super) fn batch_need(tail: u64, capacity: u64, lens: impl Iterator<Item = usize>) -> u64 {
    let mut pos = tail;
    for len in lens {
        let record = record_size(len as u64);
        let to_end = capacity - (pos & (capacity - 1));
        if record > to_end {
            pos += to_end;
        }
        pos += record;
    }
    pos - tail
}
