//! Crash injection for the MPSC ring (`ringproof crash --mode mpsc`): several
//! producer processes, each with its own id and numbered, checksummed
//! stream, into one consumer process, over the real segment and its slot
//! leases, with the crash hook ([`CrashMpsc`](super::CrashMpsc)).
//!
//! - **points**: for each MPSC crash point and k = 1, 2, … (until a run does
//!   not reach the k-th crossing, or `max_k`): producer 0 of
//!   `cfg.producers` live ones (or the consumer, or the closer for
//!   `before-close`) is `SIGKILL`ed at its k-th crossing and restarted; the
//!   others run on.
//! - **soak**: producers and the consumer killed from outside at random
//!   moments, `cfg.kills` times; a producer is restarted on the slot its
//!   predecessor's death freed (the slot's generation bumps), a consumer
//!   resumes at the last released position. Some producers also leave a
//!   claim open on purpose ([`Grant::abandon`](ringproof::mpsc::Grant::abandon)).
//!
//! Each producer id records its commits in its own log (its "disk") on the
//! side page: the sequence number it is about to send *before* the
//! reserve, the next one *after* the commit. A producer killed in between
//! leaves that message in doubt: delivered at most once, or not at all
//! (points mode knows better: killed at `after-commit` it was committed,
//! before it not). A restarted producer resumes past it. When every
//! producer is done a closer process closes the stream; the run passes when
//! the consumer reads the end of stream before the deadline (nothing stuck
//! behind a dead producer's claim) and [`check::check`] finds nothing lost,
//! torn, uncommitted, out of order or repeated outside a dead consumer's
//! unreleased batch.
//!
//! The consumer records when it starts waiting on a live claim of a slot and
//! when it gets past it; a producer kill that falls inside such a wait on
//! the victim's slot gives the time from `SIGKILL` to the consumer passing
//! the dead claim.

pub mod check;
mod child;
mod side;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use ringproof::shm;
use ringproof::sync::CrashPoint;

use super::hook::{monotonic_ns, point_index};
use super::message::splitmix;
use super::process::{End, describe, kill_and_reap, spawn, try_wait};
use super::run::name_prefix;
use super::side::SidePage;
use super::{CrashConfig, CrashError, CrashReport, EXIT_OK, MAX_KILL_DELAY_US, PointRow, Progress};
use check::{Delivered, Evidence, ProducerFacts, check};
use child::{EXIT_ABANDONED, Spec};
use side::MpscSide;

/// Default producer processes (`RINGPROOF_CRASH_PRODUCERS`).
pub const DEFAULT_PRODUCERS: u64 = 3;
/// Most producer processes.
pub const MAX_PRODUCERS: usize = 8;
/// The crash points the MPSC protocol crosses.
pub const MPSC_POINTS: [CrashPoint; 8] = [
    CrashPoint::AfterReserve,
    CrashPoint::MidPayload,
    CrashPoint::BeforeCommit,
    CrashPoint::AfterCommit,
    CrashPoint::BeforeClose,
    CrashPoint::AfterRead,
    CrashPoint::BeforeRelease,
    CrashPoint::AfterRelease,
];
/// Soak: kills per run (a fresh segment after that many).
const SOAK_KILLS_PER_RUN: u64 = 250;
/// How long one run may take before it counts as stuck.
const DEADLINE: Duration = Duration::from_secs(60);
/// The driver's poll of its children.
const POLL: Duration = Duration::from_micros(200);
/// Longest read or batch of the consumer.
const MAX_BATCH: usize = super::MAX_BATCH as usize;

fn relaxed_load(word: &AtomicU64) -> u64 {
    // Relaxed: the driver reads a child's words after `waitpid` (or before
    // any child of that role runs); see `side.rs`.
    word.load(Ordering::Relaxed)
}

fn relaxed_store(word: &AtomicU64, value: u64) {
    // Relaxed: the driver writes before the next `fork`, which orders it.
    word.store(value, Ordering::Relaxed);
}

/// Which child a crash point arms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    Producer,
    Closer,
    Consumer,
}

fn victim_of(point: CrashPoint) -> Victim {
    match point {
        CrashPoint::BeforeClose => Victim::Closer,
        p if p.is_producer() => Victim::Producer,
        _ => Victim::Consumer,
    }
}

/// Runs the MPSC experiment: points for the role(s) of `cfg`, then the soak.
pub(super) fn run_mpsc(
    cfg: &CrashConfig,
    report: &mut CrashReport,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), CrashError> {
    let page = SidePage::<MpscSide>::new()?;
    report.producers = cfg.producers;
    let mut samples = Vec::new();
    let points: Vec<CrashPoint> = MPSC_POINTS
        .iter()
        .copied()
        .filter(|p| {
            let role = if p.is_producer() {
                shm::Role::Producer
            } else {
                shm::Role::Consumer
            };
            cfg.role.kills(role)
        })
        .collect();
    // A census run: how often each point is crossed (for the progress bar;
    // with several producers the counts vary from run to run).
    let mut census_row = PointRow::default();
    let census = Run::new(cfg, &page, None).drive(report, &mut census_row, &mut samples)?;
    let estimate = |p: CrashPoint| census.crossings[point_index(p)].min(cfg.max_k) + 1;
    let total = points.iter().map(|p| estimate(*p)).sum::<u64>() + cfg.kills;
    let mut done = 0;
    for point in points {
        report.crash_points.push(point.name());
        let mut row = PointRow {
            point: point.name().to_string(),
            role: match victim_of(point) {
                Victim::Consumer => "consumer",
                _ => "producer",
            }
            .to_string(),
            crossings: census.crossings[point_index(point)],
            ..PointRow::default()
        };
        let mut k = 1;
        loop {
            let out =
                Run::new(cfg, &page, Some((point, k))).drive(report, &mut row, &mut samples)?;
            done += 1;
            progress(Progress {
                done: done.min(total),
                total,
            });
            if !out.reached {
                break;
            }
            if k == cfg.max_k {
                report.capped_points.push(point.name());
                break;
            }
            k += 1;
        }
        report.points.push(row);
    }
    if cfg.kills > 0 {
        let mut row = PointRow {
            point: "soak".into(),
            role: super::report::enum_name(cfg.role),
            ..PointRow::default()
        };
        let mut soak = Soak {
            rng: cfg.seed,
            left: cfg.kills,
            in_run: 0,
            next_at: Instant::now(),
            roles: cfg.role,
        };
        while soak.left > 0 {
            soak.in_run = 0;
            let before = soak.left;
            let mut run = Run::new(cfg, &page, None);
            run.soak = Some(&mut soak);
            run.drive(report, &mut row, &mut samples)?;
            done += before - soak.left;
            progress(Progress {
                done: done.min(total),
                total,
            });
            if before == soak.left {
                break; // the run failed before killing anything
            }
        }
        report.points.push(row);
    }
    samples.sort_unstable();
    report.unblock_samples = samples.len() as u64;
    report.unblock_median_us = samples.get(samples.len() / 2).copied().unwrap_or(0);
    report.unblock_max_us = samples.last().copied().unwrap_or(0);
    Ok(())
}

/// The random kills of the soak.
#[derive(Debug)]
struct Soak {
    rng: u64,
    left: u64,
    in_run: u64,
    next_at: Instant,
    roles: super::RoleArg,
}

impl Soak {
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(1);
        splitmix(self.rng)
    }
}

/// What a run found beyond its row.
struct Outcome {
    /// The armed point was reached (its child was killed there).
    reached: bool,
    /// Crossings per point (producer 0, consumer, closer of the run).
    crossings: [u64; CrashPoint::ALL.len()],
}

/// A child slot of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Running(Pid),
    Done,
}

/// One run: a fresh segment, `cfg.producers` producers, one consumer, then a closer.
struct Run<'a> {
    cfg: &'a CrashConfig,
    side: &'a MpscSide,
    name: String,
    arm: Option<(CrashPoint, u64)>,
    soak: Option<&'a mut Soak>,
    producers: Vec<Option<Slot>>,
    /// Whether producer 0's current incarnation is the armed one.
    armed_live: bool,
    consumer: Option<Slot>,
    consumer_armed: bool,
    closer: Option<Slot>,
    closer_armed: bool,
    facts: Vec<ProducerFacts>,
    unreleased: Vec<Range<usize>>,
    consumer_incarnation: u64,
    producer_starts: u64,
    /// Producer and closer starts known to have bumped their slot's generation.
    claims: u64,
    /// Closer starts.
    closer_starts: u64,
    /// (slot, monotonic ns) of each producer `SIGKILL`.
    kill_stamps: Vec<(u64, u64)>,
    reached: bool,
    crossings: [u64; CrashPoint::ALL.len()],
    producer_kills: u64,
    consumer_kills: u64,
    in_doubt: u64,
    failures: Vec<String>,
}

static RUNS: AtomicU64 = AtomicU64::new(0);

impl<'a> Run<'a> {
    fn new(
        cfg: &'a CrashConfig,
        page: &'a SidePage<MpscSide>,
        arm: Option<(CrashPoint, u64)>,
    ) -> Self {
        // Relaxed: a counter of this (single) thread.
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        Run {
            cfg,
            side: page.side(),
            name: format!("{}mpsc-{n}", name_prefix()),
            arm,
            soak: None,
            producers: vec![None; cfg.producers as usize],
            armed_live: false,
            consumer: None,
            consumer_armed: false,
            closer: None,
            closer_armed: false,
            facts: vec![ProducerFacts::default(); cfg.producers as usize],
            unreleased: Vec::new(),
            consumer_incarnation: 0,
            producer_starts: 0,
            claims: 0,
            closer_starts: 0,
            kill_stamps: Vec::new(),
            reached: false,
            crossings: [0; CrashPoint::ALL.len()],
            producer_kills: 0,
            consumer_kills: 0,
            in_doubt: 0,
            failures: Vec::new(),
        }
    }

    fn spec(&self, arm: Option<(CrashPoint, u64)>) -> Spec {
        let soak = self.soak.is_some();
        Spec {
            name: self.name.clone(),
            capacity: self.cfg.capacity,
            slots: self.cfg.producers as u32 + 1,
            arm,
            end: if soak { u64::MAX } else { self.cfg.messages },
            soak,
            incarnation: 0,
        }
    }

    fn arm_for(&self, victim: Victim) -> Option<(CrashPoint, u64)> {
        self.arm.filter(|(p, _)| victim_of(*p) == victim)
    }

    fn reset_side(&self) {
        let s = self.side;
        for log in s.producers.iter().chain(std::iter::once(&s.closer)) {
            for w in [
                &log.next,
                &log.pending,
                &log.pending_start,
                &log.pending_end,
                &log.slot,
                &log.died_ns,
                &log.abandoned,
            ] {
                relaxed_store(w, 0);
            }
            log.crossings.iter().for_each(|c| relaxed_store(c, 0));
        }
        for w in [
            &s.consumer.released,
            &s.consumer.done,
            &s.consumer.blocked,
            &s.consumer.died_ns,
            &s.finish,
            &s.deliveries_len,
            &s.unblocks_len,
        ] {
            relaxed_store(w, 0);
        }
        s.consumer
            .crossings
            .iter()
            .for_each(|c| relaxed_store(c, 0));
    }

    fn spawn_producer(&mut self, id: usize, armed: bool) -> Result<(), CrashError> {
        let mut spec = self.spec(if armed {
            self.arm_for(Victim::Producer)
        } else {
            None
        });
        spec.incarnation = self.producer_starts;
        self.producer_starts += 1;
        let side = self.side;
        let log = &side.producers[id];
        let pid = spawn(|| child::producer(id as u64, &spec, log, side))?;
        self.producers[id] = Some(Slot::Running(pid));
        if id == 0 {
            self.armed_live = armed && spec.arm.is_some();
        }
        Ok(())
    }

    fn spawn_consumer(&mut self, armed: bool) -> Result<(), CrashError> {
        let mut spec = self.spec(if armed {
            self.arm_for(Victim::Consumer)
        } else {
            None
        });
        spec.incarnation = self.consumer_incarnation;
        self.consumer_armed = spec.arm.is_some();
        let side = self.side;
        let pid = spawn(|| child::consumer(&spec, side))?;
        self.consumer = Some(Slot::Running(pid));
        Ok(())
    }

    fn spawn_closer(&mut self, armed: bool) -> Result<(), CrashError> {
        let spec = self.spec(if armed {
            self.arm_for(Victim::Closer)
        } else {
            None
        });
        self.closer_armed = spec.arm.is_some();
        self.closer_starts += 1;
        let log = &self.side.closer;
        self.claims += u64::from(relaxed_load(&log.slot) != 0);
        relaxed_store(&log.slot, 0);
        let pid = spawn(|| child::closer(&spec, log))?;
        self.closer = Some(Slot::Running(pid));
        Ok(())
    }

    /// Settles producer `id`'s incarnation that ended as `end`: a commit in
    /// doubt, its kill time, its crossings; prepares its log for a successor.
    fn settle_producer(&mut self, id: usize, end: End, hook_point: Option<CrashPoint>) {
        let log = &self.side.producers[id];
        let mut next = relaxed_load(&log.next);
        if relaxed_load(&log.pending) == 1 {
            let range = relaxed_load(&log.pending_start)..relaxed_load(&log.pending_end);
            match hook_point {
                // Killed right after its commit store: committed.
                Some(CrashPoint::AfterCommit) => {}
                // Killed before it: never committed.
                Some(_) => self.facts[id].never.push(range.clone()),
                // Killed from outside: either.
                None => {
                    self.facts[id].maybe.push(range.clone());
                    self.in_doubt += 1;
                }
            }
            next = next.max(range.end);
        }
        self.facts[id].next = next;
        let slot = relaxed_load(&log.slot);
        let died = relaxed_load(&log.died_ns);
        self.claims += u64::from(slot != 0);
        if end == End::Killed && slot != 0 && died != 0 {
            self.kill_stamps.push((slot - 1, died));
        }
        if id == 0 && end == End::Exited(EXIT_OK) && self.arm.is_none() {
            for (i, c) in log.crossings.iter().enumerate() {
                self.crossings[i] += relaxed_load(c);
            }
        }
        relaxed_store(&log.next, next);
        relaxed_store(&log.pending, 0);
        relaxed_store(&log.slot, 0);
        relaxed_store(&log.died_ns, 0);
    }

    /// Settles a consumer that died: its deliveries not surely released
    /// may come again, from its successor.
    fn settle_consumer(&mut self) {
        let c = &self.side.consumer;
        let released = relaxed_load(&c.released) as usize;
        let len = relaxed_load(&self.side.deliveries_len) as usize;
        if len > released {
            self.unreleased.push(released..len);
        }
        relaxed_store(&c.released, len as u64);
        relaxed_store(&c.died_ns, 0);
        relaxed_store(&c.done, 0);
        relaxed_store(&c.blocked, 0);
        self.consumer_incarnation += 1;
    }

    fn fail(&mut self, what: String) {
        if self.failures.len() < 10 {
            self.failures.push(what);
        }
    }

    /// Polls the children once; returns whether the consumer finished.
    fn poll(&mut self) -> Result<bool, CrashError> {
        for id in 0..self.producers.len() {
            let Some(Slot::Running(pid)) = self.producers[id] else {
                continue;
            };
            let Some(end) = try_wait(pid) else { continue };
            let armed = id == 0 && self.armed_live;
            let hook_point = (armed && end == End::Killed)
                .then(|| self.arm.map(|(p, _)| p))
                .flatten();
            self.settle_producer(id, end, hook_point);
            match end {
                End::Exited(EXIT_OK) => self.producers[id] = Some(Slot::Done),
                End::Killed if armed => {
                    self.reached = true;
                    self.producer_kills += 1;
                    self.spawn_producer(id, false)?;
                }
                End::Exited(EXIT_ABANDONED) => self.spawn_producer(id, false)?,
                other => {
                    self.fail(format!("producer {id} {}", describe(other)));
                    self.producers[id] = Some(Slot::Done);
                }
            }
        }
        let all_done = self.producers.iter().all(|p| *p == Some(Slot::Done));
        if all_done && self.closer.is_none() {
            self.spawn_closer(true)?;
        }
        if let Some(Slot::Running(pid)) = self.closer
            && let Some(end) = try_wait(pid)
        {
            match end {
                End::Exited(EXIT_OK) => {
                    self.claims += u64::from(relaxed_load(&self.side.closer.slot) != 0);
                    self.closer = Some(Slot::Done);
                }
                End::Killed if self.closer_armed => {
                    self.reached = true;
                    self.producer_kills += 1;
                    self.spawn_closer(false)?;
                }
                other => {
                    self.fail(format!("closer {}", describe(other)));
                    self.closer = Some(Slot::Done);
                }
            }
        }
        if let Some(Slot::Running(pid)) = self.consumer
            && let Some(end) = try_wait(pid)
        {
            match end {
                End::Exited(EXIT_OK) if relaxed_load(&self.side.consumer.done) == 1 => {
                    self.consumer = Some(Slot::Done);
                    return Ok(true);
                }
                End::Killed if self.consumer_armed => {
                    self.reached = true;
                    self.consumer_kills += 1;
                    self.settle_consumer();
                    self.spawn_consumer(false)?;
                }
                other => {
                    self.fail(format!("consumer {}", describe(other)));
                    self.consumer = Some(Slot::Done);
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Soak: kills a random child when its time has come.
    fn soak_kill(&mut self) -> Result<(), CrashError> {
        let Some(soak) = self.soak.as_deref_mut() else {
            return Ok(());
        };
        if soak.left == 0 || soak.in_run >= SOAK_KILLS_PER_RUN {
            // Relaxed: a flag the producers poll; a late sighting costs a message.
            self.side.finish.store(1, Ordering::Relaxed);
            return Ok(());
        }
        if Instant::now() < soak.next_at {
            return Ok(());
        }
        let delay = soak.next() % MAX_KILL_DELAY_US;
        soak.next_at = Instant::now() + Duration::from_micros(delay);
        let pick = soak.next();
        let kill_consumer = match soak.roles {
            super::RoleArg::Producer => false,
            super::RoleArg::Consumer => true,
            super::RoleArg::Both => pick % 10 < 3,
        };
        if kill_consumer {
            if let Some(Slot::Running(pid)) = self.consumer {
                match kill_and_reap(pid) {
                    Some(End::Exited(EXIT_OK)) if relaxed_load(&self.side.consumer.done) == 1 => {
                        self.consumer = Some(Slot::Done);
                        return Ok(());
                    }
                    Some(End::Killed | End::Exited(EXIT_OK)) => {}
                    other => {
                        let what = other.map_or("vanished".into(), describe);
                        self.fail(format!("consumer {what}"));
                    }
                }
                self.consumer_kills += 1;
                self.counted_kill();
                self.settle_consumer();
                self.spawn_consumer(false)?;
            }
            return Ok(());
        }
        let id = (pick >> 8) as usize % self.producers.len();
        let Some(Slot::Running(pid)) = self.producers[id] else {
            return Ok(());
        };
        let log = &self.side.producers[id];
        // Written before the kill: the child never writes it in a soak.
        relaxed_store(&log.died_ns, monotonic_ns());
        let end = kill_and_reap(pid).unwrap_or(End::Hung);
        self.settle_producer(id, end, None);
        match end {
            End::Killed | End::Exited(EXIT_ABANDONED) => {
                if end == End::Killed {
                    self.producer_kills += 1;
                    self.counted_kill();
                }
                self.spawn_producer(id, false)?;
            }
            End::Exited(EXIT_OK) => self.producers[id] = Some(Slot::Done),
            other => {
                self.fail(format!("producer {id} {}", describe(other)));
                self.producers[id] = Some(Slot::Done);
            }
        }
        Ok(())
    }

    /// Counts a soak kill that landed on a live child.
    fn counted_kill(&mut self) {
        if let Some(soak) = self.soak.as_deref_mut() {
            soak.left = soak.left.saturating_sub(1);
            soak.in_run += 1;
        }
    }

    /// Kills every child still running; producers are settled like any
    /// killed from outside (their commit in doubt, if any, is in doubt).
    fn kill_all(&mut self) {
        for id in 0..self.producers.len() {
            if let Some(Slot::Running(pid)) = self.producers[id] {
                let end = kill_and_reap(pid).unwrap_or(End::Hung);
                self.settle_producer(id, end, None);
                self.producers[id] = Some(Slot::Done);
            }
        }
        for slot in [&mut self.consumer, &mut self.closer].into_iter().flatten() {
            if let Slot::Running(pid) = *slot {
                let _ = kill_and_reap(pid);
                *slot = Slot::Done;
            }
        }
    }

    /// Runs to the end, checks, and adds the results to `row` and `report`.
    fn drive(
        mut self,
        report: &mut CrashReport,
        row: &mut PointRow,
        samples: &mut Vec<u64>,
    ) -> Result<Outcome, CrashError> {
        self.reset_side();
        let deadline = Instant::now() + DEADLINE;
        let result = (|| {
            self.spawn_consumer(true)?;
            for id in 0..self.producers.len() {
                self.spawn_producer(id, id == 0)?;
            }
            loop {
                if self.poll()? {
                    return Ok(true);
                }
                self.soak_kill()?;
                if Instant::now() >= deadline {
                    return Ok(false);
                }
                std::thread::sleep(POLL);
            }
        })();
        let finished = match result {
            Ok(finished) => finished,
            Err(e) => {
                self.kill_all();
                let _ = shm::unlink(&self.name);
                return Err(e);
            }
        };
        self.kill_all();
        if !finished {
            report.stuck += 1;
            self.fail(format!(
                "stuck: the consumer did not reach the end of stream within {} s",
                DEADLINE.as_secs()
            ));
        }
        self.check_segment();
        let _ = shm::unlink(&self.name);
        let verdict = check(&self.evidence());
        for (slot, died) in &self.kill_stamps {
            if let Some(us) = self.unblock_after(*slot, *died) {
                samples.push(us);
            }
        }
        let label = match self.arm {
            Some((p, k)) => format!("{} k={k}", p.name()),
            None if self.soak.is_some() => "soak".into(),
            None => "census".into(),
        };
        for v in verdict.violations.iter().chain(&self.failures) {
            report.violation(format!("mpsc {label}: {v}"));
        }
        report.child_failures += self.failures.len() as u64;
        report.runs += 1;
        report.producer_kills += self.producer_kills;
        report.consumer_kills += self.consumer_kills;
        report.committed += verdict.committed;
        report.delivered += verdict.delivered;
        report.lost += verdict.lost;
        report.torn += verdict.torn;
        report.duplicates += verdict.duplicates;
        report.duplicates_outside_batch += verdict.duplicates_outside_batch;
        report.order_violations += verdict.order_violations;
        report.uncommitted_delivered += verdict.uncommitted_delivered;
        row.runs += 1;
        row.kills += self.producer_kills + self.consumer_kills;
        row.committed += verdict.committed;
        row.delivered += verdict.delivered;
        row.lost += verdict.lost;
        row.torn += verdict.torn;
        row.duplicates += verdict.duplicates;
        row.in_doubt += self.in_doubt;
        let s = self.side;
        let mut crossings = self.crossings;
        for (i, c) in s.consumer.crossings.iter().enumerate() {
            crossings[i] += relaxed_load(c);
        }
        for (i, c) in s.closer.crossings.iter().enumerate() {
            crossings[i] += relaxed_load(c);
        }
        Ok(Outcome {
            reached: self.reached,
            crossings,
        })
    }

    /// At the end no role is held, the stream is closed, and the slots'
    /// generations count the producer starts: each one that recorded its
    /// slot bumped one, and no more bumps than starts.
    fn check_segment(&mut self) {
        let Ok(found) = shm::mpsc::inspect(&self.name) else {
            self.fail("the segment could not be inspected at the end".into());
            return;
        };
        if found.slots.iter().any(|s| s.held) || found.consumer_held {
            self.fail("a role is still held after every child ended".into());
        }
        if !found.closed {
            self.fail("the stream is not closed at the end".into());
        }
        let bumps: u64 = found.slots.iter().map(|s| u64::from(s.generation)).sum();
        let starts = self.producer_starts + self.closer_starts;
        if bumps < self.claims || bumps > starts {
            self.fail(format!(
                "slot generations sum to {bumps}, expected {} to {starts} (one bump per producer start)",
                self.claims
            ));
        }
    }

    /// Microseconds from a kill at `died` to the consumer passing the claim
    /// of `slot` it was waiting on then.
    fn unblock_after(&self, slot: u64, died: u64) -> Option<u64> {
        let s = self.side;
        let len = (relaxed_load(&s.unblocks_len) as usize).min(s.unblocks.len());
        s.unblocks[..len].iter().find_map(|u| {
            let (since, passed) = (relaxed_load(&u.since_ns), relaxed_load(&u.passed_ns));
            (relaxed_load(&u.slot) == slot && since <= died && died <= passed)
                .then(|| (passed - died) / 1_000)
        })
    }

    fn evidence(&self) -> Evidence {
        let s = self.side;
        let len = (relaxed_load(&s.deliveries_len) as usize).min(s.deliveries.len());
        let deliveries = s.deliveries[..len]
            .iter()
            .map(|d| Delivered {
                producer: relaxed_load(&d.producer),
                seq: relaxed_load(&d.seq),
                whole: relaxed_load(&d.state) == 1,
            })
            .collect();
        Evidence {
            producers: self.facts.clone(),
            deliveries,
            unreleased: self.unreleased.clone(),
            max_batch: MAX_BATCH,
        }
    }
}
