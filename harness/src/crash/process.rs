//! The children as processes: forked from the single-threaded driver,
//! waited for with a deadline, killed with `SIGKILL`, and counted, so that
//! an experiment can tell that every child it forked was reaped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use super::{
    CrashError, EXIT_BATCH_FULL, EXIT_CLAIM, EXIT_CLOSED, EXIT_CORRUPTED, EXIT_LOG_FULL,
    EXIT_PANIC, EXIT_RING, EXIT_STORES_SPENT,
};

pub(super) fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| dir.count())
        .unwrap_or(1)
}

/// Forks a child that runs `body` and leaves with its result as exit code.
pub(super) fn spawn(body: impl FnOnce() -> i32) -> Result<Pid, CrashError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(CrashError::Threads(threads));
    }
    // SAFETY: the process has one thread (checked above), so the child is a
    // whole copy: no lock is held by a thread that does not exist there. The
    // child runs `body` and leaves with `_exit`, never returning.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            // Relaxed: counters of this (single) thread.
            SPAWNED.fetch_add(1, Ordering::Relaxed);
            Ok(child)
        }
        Ok(ForkResult::Child) => {
            // A child must not outlive the driver (e.g. on Ctrl-C).
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(EXIT_PANIC);
            // SAFETY: ends the child without running the parent's atexit
            // handlers or flushing its copied stdio buffers.
            unsafe { libc::_exit(code) }
        }
        Err(e) => Err(CrashError::Os("fork", e)),
    }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    Exited(i32),
    Killed,
    Signal(Signal),
    Hung,
}

pub(super) fn describe(end: End) -> String {
    match end {
        End::Exited(EXIT_CLAIM) => "could not claim its role".into(),
        End::Exited(EXIT_RING) => "got a ring error".into(),
        End::Exited(EXIT_CLOSED) => "found the ring closed early".into(),
        End::Exited(EXIT_BATCH_FULL) => "met a full ring inside a batch".into(),
        End::Exited(EXIT_LOG_FULL) => "filled the delivery log".into(),
        End::Exited(EXIT_PANIC) => "panicked".into(),
        End::Exited(EXIT_STORES_SPENT) => "ran out of side-page stores".into(),
        End::Exited(EXIT_CORRUPTED) => "read Corrupted from the ring".into(),
        End::Exited(code) => format!("exited with {code}"),
        End::Killed => "was killed".into(),
        End::Signal(sig) => format!("died of {sig}"),
        End::Hung => "hung".into(),
    }
}

/// Children forked and children reaped by this process's experiments.
static SPAWNED: AtomicU64 = AtomicU64::new(0);
static REAPED: AtomicU64 = AtomicU64::new(0);

/// How a reaped child ended (`None`: it has not ended).
fn ended(status: WaitStatus) -> Option<End> {
    let end = match status {
        WaitStatus::Exited(_, code) => End::Exited(code),
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => End::Killed,
        WaitStatus::Signaled(_, sig, _) => End::Signal(sig),
        _ => return None,
    };
    // Relaxed: counters of this (single) thread.
    REAPED.fetch_add(1, Ordering::Relaxed);
    Some(end)
}

/// How `pid` ended, if it has (never blocks; `Some(Hung)`: not our child).
pub(super) fn try_wait(pid: Pid) -> Option<End> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => return ended(status),
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Some(End::Hung),
        }
    }
}

/// Waits for `pid` until `deadline`; past it, kills and reaps it.
pub(super) fn wait_until(pid: Pid, deadline: Instant) -> End {
    let mut nap = Duration::from_micros(20);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some(end) = ended(status) {
                    return end;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return End::Hung, // not our child any more: nothing to reap
        }
        if Instant::now() >= deadline {
            let _ = kill_and_reap(pid);
            return End::Hung;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(2));
    }
}

/// Kills `pid` with `SIGKILL` and reaps it; returns how it ended.
pub(super) fn kill_and_reap(pid: Pid) -> Option<End> {
    let _ = kill(pid, Signal::SIGKILL);
    loop {
        match waitpid(pid, None) {
            Ok(status) => {
                if let Some(end) = ended(status) {
                    return Some(end);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// Children forked but not reaped.
pub(super) fn leaked_processes() -> u64 {
    // Relaxed: counters of this (single) thread.
    SPAWNED
        .load(Ordering::Relaxed)
        .saturating_sub(REAPED.load(Ordering::Relaxed))
}
