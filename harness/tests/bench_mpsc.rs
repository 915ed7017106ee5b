//! `ringproof bench --mode mpsc`, run as a user would: the shape of its
//! JSON (every figure of the MPSC ring and of both peers, the ratios), every
//! message of every producer delivered, the producer count refused outside
//! 1..=64, and no segment left in `/dev/shm`. No timing is asserted.

use std::process::{Command, Output, Stdio};

mod support;
use support::{assert_error_line, stderr_text};

const BIN: &str = env!("CARGO_BIN_EXE_ringproof");

/// Runs `ringproof` with `args`; its output, and whether a `/dev/shm` entry
/// of its pid is left behind (its segments are `/ringproof-<tag>-<pid>-<n>`).
fn run(args: &[&str]) -> (Output, Vec<String>) {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let marker = format!("-{}-", child.id());
    let out = child.wait_with_output().unwrap();
    let left = std::fs::read_dir("/dev/shm")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("ringproof-") && n.contains(&marker))
        .collect();
    (out, left)
}

/// Checks one transport's figures: `producers` processes, `messages` timed
/// in all, each producer's share delivered.
#[track_caller]
fn check_figures(f: &serde_json::Value, producers: u64, messages: u64, message_size: u64) {
    assert_eq!(f["producers"], producers, "{f}");
    assert_eq!(f["messages"], messages, "{f}");
    let positive = |x: &serde_json::Value| x.as_f64().filter(|r| r.is_finite() && *r > 0.0);
    let mps = positive(&f["messages_per_sec"]).expect("messages_per_sec");
    let bps = positive(&f["bytes_per_sec"]).expect("bytes_per_sec");
    let seconds = positive(&f["seconds"]).expect("seconds");
    assert!((bps / mps - message_size as f64).abs() < 1e-6, "{f}");
    assert!((mps * seconds / messages as f64 - 1.0).abs() < 1e-6, "{f}");
    let per_producer: Vec<u64> = f["per_producer"]
        .as_array()
        .expect("per_producer")
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(per_producer.len() as u64, producers, "{f}");
    assert!(
        per_producer.iter().all(|&n| n == messages / producers),
        "{f}"
    );
    let latency = &f["latency_ns"];
    let field = |name: &str| {
        latency[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {f}"))
    };
    let (p50, p99, p999, max) = (field("p50"), field("p99"), field("p999"), field("max"));
    assert!(0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max, "{f}");
    assert!(positive(&latency["avg"]).is_some(), "{f}");
    assert!(field("samples") > 0, "{f}");
}

#[test]
fn three_producers_deliver_every_message_beside_both_peers() {
    let per_producer = 3000u64;
    let (out, left) = run(&[
        "bench",
        "--mode",
        "mpsc",
        "--producers",
        "3",
        "--iterations",
        &per_producer.to_string(),
        "--message-size",
        "8B",
        "--buffer-size",
        "64KiB",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(left.is_empty(), "segments left: {left:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mode"], "mpsc", "{v}");
    assert_eq!(v["producers"], 3, "{v}");
    assert_eq!(v["message_size"], 8, "{v}");
    assert_eq!(v["buffer_size"], 64 * 1024, "{v}");
    assert_eq!(v["messages_per_producer"], per_producer, "{v}");
    let total = 3 * per_producer;
    assert_eq!(v["messages"], total, "{v}");
    check_figures(&v["mpsc"], 3, total, 8);
    check_figures(&v["peers"]["unix_datagram"], 3, total, 8);
    check_figures(&v["peers"]["spsc"], 1, total, 8);
    let rate = |f: &serde_json::Value| f["messages_per_sec"].as_f64().unwrap();
    let p50 = |f: &serde_json::Value| f["latency_ns"]["p50"].as_f64().unwrap();
    let (mpsc, dgram, spsc) = (
        &v["mpsc"],
        &v["peers"]["unix_datagram"],
        &v["peers"]["spsc"],
    );
    let close = |field: &str, want: f64| {
        let got = v[field].as_f64().unwrap_or_else(|| panic!("{field}: {v}"));
        assert!((got / want - 1.0).abs() < 1e-9, "{field}: {v}");
    };
    close("ratio_vs_unix_datagram", rate(mpsc) / rate(dgram));
    close("ratio_vs_spsc", rate(mpsc) / rate(spsc));
    close("latency_p50_vs_unix_datagram", p50(mpsc) / p50(dgram));
    close("latency_p50_vs_spsc", p50(mpsc) / p50(spsc));
}

#[test]
fn the_human_table_names_every_transport() {
    let (out, left) = run(&[
        "bench",
        "--mode",
        "mpsc",
        "--producers",
        "2",
        "--iterations",
        "1000",
        "--buffer-size",
        "64KiB",
    ]);
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(left.is_empty(), "segments left: {left:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "mpsc ring (2 procs)",
        "spsc ring (1 proc)",
        "unix dgram (2 procs)",
        "mpsc vs unix dgram",
        "every message checked: 2000",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}

#[test]
fn producer_counts_outside_1_to_64_are_refused() {
    for k in ["0", "65"] {
        let (out, _) = run(&["bench", "--mode", "mpsc", "--producers", k]);
        assert_error_line(&out, 2, "ringproof: ", "--producers");
        assert!(out.stdout.is_empty());
    }
    let (out, _) = run(&["bench", "--producers", "3"]);
    assert_error_line(&out, 2, "ringproof: ", "--mode mpsc");
    let (out, _) = run(&["bench", "--mode", "mpsc", "--message-size", "4B"]);
    assert_error_line(&out, 2, "ringproof: ", "at least 8 bytes");
    let (out, _) = run(&["bench", "--mode", "mpsc", "--batch", "4"]);
    assert_error_line(&out, 2, "ringproof: ", "--batch");
}
