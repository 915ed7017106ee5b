//! The experiments: points mode (a census run, then every k of every crash
//! point) and random mode (kills from outside), each over fresh runs, and
//! the sweep that leaves no segment of ours behind.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ringproof::shm::{self, Role};
use ringproof::sync::CrashPoint;

use super::hook::point_index;
use super::message::splitmix;
use super::process::{End, leaked_processes, thread_count};
use super::report::enum_name;
use super::run::{Run, name_prefix};
use super::side::SidePage;
use super::{
    CrashConfig, CrashError, CrashReport, MAX_KILL_DELAY_US, ModeArg, PointRow, Progress, RoleArg,
};

/// Runs the experiment `cfg` describes; `progress` is called after each step.
pub fn run_experiment(
    cfg: &CrashConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<CrashReport, CrashError> {
    cfg.check()?;
    let threads = thread_count();
    if threads != 1 {
        return Err(CrashError::Threads(threads));
    }
    let started = Instant::now();
    let page = SidePage::new()?;
    let mut report = CrashReport::new(cfg);
    let result = match cfg.mode {
        ModeArg::Points => run_points(cfg, &page, &mut report, progress),
        ModeArg::Random => run_random(cfg, &page, &mut report, progress),
        ModeArg::Mpsc => super::mpsc::run_mpsc(cfg, &mut report, progress),
    };
    // Whatever happened, no segment of ours stays.
    let prefix = name_prefix();
    if let Ok(dir) = std::fs::read_dir("/dev/shm") {
        let ours: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        report.leaked_segments = ours.len() as u64;
        for n in ours {
            let _ = shm::unlink(&n);
        }
    }
    report.leaked_processes = leaked_processes();
    result?;
    report.finish(started);
    Ok(report)
}

/// Points mode for the role(s) of `cfg`.
fn run_points(
    cfg: &CrashConfig,
    page: &SidePage,
    report: &mut CrashReport,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), CrashError> {
    // A census run: how often each point is crossed in a whole run.
    let mut census = PointRow::default();
    let mut run = Run::start(page, cfg.capacity, cfg.messages, report)?;
    run.spawn(Role::Consumer, None)?;
    run.spawn(Role::Producer, None)?;
    run.wait(Role::Producer, false);
    run.wait(Role::Consumer, false);
    let side = page.side();
    let crossings: Vec<u64> = CrashPoint::ALL
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // Relaxed: both children are reaped.
            side.record(point_role(*p)).crossings[i].load(Ordering::Relaxed)
        })
        .collect();
    // The census run is checked like the others and counts as a run.
    run.finish(&mut census);
    let points: Vec<CrashPoint> = CrashPoint::ALL
        .iter()
        .copied()
        .filter(|p| cfg.role.kills(point_role(*p)))
        .collect();
    let total: u64 = points
        .iter()
        .map(|p| crossings[point_index(*p)].min(cfg.max_k) + 1)
        .sum();
    let mut done = 0;
    for point in points {
        report.crash_points.push(point.name());
        let mut row = PointRow {
            point: point.name().to_string(),
            role: point_role(point).to_string(),
            crossings: crossings[point_index(point)],
            ..PointRow::default()
        };
        let mut k = 1;
        loop {
            let reached = points_run(cfg, page, report, point, k, &mut row)?;
            done += 1;
            progress(Progress {
                done: done.min(total),
                total,
            });
            if !reached {
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
    Ok(())
}

/// One run of points mode: kill at the k-th crossing of `point`, take over,
/// finish the stream, check. Returns whether the point was reached.
fn points_run(
    cfg: &CrashConfig,
    page: &SidePage,
    report: &mut CrashReport,
    point: CrashPoint,
    k: u64,
    row: &mut PointRow,
) -> Result<bool, CrashError> {
    let arm = Some((point, k));
    let mut run = Run::start(page, cfg.capacity, cfg.messages, report)?;
    // The victim's peer runs the whole stream; the victim is armed, and
    // taken over by an unarmed successor if the point was reached.
    let victim = point_role(point);
    let peer = victim.other();
    run.spawn(peer, None)?;
    run.spawn(victim, arm)?;
    let reached = run.wait(victim, true) == End::Killed;
    if reached {
        run.spawn(victim, None)?;
        run.wait(victim, false);
    }
    run.wait(peer, false);
    run.finish(row);
    Ok(reached)
}

/// Random mode: one long stream, `cfg.kills` kills from outside.
fn run_random(
    cfg: &CrashConfig,
    page: &SidePage,
    report: &mut CrashReport,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), CrashError> {
    let mut row = PointRow {
        point: "random".into(),
        role: enum_name(cfg.role),
        ..PointRow::default()
    };
    let mut rng = cfg.seed;
    let mut next = move || {
        rng = rng.wrapping_add(1);
        splitmix(rng)
    };
    let total = cfg.kills;
    let mut kills = 0;
    let mut run = Run::start(page, cfg.capacity, u64::MAX, report)?;
    // Runs stay under the deadline: a fresh one every so many kills.
    let kills_per_run = 500;
    let mut in_run = 0;
    run.spawn(Role::Producer, None)?;
    run.spawn(Role::Consumer, None)?;
    while kills < total {
        let delay = next() % MAX_KILL_DELAY_US;
        std::thread::sleep(Duration::from_micros(delay));
        let victims: &[Role] = match cfg.role {
            RoleArg::Producer => &[Role::Producer],
            RoleArg::Consumer => &[Role::Consumer],
            RoleArg::Both => match next() % 10 {
                0..=4 => &[Role::Producer],
                5..=8 => &[Role::Consumer],
                _ => &[Role::Producer, Role::Consumer],
            },
        };
        // All victims die before any successor starts.
        for &role in victims {
            run.kill(role);
            kills += 1;
        }
        for &role in victims {
            run.spawn(role, None)?;
        }
        in_run += victims.len() as u64;
        progress(Progress {
            done: kills.min(total),
            total,
        });
        if in_run >= kills_per_run && kills < total {
            random_finish(run, page, &mut row);
            run = Run::start(page, cfg.capacity, u64::MAX, report)?;
            run.spawn(Role::Producer, None)?;
            run.spawn(Role::Consumer, None)?;
            in_run = 0;
        }
    }
    random_finish(run, page, &mut row);
    report.points.push(row);
    Ok(())
}

fn random_finish(mut run: Run<'_>, page: &SidePage, row: &mut PointRow) {
    // Relaxed: the producer polls it; it then closes the ring.
    page.side().finish.store(1, Ordering::Relaxed);
    run.wait(Role::Producer, false);
    run.wait(Role::Consumer, false);
    run.finish(row);
}

/// The role whose children cross `point`.
fn point_role(point: CrashPoint) -> Role {
    if point.is_producer() {
        Role::Producer
    } else {
        Role::Consumer
    }
}
