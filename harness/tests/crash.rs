//! Crash injection through the library: every crash point of both roles, then
//! random kills of both, with real processes and `SIGKILL`.
//!
//! A `harness = false` test: the experiment forks, and a process must have a
//! single thread when it forks, which libtest's runner does not give. Counts
//! come from `RINGPROOF_CRASH_{MESSAGES,KILLS,MAX_K,CAPACITY,SEED}`; the
//! random part defaults to 200 kills here (`ci/crash` runs 1,000). The MPSC
//! matrix runs 3 producers of 8 messages and a soak of 100 kills.

use ringproof_harness::crash::{CrashConfig, CrashReport, ModeArg, RoleArg, run_experiment};

fn experiment(role: RoleArg, mode: ModeArg, kills: u64) -> (CrashConfig, CrashReport) {
    let mut cfg = CrashConfig::from_env(role, mode).expect("crash configuration");
    if std::env::var_os("RINGPROOF_CRASH_KILLS").is_none() {
        cfg.kills = kills;
    }
    let report = run_experiment(&cfg, &mut |_| {}).expect("crash experiment runs");
    print!("{}", report.table());
    (cfg, report)
}

fn assert_clean(what: &str, report: &CrashReport) {
    assert!(report.passed, "{what}: {:#?}", report.violations);
    assert_eq!(report.lost, 0, "{what}: lost messages");
    assert_eq!(report.torn, 0, "{what}: torn messages");
    assert_eq!(report.duplicates_outside_batch, 0, "{what}: duplicates");
    assert_eq!(report.leaked_segments, 0, "{what}: leaked segments");
    assert_eq!(report.leaked_processes, 0, "{what}: unreaped children");
    assert!(report.committed > 0, "{what}: nothing was sent");
}

fn enumeration_covers_every_crash_point_of_both_roles() {
    let (_, report) = experiment(RoleArg::Both, ModeArg::Points, 0);
    assert_clean("points", &report);
    let all = ringproof::sync::CrashPoint::ALL;
    assert_eq!(report.crash_points.len(), all.len());
    for point in all {
        let row = report
            .points
            .iter()
            .find(|r| r.point == point.name())
            .unwrap_or_else(|| panic!("no row for {}", point.name()));
        // Each point is reached at every crossing, then a run completes.
        assert!(row.crossings > 0, "{} is never crossed", point.name());
        assert_eq!(row.kills, row.crossings, "{}", point.name());
        assert_eq!(row.runs, row.kills + 1, "{}", point.name());
    }
    assert!(report.capped_points.is_empty());
    // Some kills fell between a commit (release) store and its record, and
    // some consumer deaths left a batch to deliver again.
    assert!(report.points.iter().any(|r| r.in_doubt > 0));
    assert!(report.duplicates > 0);
}

fn random_kills_of_both_roles_lose_nothing() {
    let (cfg, report) = experiment(RoleArg::Both, ModeArg::Random, 200);
    assert_clean("random", &report);
    assert!(report.kills >= cfg.kills);
    assert!(report.producer_kills > 0 && report.consumer_kills > 0);
}

/// A small MPSC matrix: 3 producers of 8 messages each, every MPSC crash
/// point at every k (producer 0 among live ones, the closer, the
/// consumer), then a soak of 100 kills (or `RINGPROOF_CRASH_KILLS`).
fn mpsc_matrix_and_soak_lose_nothing() {
    let mut cfg = CrashConfig::from_env(RoleArg::Both, ModeArg::Mpsc).expect("crash configuration");
    if std::env::var_os("RINGPROOF_CRASH_MESSAGES").is_none() {
        cfg.messages = 8;
    }
    if std::env::var_os("RINGPROOF_CRASH_KILLS").is_none() {
        cfg.kills = 100;
    }
    let report = run_experiment(&cfg, &mut |_| {}).expect("mpsc crash experiment runs");
    print!("{}", report.table());
    assert_clean("mpsc", &report);
    assert_eq!(
        report.stuck, 0,
        "mpsc: a consumer stuck behind a dead producer"
    );
    assert_eq!(report.uncommitted_delivered, 0);
    let points = ringproof_harness::crash::MPSC_POINTS;
    assert_eq!(report.crash_points.len(), points.len());
    for point in points {
        let row = report
            .points
            .iter()
            .find(|r| r.point == point.name())
            .unwrap_or_else(|| panic!("no row for {}", point.name()));
        assert!(row.kills > 0, "{} never reached", point.name());
        assert_eq!(
            row.runs,
            row.kills + 1,
            "{}: one run per k, then one completes",
            point.name()
        );
    }
    assert!(report.producer_kills > 0 && report.consumer_kills > 0);
    assert!(report.kills >= cfg.kills);
    assert!(
        report.unblock_samples > 0,
        "no SIGKILL-to-unblock time measured"
    );
}

/// `ringproof crash --mode mpsc`: exit 0 and a passed JSON report; a bad
/// `--producers` is exit 2.
fn mpsc_cli_reports_and_exits() {
    let bin = env!("CARGO_BIN_EXE_ringproof");
    let out = std::process::Command::new(bin)
        .args(["crash", "--mode", "mpsc", "--producers", "4"])
        .args(["--messages", "4", "--kills", "20", "--json"])
        .output()
        .expect("run ringproof crash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mpsc cli: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for field in [
        "\"passed\":true",
        "\"mode\":\"mpsc\"",
        "\"producers\":4",
        "\"unblock_median_us\"",
    ] {
        assert!(text.contains(field), "{field} missing from {text}");
    }
    let bad = std::process::Command::new(bin)
        .args(["crash", "--mode", "mpsc", "--producers", "1"])
        .output()
        .expect("run ringproof crash");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "one producer is not an MPSC experiment"
    );
}

fn segments_left() -> usize {
    let prefix = format!("ringproof-crash-{}-", std::process::id());
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count()
        })
        .unwrap_or(0)
}

fn main() {
    // This binary is one test named `crash`: honour `--list`, `--ignored`
    // (it is not ignored) and name filters as libtest would.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("crash: test");
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if args.iter().any(|a| a == "--ignored")
        || (!filters.is_empty() && !filters.iter().any(|f| "crash".contains(f.as_str())))
    {
        println!("test result: ok. 0 passed; 0 failed; 1 filtered out");
        return;
    }
    enumeration_covers_every_crash_point_of_both_roles();
    random_kills_of_both_roles_lose_nothing();
    mpsc_matrix_and_soak_lose_nothing();
    mpsc_cli_reports_and_exits();
    assert_eq!(segments_left(), 0, "segments left in /dev/shm");
    println!("test crash ... ok");
}
