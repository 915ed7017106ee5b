//! A consumer blocked on an idle ring parks instead of spinning.

use std::time::Duration;

/// Wall-clock wait, in milliseconds (`RINGPROOF_IDLE_MS`, default 2000).
fn wait() -> Duration {
    let ms = std::env::var("RINGPROOF_IDLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000u64);
    Duration::from_millis(ms)
}

#[test]
fn blocked_consumer_on_idle_ring_uses_under_five_percent_cpu() {
    let used = ringproof_benches::idle::consumer_cpu(wait()).unwrap();
    println!(
        "idle consumer: {:?} CPU over {:?} = {:.3} %",
        used.cpu,
        used.wall,
        used.percent()
    );
    assert!(used.wall >= wait(), "returned before the timeout: {used:?}");
    assert!(
        used.percent() < 5.0,
        "a parked consumer burnt {:.2} % of a CPU",
        used.percent()
    );
}
