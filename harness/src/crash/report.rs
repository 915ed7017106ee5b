//! What an experiment found: [`CrashReport`], one [`PointRow`] per crash
//! point, the table `ringproof crash` prints, and [`Progress`].

use std::time::Instant;

use serde::Serialize;

use super::CrashConfig;

/// One row of the report: a crash point (points mode) or the random run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PointRow {
    /// Crash point name, or `random`.
    pub point: String,
    /// `producer` or `consumer` (`both` for a random run killing both).
    pub role: String,
    /// Runs (points mode: one per k, the last one completes).
    pub runs: u64,
    /// Crossings of the point in a run that is not killed (points mode).
    pub crossings: u64,
    /// Processes killed.
    pub kills: u64,
    /// Messages committed, summed over runs.
    pub committed: u64,
    /// Distinct messages delivered, summed over runs.
    pub delivered: u64,
    /// Committed messages never delivered.
    pub lost: u64,
    /// Deliveries whose length, payload or checksum was wrong.
    pub torn: u64,
    /// Deliveries of a message delivered before (within a dead consumer's
    /// unreleased batch unless counted in the report's `duplicates_outside_batch`).
    pub duplicates: u64,
    /// Kills that fell between a commit (release) store and its record:
    /// settled from `tail` (`head`).
    pub in_doubt: u64,
    /// Kills that came before the victim held its role (random mode: a
    /// kill right after a restart).
    pub before_attach: u64,
}

/// The result of an experiment.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CrashReport {
    /// `producer`, `consumer` or `both`.
    pub role: String,
    /// `points` or `random`.
    pub mode: String,
    /// Crash points exercised (points mode).
    pub crash_points: Vec<&'static str>,
    /// Points mode: points whose k reached `max_k` before a run completed.
    pub capped_points: Vec<&'static str>,
    /// Runs (each a fresh segment and stream).
    pub runs: u64,
    /// Processes killed.
    pub kills: u64,
    /// Of which producers.
    pub producer_kills: u64,
    /// Of which consumers.
    pub consumer_kills: u64,
    /// Messages committed.
    pub committed: u64,
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Committed messages never delivered.
    pub lost: u64,
    /// Torn deliveries.
    pub torn: u64,
    /// Deliveries of a message delivered before.
    pub duplicates: u64,
    /// Duplicates not explained by a dead consumer's unreleased batch.
    pub duplicates_outside_batch: u64,
    /// A consumer skipped or reordered messages.
    pub order_violations: u64,
    /// A message was delivered that its producer had not committed (or from
    /// the wrong producer).
    pub uncommitted_delivered: u64,
    /// A dead side's role was still held after its death.
    pub leases_not_released: u64,
    /// A successor saw no generation bump.
    pub generations_not_bumped: u64,
    /// A finished segment was not reported stale, closed and drained.
    pub stale_not_detected: u64,
    /// Children that failed (error exit, panic, unexpected signal, hang).
    pub child_failures: u64,
    /// Segments of this experiment left in `/dev/shm`.
    pub leaked_segments: u64,
    /// Children not reaped.
    pub leaked_processes: u64,
    /// MPSC: runs whose consumer did not finish before the deadline (stuck
    /// behind a dead producer's claim, say).
    pub stuck: u64,
    /// MPSC: producer processes per run.
    pub producers: u64,
    /// MPSC: producer kills with the consumer waiting on the victim's
    /// claim, whose time from `SIGKILL` to the consumer passing the claim
    /// was measured.
    pub unblock_samples: u64,
    /// MPSC: median of those times, in microseconds.
    pub unblock_median_us: u64,
    /// MPSC: the longest of those times, in microseconds.
    pub unblock_max_us: u64,
    /// Wall-clock time in milliseconds.
    pub elapsed_ms: u64,
    /// Random mode: the seed.
    pub seed: u64,
    /// One row per crash point (or one for the random run).
    pub points: Vec<PointRow>,
    /// The first violations, in words.
    pub violations: Vec<String>,
    /// Every check held.
    pub passed: bool,
}

impl CrashReport {
    pub(super) fn new(cfg: &CrashConfig) -> Self {
        CrashReport {
            role: enum_name(cfg.role),
            mode: enum_name(cfg.mode),
            seed: cfg.seed,
            ..CrashReport::default()
        }
    }

    pub(super) fn violation(&mut self, text: String) {
        if self.violations.len() < 20 {
            self.violations.push(text);
        }
    }

    pub(super) fn finish(&mut self, started: Instant) {
        self.elapsed_ms = started.elapsed().as_millis() as u64;
        self.kills = self.producer_kills + self.consumer_kills;
        self.passed = self.lost == 0
            && self.torn == 0
            && self.duplicates_outside_batch == 0
            && self.order_violations == 0
            && self.uncommitted_delivered == 0
            && self.leases_not_released == 0
            && self.generations_not_bumped == 0
            && self.stale_not_detected == 0
            && self.child_failures == 0
            && self.leaked_segments == 0
            && self.leaked_processes == 0
            && self.stuck == 0
            && self.violations.is_empty()
            && self.runs > 0;
    }

    /// The table printed by `ringproof crash`.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<16} {:<9} {:>6} {:>6} {:>10} {:>10} {:>5} {:>5} {:>5} {:>8}\n",
            "crash point",
            "role",
            "kills",
            "runs",
            "committed",
            "delivered",
            "lost",
            "torn",
            "dups",
            "in-doubt"
        );
        for row in &self.points {
            out.push_str(&format!(
                "{:<16} {:<9} {:>6} {:>6} {:>10} {:>10} {:>5} {:>5} {:>5} {:>8}\n",
                row.point,
                row.role,
                row.kills,
                row.runs,
                row.committed,
                row.delivered,
                row.lost,
                row.torn,
                row.duplicates,
                row.in_doubt
            ));
        }
        out.push_str(&format!(
            "{:<16} {:<9} {:>6} {:>6} {:>10} {:>10} {:>5} {:>5} {:>5}\n",
            "total",
            self.role,
            self.kills,
            self.runs,
            self.committed,
            self.delivered,
            self.lost,
            self.torn,
            self.duplicates
        ));
        out.push_str(&format!(
            "duplicates outside a dead consumer's unreleased batch: {}; order violations: {}; \
             uncommitted delivered: {}; leases not released: {}; generations not bumped: {}; \
             stale not detected: {}; child failures: {}; leaked segments: {}; leaked processes: {}\n",
            self.duplicates_outside_batch,
            self.order_violations,
            self.uncommitted_delivered,
            self.leases_not_released,
            self.generations_not_bumped,
            self.stale_not_detected,
            self.child_failures,
            self.leaked_segments,
            self.leaked_processes
        ));
        if self.mode == "mpsc" {
            out.push_str(&format!(
                "producers: {}; stuck runs: {}; SIGKILL to the consumer passing the dead claim: \
                 median {} us, max {} us over {} kills\n",
                self.producers,
                self.stuck,
                self.unblock_median_us,
                self.unblock_max_us,
                self.unblock_samples
            ));
            out.push_str(
                "in-doubt: producer kills between reserve and the record of the commit \
                 (delivered at most once), or consumer kills around a release\n",
            );
        } else {
            out.push_str(
                "in-doubt: kills between a commit (release) store and its record, settled from tail (head)\n",
            );
        }
        let early: u64 = self.points.iter().map(|r| r.before_attach).sum();
        if early != 0 {
            out.push_str(&format!(
                "kills before the victim held its role (right after a restart): {early}\n"
            ));
        }
        if !self.capped_points.is_empty() {
            out.push_str(&format!(
                "k capped before a run completed at: {}\n",
                self.capped_points.join(", ")
            ));
        }
        for v in &self.violations {
            out.push_str(&format!("violation: {v}\n"));
        }
        out.push_str(&format!(
            "{} in {:.1} s: {}\n",
            self.mode,
            self.elapsed_ms as f64 / 1000.0,
            if self.passed { "PASSED" } else { "FAILED" }
        ));
        out
    }
}

pub(super) fn enum_name<T: clap::ValueEnum>(value: T) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// How far an experiment is, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Steps done (runs in points mode, kills in random mode).
    pub done: u64,
    /// Steps in all.
    pub total: u64,
}
