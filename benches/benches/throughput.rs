//! Throughput of ringproof and its peers, in the same criterion groups so
//! that each report reads as a ratio. See `benches/README.md` for the method.
//!
//! - `msg_size/<size>` (1 MiB rings): ringproof cross-process and in-process,
//!   single and batch (64 per commit); pipe and Unix socket (one `write` per
//!   message, or per 64); rtrb (`push`/`pop`, chunks of 64); crossbeam
//!   `ArrayQueue`.
//! - `ring_size/<size>` (64 B messages): ringproof cross-process, single and
//!   batch, rings from 4 KiB to 64 MiB.
//!
//! `cargo bench -p ringproof-benches` (HTML report in
//! `$CARGO_TARGET_DIR/criterion/report/index.html`).

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringproof_benches::{Api, BenchError, Transfer, inproc, ring, stream};

type Measure = fn(&Transfer) -> Result<ringproof_benches::Throughput, BenchError>;

const MIB: u64 = 1 << 20;
const BATCH: usize = 64;

/// Time for `iters` messages of `cfg` with `f` (setup and warm-up excluded).
///
/// A run moves at least 16 MiB or 20 000 messages (whichever is fewer, at
/// least 200) and the time is scaled to `iters`: a few messages would time
/// the wake-up of a parked peer, not the stream.
fn timed(f: Measure, cfg: Transfer, iters: u64) -> Duration {
    let floor = ((16 * MIB) / cfg.message_size.max(1) as u64).clamp(200, 20_000);
    let messages = iters.max(floor);
    match f(&cfg.with_messages(messages)) {
        Ok(t) => t.elapsed.mul_f64(iters as f64 / messages as f64),
        Err(e) => panic!("measurement failed: {e}"),
    }
}

fn label(bytes: u64) -> String {
    if bytes >= MIB {
        format!("{}MiB", bytes / MIB)
    } else if bytes >= 1024 {
        format!("{}KiB", bytes / 1024)
    } else {
        format!("{bytes}B")
    }
}

fn by_message_size(c: &mut Criterion) {
    for size in inproc::SIZES {
        let mut group = c.benchmark_group(format!("msg_size/{}", label(size as u64)));
        if size <= 64 {
            group.throughput(Throughput::Elements(1));
        } else {
            group.throughput(Throughput::Bytes(size as u64));
        }
        let single = Transfer::new(size, MIB, 1);
        let batch = single.with_api(Api::Batch(BATCH));
        let cases: [(&str, Measure, Transfer); 11] = [
            ("ringproof-xproc/single", ring::cross_process, single),
            ("ringproof-xproc/batch64", ring::cross_process, batch),
            ("ringproof-inproc/single", ring::in_process, single),
            ("ringproof-inproc/batch64", ring::in_process, batch),
            ("pipe/single", stream::pipe, single),
            ("pipe/batch64", stream::pipe, batch),
            ("unix-socket/single", stream::unix_socket, single),
            ("unix-socket/batch64", stream::unix_socket, batch),
            ("rtrb/single", inproc::rtrb, single),
            ("rtrb/chunks64", inproc::rtrb, batch),
            ("crossbeam-arrayqueue/single", inproc::array_queue, single),
        ];
        for (name, f, cfg) in cases {
            group.bench_function(name, |b| b.iter_custom(|iters| timed(f, cfg, iters)));
        }
        group.finish();
    }
}

fn by_ring_size(c: &mut Criterion) {
    let size = 64;
    let mut group = c.benchmark_group(format!("ring_size/{}", label(size)));
    group.throughput(Throughput::Elements(1));
    for ring_size in [4 << 10, 64 << 10, MIB, 16 * MIB, 64 * MIB] {
        let single = Transfer::new(size as usize, ring_size, 1);
        for (api, cfg) in [
            ("single", single),
            ("batch64", single.with_api(Api::Batch(BATCH))),
        ] {
            group.bench_with_input(
                BenchmarkId::new(format!("ringproof-xproc/{api}"), label(ring_size)),
                &cfg,
                |b, cfg| b.iter_custom(|iters| timed(ring::cross_process, *cfg, iters)),
            );
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10)
}

criterion_group! {
    name = benches;
    config = config();
    targets = by_message_size, by_ring_size
}
criterion_main!(benches);
