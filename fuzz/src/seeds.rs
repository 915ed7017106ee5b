//! The seed inputs committed under `fuzz/corpus/`: `(target, file name, bytes)`.
//! `examples/gen_corpus.rs` writes them; `tests/corpus.rs` checks that the
//! committed files include them and replays every committed file.

use super::*;
use ringproof::layout::{RECORD_MESSAGE, RECORD_PADDING, checksum, fnv1a};
use ringproof::mpsc::heap::{HeapShared as MpscShared, channel};
use ringproof::mpsc::layout::{
    CHECKSUMMED as MPSC_CHECKSUMMED, HEAD_OFFSET as MPSC_HEAD_OFFSET,
    TAIL_OFFSET as MPSC_TAIL_OFFSET, table_offset,
};
use ringproof::mpsc::{AlwaysAlive, Consumer as MpscConsumer, Producer as MpscProducer};
use ringproof::testing::{MpscOp, Word};

/// A segment of `capacity` bytes after `script` ran on a producer and a
/// consumer over it, starting from position `start`.
fn live_segment(
    capacity: u64,
    start: u64,
    script: impl FnOnce(&mut Producer<HeapShared>, &mut Consumer<HeapShared>),
) -> Vec<u8> {
    let mut segment = AlignedBuf::segment(capacity).expect("capacity in range");
    let bytes = segment.bytes_mut();
    bytes[HEAD_OFFSET..HEAD_OFFSET + 8].copy_from_slice(&start.to_ne_bytes());
    bytes[TAIL_OFFSET..TAIL_OFFSET + 8].copy_from_slice(&start.to_ne_bytes());
    let buf = Arc::new(segment);
    {
        // SAFETY: a fresh buffer; these are its first producer and consumer.
        let mut producer = unsafe { heap::producer(&buf) }.expect("producer");
        // SAFETY: as above.
        let mut consumer = unsafe { heap::consumer(&buf) }.expect("consumer");
        script(&mut producer, &mut consumer);
    }
    let mut segment = Arc::try_unwrap(buf).expect("sides dropped");
    segment.bytes_mut().to_vec()
}

/// Recomputes the header checksum, so that only the field changed fails.
fn reseal(segment: &mut [u8]) {
    let mut covered = [0u8; CHECKSUMMED];
    covered.copy_from_slice(&segment[..CHECKSUMMED]);
    let sum = checksum(&covered);
    segment[CHECKSUMMED..CHECKSUMMED + 8].copy_from_slice(&sum.to_ne_bytes());
}

fn record(len: u32, kind: u32) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&len.to_ne_bytes());
    out[4..].copy_from_slice(&kind.to_ne_bytes());
    out
}

/// Operation bytes for the `attach` target: read, push, batch, close, re-attach.
const ATTACH_OPS: &[u8] = &[
    5, 0, 6, 3, 0, 4, 1, 6, 2, 2, 4, 0, 8, 0, 7, 200, 9, 0, 5, 1, 3, 0, 5, 0, 6, 4,
];

fn attach_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |name, segment: Vec<u8>| out.push((name, attach_input(&segment, ATTACH_OPS)));

    add("fresh-32", live_segment(32, 0, |_, _| {}));
    add("fresh-1024", live_segment(1024, 0, |_, _| {}));
    let midstream = live_segment(256, 0, |p, c| {
        for i in 0..5u8 {
            p.push(&payload(usize::from(i) * 9, i)).expect("fits");
        }
        c.pop().expect("message");
        c.pop().expect("message");
    });
    add("midstream-256", midstream.clone());
    let wrapped = live_segment(64, 0, |p, c| {
        p.push(&[1; 16]).expect("fits"); // 0..24
        p.push(&[2; 16]).expect("fits"); // 24..48
        c.pop().expect("message");
        c.pop().expect("message");
        p.push(&[3; 16]).expect("fits"); // padding 48..64, record 64..88
    });
    add("wrapped-64", wrapped.clone());
    add(
        "closed-256",
        live_segment(256, 0, |p, c| {
            p.push(b"last words").expect("fits");
            p.push(b"").expect("fits");
            c.pop().expect("message");
            p.close().expect("close");
        }),
    );
    add(
        "near-max-position-128",
        live_segment(128, MAX_POSITION - 64, |p, _| {
            p.push(&[9; 20]).expect("fits");
        }),
    );

    // Hand-made corrupt segments, each breaking one check.
    let fresh = live_segment(256, 0, |_, _| {});
    let mut bad = fresh.clone();
    bad[0] = b'X';
    reseal(&mut bad);
    add("corrupt-magic", bad);
    let mut bad = fresh.clone();
    bad[..8].fill(0);
    add("corrupt-magic-zero", bad);
    let mut bad = fresh.clone();
    bad[8..12].copy_from_slice(&2u32.to_ne_bytes());
    reseal(&mut bad);
    add("corrupt-version", bad);
    let mut bad = fresh.clone();
    bad[12..16].copy_from_slice(&512u32.to_ne_bytes());
    reseal(&mut bad);
    add("corrupt-header-size", bad);
    let mut bad = fresh.clone();
    bad[16..24].copy_from_slice(&1000u64.to_ne_bytes());
    reseal(&mut bad);
    add("corrupt-capacity", bad);
    let mut bad = fresh.clone();
    bad[16..24].copy_from_slice(&128u64.to_ne_bytes());
    add("corrupt-checksum", bad);
    add("corrupt-size-short", fresh[..fresh.len() - 8].to_vec());
    add("corrupt-too-small", fresh[..100].to_vec());
    let mut bad = midstream.clone();
    bad[HEAD_OFFSET..HEAD_OFFSET + 8].copy_from_slice(&3u64.to_ne_bytes());
    add("corrupt-head-unaligned", bad);
    let mut bad = midstream.clone();
    bad[HEAD_OFFSET..HEAD_OFFSET + 8].copy_from_slice(&(u64::MAX - 7).to_ne_bytes());
    add("corrupt-head-near-u64-max", bad);
    let mut bad = midstream.clone();
    bad[TAIL_OFFSET..TAIL_OFFSET + 8].copy_from_slice(&4096u64.to_ne_bytes());
    add("corrupt-tail-too-far", bad);
    let mut bad = midstream.clone();
    let head = peek_word_of(&bad, HEAD_OFFSET) as usize % 256;
    bad[HEADER_SIZE + head..HEADER_SIZE + head + 8].copy_from_slice(&record(9, 0xDEAD));
    add("corrupt-record-kind", bad);
    let mut bad = midstream;
    let head = peek_word_of(&bad, HEAD_OFFSET) as usize % 256;
    bad[HEADER_SIZE + head..HEADER_SIZE + head + 8]
        .copy_from_slice(&record(u32::MAX, RECORD_MESSAGE));
    add("corrupt-record-length", bad);
    let mut bad = wrapped;
    bad[HEADER_SIZE + 48..HEADER_SIZE + 56].copy_from_slice(&record(0, RECORD_PADDING));
    add("corrupt-padding-length", bad);
    out
}

fn peek_word_of(segment: &[u8], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&segment[offset..offset + 8]);
    u64::from_ne_bytes(word)
}

fn ops(cap_exp: u8, start: u16, ops: Vec<Op>) -> Vec<u8> {
    OpsInput {
        cap_exp,
        start,
        ops,
    }
    .encode()
}

fn ops_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use Op::*;
    let push = |len, seed| Push { len, seed };
    vec![
        (
            "fresh-32",
            ops(0, 0, vec![push(3, 1), Pop, Pop, UsedBytes, FreeBytes]),
        ),
        (
            "midstream-256",
            ops(
                3,
                0,
                vec![
                    push(10, 1),
                    push(40, 2),
                    ReserveCommit { len: 7, seed: 3 },
                    push(0, 4),
                    Pop,
                    ReadDrop,
                    BatchPop {
                        n: 2,
                        release: true,
                    },
                    UsedBytes,
                    FreeBytes,
                ],
            ),
        ),
        (
            "wrapped-64",
            ops(
                1,
                0,
                vec![
                    push(16, 1),
                    push(16, 2),
                    Pop,
                    Pop,
                    push(16, 3),
                    push(8, 4),
                    ReadRelease,
                    Pop,
                ],
            ),
        ),
        (
            "closed-256",
            ops(
                3,
                0,
                vec![push(5, 1), Close, push(5, 2), Pop, Pop, Close, UsedBytes],
            ),
        ),
        (
            "full-and-too-large-32",
            ops(
                0,
                0,
                vec![
                    push(8, 1),
                    push(8, 2),
                    push(0, 3),
                    push(9, 4),
                    Pop,
                    push(0, 5),
                    FreeBytes,
                ],
            ),
        ),
        (
            "batches-128",
            ops(
                2,
                0,
                vec![
                    BatchPush {
                        messages: vec![(1, 1), (2, 2), (3, 3), (60, 60)],
                        commit: true,
                    },
                    BatchPush {
                        messages: vec![(4, 4), (5, 5)],
                        commit: false,
                    },
                    BatchPop {
                        n: 3,
                        release: false,
                    },
                    BatchPop {
                        n: 7,
                        release: true,
                    },
                    ReserveAbort { len: 30 },
                    push(30, 6),
                    PopInto { buf_len: 10 },
                    PopInto { buf_len: 64 },
                ],
            ),
        ),
        (
            "reattach-64",
            ops(
                1,
                7,
                vec![
                    push(12, 1),
                    ReattachProducer,
                    push(12, 2),
                    ReadDrop,
                    ReattachConsumer,
                    Pop,
                    Close,
                    ReattachProducer,
                    push(1, 3),
                    Pop,
                    Pop,
                ],
            ),
        ),
        (
            "near-max-position-32",
            ops(
                0,
                0xFFF8,
                vec![
                    push(8, 1),
                    Pop,
                    push(8, 2),
                    Pop,
                    push(8, 3),
                    push(0, 4),
                    Close,
                ],
            ),
        ),
        (
            "hostile-head",
            ops(
                2,
                0,
                vec![
                    push(20, 1),
                    SetWord {
                        word: Word::At(HEAD_OFFSET),
                        value: 3,
                    },
                    Pop,
                    FreeBytes,
                    push(1, 2),
                ],
            ),
        ),
        (
            "hostile-tail",
            ops(
                2,
                0,
                vec![
                    push(20, 1),
                    NudgeWord {
                        word: Word::At(TAIL_OFFSET),
                        by: 16,
                    },
                    Pop,
                    Pop,
                    push(1, 2),
                    UsedBytes,
                ],
            ),
        ),
        (
            "hostile-record",
            ops(
                2,
                0,
                vec![
                    push(20, 1),
                    SetWord {
                        word: Word::RecordAtHead,
                        value: u64::from(RECORD_MESSAGE) << 32 | 0xFFFF,
                    },
                    ReadDrop,
                    ReattachConsumer,
                    Pop,
                ],
            ),
        ),
        (
            "hostile-scribble-data",
            ops(
                1,
                0,
                vec![
                    push(16, 1),
                    push(16, 2),
                    Scribble {
                        offset: HEADER_SIZE + 24,
                        bytes: vec![0xFF; 8],
                    },
                    Pop,
                    Pop,
                    Pop,
                ],
            ),
        ),
    ]
}

/// An MPSC segment of `capacity` bytes and `producers` slots after
/// `script` ran on its producers and consumer (whose liveness says every
/// producer is alive).
fn mpsc_segment(
    capacity: u64,
    producers: u32,
    script: impl FnOnce(&mut [MpscProducer<MpscShared>], &mut MpscConsumer<MpscShared, AlwaysAlive>),
) -> Vec<u8> {
    let (mut sides, mut consumer) = channel(capacity, producers, AlwaysAlive).expect("accepted");
    let buf = Arc::clone(sides[0].shared().owner());
    script(&mut sides, &mut consumer);
    drop((sides, consumer));
    let mut segment = Arc::try_unwrap(buf).expect("sides dropped");
    segment.bytes_mut().to_vec()
}

/// Recomputes an MPSC header's checksum.
fn mpsc_reseal(segment: &mut [u8]) {
    let sum = fnv1a(&segment[..MPSC_CHECKSUMMED]);
    segment[MPSC_CHECKSUMMED..MPSC_CHECKSUMMED + 8].copy_from_slice(&sum.to_ne_bytes());
}

/// Operation bytes for MPSC segments in the `attach` target (`op % 8`,
/// slot `op >> 3`): read, push, push from slot 1, reserve, read, batch,
/// `pop_into`, close, read, re-take slot 0, new consumer, read, re-take slot 1.
const MPSC_ATTACH_OPS: &[u8] = &[
    3, 0, 0, 5, 8, 7, 1, 4, 3, 1, 4, 3, 5, 200, 2, 0, 3, 0, 6, 0, 7, 0, 3, 0, 14, 0,
];

fn mpsc_attach_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add =
        |name, segment: Vec<u8>| out.push((name, attach_input(&segment, MPSC_ATTACH_OPS)));
    let fresh = mpsc_segment(64, 2, |_, _| {});
    add("mpsc-fresh-64", fresh.clone());
    let midstream = mpsc_segment(256, 3, |p, c| {
        for i in 0..6u8 {
            p[usize::from(i % 3)]
                .push(&payload(usize::from(i) * 7, i))
                .expect("fits");
        }
        c.pop().expect("message");
        c.pop().expect("message");
    });
    add("mpsc-midstream-256", midstream.clone());
    add(
        "mpsc-wrapped-64",
        mpsc_segment(64, 2, |p, c| {
            p[0].push(&[1; 16]).expect("fits"); // 0..24
            p[1].push(&[2; 16]).expect("fits"); // 24..48
            c.pop().expect("message");
            c.pop().expect("message");
            p[0].push(&[3; 16]).expect("fits"); // padding 48..64, record 64..88
        }),
    );
    add(
        "mpsc-stalled-128",
        mpsc_segment(128, 2, |p, _| {
            p[0].push(b"first").expect("fits");
            let mut grant = p[0].reserve(20).expect("fits");
            grant[..4].copy_from_slice(b"half");
            grant.abandon();
            p[1].push(b"behind a stalled claim").expect("fits");
            drop(p[1].reserve(3).expect("fits"));
        }),
    );
    add(
        "mpsc-closed-256",
        mpsc_segment(256, 1, |p, c| {
            p[0].push(b"last words").expect("fits");
            p[0].push(b"").expect("fits");
            c.pop().expect("message");
            p[0].close().expect("close");
        }),
    );
    let mut bad = fresh.clone();
    bad[24..28].copy_from_slice(&65u32.to_ne_bytes());
    mpsc_reseal(&mut bad);
    add("mpsc-corrupt-max-producers", bad);
    let mut bad = fresh.clone();
    bad[24..28].copy_from_slice(&1u32.to_ne_bytes());
    add("mpsc-corrupt-checksum", bad);
    add("mpsc-corrupt-size-short", fresh[..fresh.len() - 8].to_vec());
    let mut bad = midstream.clone();
    let head = peek_word_of(&bad, MPSC_HEAD_OFFSET) as usize % 256;
    let at = table_offset(256) as usize + head;
    bad[at..at + 8].copy_from_slice(&(u64::MAX - 5).to_ne_bytes());
    add("mpsc-corrupt-record", bad);
    let mut bad = midstream;
    bad[MPSC_HEAD_OFFSET..MPSC_HEAD_OFFSET + 8].copy_from_slice(&(u64::MAX - 7).to_ne_bytes());
    add("mpsc-corrupt-head", bad);
    out
}

fn mpsc_ops(cap_exp: u8, producers: u8, ops: Vec<MpscOp>) -> Vec<u8> {
    MpscOpsInput {
        cap_exp,
        producers,
        ops,
    }
    .encode()
}

fn mpsc_ops_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use MpscOp::*;
    let push = |slot, len, seed| Push { slot, len, seed };
    let scribble = |offset, value| ScribbleWord { offset, value };
    vec![
        (
            "fresh-64-3",
            mpsc_ops(
                1,
                2,
                vec![
                    push(0, 5, 1),
                    push(1, 24, 2),
                    ReserveCommit {
                        slot: 2,
                        len: 0,
                        seed: 3,
                    },
                    Read,
                    push(2, 16, 4),
                    Batch {
                        n: 4,
                        release: true,
                    },
                    push(0, 9, 5),
                    ReadDrop,
                    PopInto { buf_len: 4 },
                    PopInto { buf_len: 16 },
                    Read,
                ],
            ),
        ),
        (
            "stall-and-restart-128",
            mpsc_ops(
                2,
                1,
                vec![
                    push(0, 8, 1),
                    Stall { slot: 0, len: 12 },
                    push(1, 3, 2),
                    push(0, 3, 9),
                    Read,
                    Read,
                    Restart { slot: 0 },
                    ReadDrop,
                    push(0, 56, 3),
                    Batch {
                        n: 5,
                        release: true,
                    },
                    Read,
                ],
            ),
        ),
        (
            "abort-close-32",
            mpsc_ops(
                0,
                0,
                vec![
                    ReserveAbort { slot: 0, len: 8 },
                    push(0, 8, 1),
                    push(0, 8, 2),
                    push(0, 9, 3),
                    Read,
                    push(0, 0, 4),
                    Close { slot: 0 },
                    push(0, 1, 5),
                    Read,
                    Read,
                    Read,
                ],
            ),
        ),
        (
            // The finding of fuzz/README.md: a whole lap of given-up records.
            "regression-whole-lap-skipped-1024",
            mpsc_ops(
                5,
                0,
                vec![
                    ReserveAbort { slot: 0, len: 504 },
                    ReserveAbort { slot: 0, len: 57 },
                    ReserveAbort { slot: 0, len: 425 },
                    push(0, 0, 0),
                    Read,
                    push(0, 0, 1),
                    Read,
                ],
            ),
        ),
        (
            "hostile-head-64",
            mpsc_ops(
                1,
                1,
                vec![
                    push(0, 8, 1),
                    push(1, 8, 2),
                    scribble(MPSC_HEAD_OFFSET, 8),
                    Read,
                    push(0, 8, 3),
                    Read,
                ],
            ),
        ),
        (
            "hostile-record-64",
            mpsc_ops(
                1,
                1,
                vec![
                    push(0, 8, 1),
                    scribble(table_offset(64) as usize, u64::MAX), // the first record's word
                    Read,
                    Batch {
                        n: 2,
                        release: true,
                    },
                    push(1, 8, 2),
                    Restart { slot: 1 },
                ],
            ),
        ),
        (
            "hostile-tail-64",
            mpsc_ops(
                1,
                1,
                vec![
                    push(0, 8, 1),
                    scribble(MPSC_TAIL_OFFSET, 1 << 40),
                    push(1, 8, 2),
                    Read,
                    scribble(MPSC_TAIL_OFFSET, 3),
                    push(0, 8, 2),
                ],
            ),
        ),
    ]
}

/// Every seed: `(target, file name, bytes)`.
pub fn all() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let attach = attach_seeds()
        .into_iter()
        .chain(mpsc_attach_seeds())
        .map(|(n, b)| ("attach", n, b));
    let ops = ops_seeds().into_iter().map(|(n, b)| ("ops", n, b));
    let mpsc = mpsc_ops_seeds()
        .into_iter()
        .map(|(n, b)| ("mpsc_ops", n, b));
    attach.chain(ops).chain(mpsc).collect()
}
