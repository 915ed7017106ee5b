//! `ringproof crash`: the command line over [`run_experiment`], with a
//! progress bar on a terminal and the exit-code contract of `exit.rs`.

use std::io::IsTerminal;

use crate::exit::CliError;

use super::report::enum_name;
use super::{CrashConfig, CrashError, ModeArg, RoleArg, run_experiment};

/// `ringproof crash`: kill real producer and consumer processes at every
/// crash point (or at random) and check that nothing committed is lost or torn.
#[derive(Debug, clap::Args)]
pub struct CrashArgs {
    /// Side to kill.
    #[arg(long, value_enum, default_value_t = RoleArg::Both)]
    pub role: RoleArg,
    /// `points`: at the k-th crossing of each crash point, for every k;
    /// `random`: from outside at random moments; `mpsc`: the MPSC ring
    /// (several producers, one consumer): every point × k, then a random soak.
    #[arg(long, value_enum, default_value_t = ModeArg::Points)]
    pub mode: ModeArg,
    /// Random and MPSC modes: number of random kills [default: 1000, or RINGPROOF_CRASH_KILLS].
    #[arg(long)]
    pub kills: Option<u64>,
    /// Points mode: messages per run; MPSC: per producer [default: 128, or RINGPROOF_CRASH_MESSAGES].
    #[arg(long)]
    pub messages: Option<u64>,
    /// Ring size in bytes, a power of two from 512 [default: 512, or RINGPROOF_CRASH_CAPACITY].
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Points mode: largest k per crash point [default: 10000, or RINGPROOF_CRASH_MAX_K].
    #[arg(long)]
    pub max_k: Option<u64>,
    /// Random mode: seed of the kill schedule [default: from the clock, or RINGPROOF_CRASH_SEED].
    #[arg(long)]
    pub seed: Option<u64>,
    /// MPSC mode: producer processes [default: 3, or RINGPROOF_CRASH_PRODUCERS].
    #[arg(long)]
    pub producers: Option<u64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ringproof crash`: prints the table (or, with `--json`, one JSON
/// object) on stdout. Exit 0 when every check held; 1 when one failed; 2 when
/// the experiment could not run (bad argument, no shared memory).
pub fn run(args: &CrashArgs) -> Result<(), CliError> {
    let mut cfg = CrashConfig::from_env(args.role, args.mode).map_err(to_cli)?;
    cfg.kills = args.kills.unwrap_or(cfg.kills);
    cfg.messages = args.messages.unwrap_or(cfg.messages);
    cfg.capacity = args.capacity.unwrap_or(cfg.capacity);
    cfg.max_k = args.max_k.unwrap_or(cfg.max_k);
    cfg.seed = args.seed.unwrap_or(cfg.seed);
    cfg.producers = args.producers.unwrap_or(cfg.producers);
    // A bar only on a terminal; indicatif draws from this thread (no steady
    // tick), so the driver stays single-threaded.
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:40}] {pos}/{len} {elapsed_precise}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("crash {}", enum_name(cfg.mode)));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let result = run_experiment(&cfg, &mut |p| {
        bar.set_length(p.total);
        bar.set_position(p.done);
    });
    bar.finish_and_clear();
    let report = result.map_err(to_cli)?;
    if args.json {
        let text = serde_json::to_string(&report)
            .map_err(|e| CliError::unexpected(format!("crash report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", report.table());
    }
    if report.passed {
        Ok(())
    } else {
        Err(CliError::unexpected(format!(
            "crash experiment failed: {}",
            report
                .violations
                .first()
                .map_or("see the report", String::as_str)
        )))
    }
}

fn to_cli(e: CrashError) -> CliError {
    match e {
        CrashError::Config(_) | CrashError::Shm(_) => CliError::invalid(e.to_string()),
        CrashError::Threads(_) | CrashError::Os(..) => CliError::unexpected(e.to_string()),
    }
}
