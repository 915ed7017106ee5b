//! The throughput regression gate (`ci/bench-gate` builds and runs this).
//!
//! For a fixed set of cross-process cases it measures ringproof and the pipe
//! peer in the same run, alternating short runs (about 10 ms each)
//! `BENCH_GATE_REPEAT` times each (default 20), keeps the best rate of each
//! side, and computes `ratio = ringproof / pipe`. A case is below the bar
//! when its ratio is more than `BENCH_GATE_TOLERANCE` percent (default 25)
//! under the ratio recorded in the baseline file; such a case is measured
//! again, up to `BENCH_GATE_ROUNDS` rounds in all (default 4) while the run is
//! younger than `BENCH_GATE_BUDGET` seconds (default 90), and fails only
//! if no round reaches the bar: noise from other processes only ever slows a
//! run, while a real regression fails every round. Ratios, not absolute
//! rates, so that a slower or busier machine moves both sides together.
//!
//! Usage: `bench-gate BASELINE.json [--update]`. With `--update` (or
//! `BENCH_GATE_UPDATE=1`) the measured ratios are written to the baseline
//! instead of being checked. Exit status: 0 pass, 1 a ratio regressed,
//! 2 invalid input or a failed measurement.

use std::process::ExitCode;

use ringproof_benches::{Api, BenchError, Throughput, Transfer, ring, stream};

/// One gate case: a transfer for the ring and one for the pipe.
struct Case {
    name: &'static str,
    ring: Transfer,
    pipe: Transfer,
}

const RING: u64 = 1 << 20;

fn cases() -> Vec<Case> {
    let case = |name, size, api, ring_messages, pipe_messages| Case {
        name,
        ring: Transfer::new(size, RING, ring_messages).with_api(api),
        pipe: Transfer::new(size, RING, pipe_messages).with_api(api),
    };
    // Counts chosen so that one run takes about 10 ms on an idle machine:
    // short runs make it likely that some runs fall in a quiet moment.
    vec![
        case("8B-single", 8, Api::Single, 300_000, 20_000),
        case("8B-batch64", 8, Api::Batch(64), 600_000, 600_000),
        case("1KiB-single", 1024, Api::Single, 30_000, 10_000),
        case("64KiB-single", 64 * 1024, Api::Single, 800, 300),
    ]
}

fn env_number(name: &str, default: f64) -> Result<f64, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("{name}={text:?} is not a non-negative number")),
    }
}

fn best(
    runs: u32,
    measure: impl Fn(&Transfer) -> Result<Throughput, BenchError>,
    cfg: &Transfer,
    best: &mut f64,
) -> Result<(), BenchError> {
    for _ in 0..runs {
        let rate = measure(cfg)?.messages_per_sec();
        if rate > *best {
            *best = rate;
        }
    }
    Ok(())
}

fn read_baseline(path: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{path} is not valid JSON: {e}"))?;
    match value.get("ratios") {
        Some(serde_json::Value::Object(map)) => Ok(map.clone()),
        _ => Err(format!("{path} has no \"ratios\" object")),
    }
}

fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2} M/s", rate / 1e6)
    } else {
        format!("{:.1} k/s", rate / 1e3)
    }
}

fn run() -> Result<bool, String> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut update = std::env::var("BENCH_GATE_UPDATE").is_ok_and(|v| v == "1");
    for arg in args.by_ref() {
        match arg.as_str() {
            "--update" => update = true,
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => path = Some(other.to_string()),
        }
    }
    let path = path.ok_or("usage: bench-gate BASELINE.json [--update]")?;
    let tolerance = env_number("BENCH_GATE_TOLERANCE", 25.0)?;
    let repeat = env_number("BENCH_GATE_REPEAT", 20.0)?.max(1.0) as u32;
    let rounds = env_number("BENCH_GATE_ROUNDS", 4.0)?.max(1.0) as u32;
    let budget = std::time::Duration::from_secs_f64(env_number("BENCH_GATE_BUDGET", 90.0)?);
    let started = std::time::Instant::now();
    let baseline = if update {
        serde_json::Map::new()
    } else {
        read_baseline(&path)?
    };

    println!(
        "bench-gate: best of {repeat}, ratio = ringproof / pipe (messages/s), tolerance {tolerance}%"
    );
    println!(
        "{:<14} {:>12} {:>12} {:>8} {:>9} {:>9} {:>6}  result",
        "case", "ringproof", "pipe", "ratio", "baseline", "minimum", "rounds"
    );
    let mut measured = serde_json::Map::new();
    let mut pass = true;
    for case in cases() {
        let expected = baseline.get(case.name).and_then(serde_json::Value::as_f64);
        let minimum = expected.map(|base| base * (1.0 - tolerance / 100.0));
        let (mut ring_best, mut pipe_best) = (0.0f64, 0.0f64);
        let mut round = 0;
        let ratio = loop {
            round += 1;
            // Alternate the two so that a burst of noise hits both.
            for _ in 0..repeat {
                best(1, ring::cross_process, &case.ring, &mut ring_best)
                    .map_err(|e| format!("{}: ringproof: {e}", case.name))?;
                best(1, stream::pipe, &case.pipe, &mut pipe_best)
                    .map_err(|e| format!("{}: pipe: {e}", case.name))?;
            }
            let ratio = ring_best / pipe_best.max(1e-9);
            match minimum {
                Some(minimum)
                    if !update
                        && ratio < minimum
                        && round < rounds
                        && started.elapsed() < budget => {}
                _ => break ratio,
            }
        };
        let rounded = (ratio * 100.0).floor() / 100.0;
        measured.insert(case.name.to_string(), serde_json::json!(rounded));
        let (base, minimum, verdict) = match (expected, minimum) {
            _ if update => ("-".to_string(), "-".to_string(), "recorded"),
            (Some(base), Some(minimum)) => {
                let verdict = if ratio >= minimum {
                    "ok"
                } else {
                    pass = false;
                    "FAIL"
                };
                (format!("{base:.2}"), format!("{minimum:.2}"), verdict)
            }
            _ => {
                pass = false;
                ("-".to_string(), "-".to_string(), "FAIL (no baseline)")
            }
        };
        println!(
            "{:<14} {:>12} {:>12} {:>8.2} {:>9} {:>9} {:>6}  {verdict}",
            case.name,
            human(ring_best),
            human(pipe_best),
            ratio,
            base,
            minimum,
            round
        );
    }
    if update {
        let document = serde_json::json!({
            "about": "ringproof / pipe messages-per-second ratios for ci/bench-gate; see benches/README.md",
            "ratios": measured,
        });
        let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())?;
        std::fs::write(&path, text + "\n").map_err(|e| format!("cannot write {path}: {e}"))?;
        println!("bench-gate: wrote {path}");
    }
    Ok(pass)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => {
            println!("bench-gate: pass");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("bench-gate: FAIL: a ratio fell more than the tolerance below the baseline");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("bench-gate: {e}");
            ExitCode::from(2)
        }
    }
}
