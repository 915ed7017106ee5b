//! Every measurement moves the whole stream, in order, and cleans up.
//!
//! One test function on purpose: the measurements fork, and forking while
//! other test threads run is best avoided.

use ringproof_benches::{Api, BenchError, Transfer, inproc, latency, ring, stream};

/// Messages per transfer (`RINGPROOF_MEASURE_MESSAGES`, default 5000).
fn messages() -> u64 {
    std::env::var("RINGPROOF_MEASURE_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}

fn leftover_segments() -> usize {
    let prefix = "ringproof-bench-";
    let pid = format!("-{}-", std::process::id());
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with(prefix) && name.contains(&pid)
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn measurements_deliver_every_message_and_leave_nothing_behind() {
    let n = messages();
    type Measure = fn(&Transfer) -> Result<ringproof_benches::Throughput, BenchError>;
    let all: [(&str, Measure); 5] = [
        ("ring cross-process", ring::cross_process),
        ("ring in-process", ring::in_process),
        ("pipe", stream::pipe),
        ("unix socket", stream::unix_socket),
        ("rtrb", inproc::rtrb),
    ];
    // A ring of 4 KiB wraps many times, with padding records for 1 KiB messages.
    for size in [8usize, 1024] {
        for api in [Api::Single, Api::Batch(16)] {
            let cfg = Transfer::new(size, 4096, n).with_api(api);
            for (name, measure) in all {
                let t = measure(&cfg).unwrap_or_else(|e| panic!("{name} {size} B {api:?}: {e}"));
                assert_eq!(t.messages, n, "{name}");
                assert_eq!(t.bytes, n * size as u64, "{name}");
                assert!(t.messages_per_sec() > 0.0, "{name}");
            }
        }
        let t = inproc::array_queue(&Transfer::new(size, 4096, n)).unwrap();
        assert_eq!(t.messages, n);
    }

    let ping = latency::ring(&latency::PingPong {
        message_size: 8,
        ring_size: 4096,
        round_trips: 1000,
        pin: true,
    })
    .unwrap();
    assert_eq!(ping.samples, 1000);
    assert!(ping.p50 > 0 && ping.p50 <= ping.p99 && ping.p99 <= ping.max);
    let line = latency::cache_line(1000, true).unwrap();
    assert_eq!(line.samples, 1000);
    assert!(line.p50 <= line.max);

    let copy = ringproof_benches::memcpy_bandwidth(1 << 20, 8 << 20);
    assert_eq!(copy.bytes, 8 << 20);

    assert_eq!(
        leftover_segments(),
        0,
        "a measurement left a segment in /dev/shm"
    );
}

#[test]
fn a_message_larger_than_the_ring_is_refused() {
    let cfg = Transfer::new(8192, 4096, 10);
    assert!(matches!(
        ring::cross_process(&cfg),
        Err(BenchError::Config(_))
    ));
    assert!(matches!(ring::in_process(&cfg), Err(BenchError::Config(_))));
    assert!(matches!(
        inproc::rtrb(&Transfer::new(12, 4096, 10)),
        Err(BenchError::Config(_))
    ));
}
