//! Processes and CPUs: fork a peer, pin it, share a control page with it.
//!
//! This module owns everything that crosses a `fork`: the child runs a
//! closure and leaves with `_exit` (no destructor of the parent's objects runs
//! twice), the parent reaps it, and a peer still running when the parent
//! gives up is killed. It knows nothing about rings or peers.

use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::BenchError;

/// How long a side waits for its peer before it calls the run stalled.
pub(crate) const STALL: Duration = Duration::from_secs(20);

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Two distinct CPUs for a consumer and a producer, when there are two.
pub fn cpu_pair() -> Option<(usize, usize)> {
    let cpus = allowed_cpus();
    match cpus.as_slice() {
        [first, second, ..] => Some((*first, *second)),
        _ => None,
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_thread(cpu: usize) -> Result<(), BenchError> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(|e| BenchError::Os("CpuSet::set", e))?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| BenchError::Os("sched_setaffinity", e))
}

/// Pins the calling thread to a CPU and restores its previous mask on drop,
/// so that a measurement leaves the caller (criterion, the CLI) as it was.
#[derive(Debug)]
pub(crate) struct PinGuard {
    previous: Option<CpuSet>,
}

impl PinGuard {
    pub(crate) fn pin(cpu: Option<usize>) -> Result<PinGuard, BenchError> {
        let Some(cpu) = cpu else {
            return Ok(PinGuard { previous: None });
        };
        let previous = sched_getaffinity(Pid::from_raw(0))
            .map_err(|e| BenchError::Os("sched_getaffinity", e))?;
        pin_thread(cpu)?;
        Ok(PinGuard {
            previous: Some(previous),
        })
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = sched_setaffinity(Pid::from_raw(0), &previous);
        }
    }
}

/// A forked peer; killed and reaped on drop unless [`Child::wait`] reaped it.
#[derive(Debug)]
pub(crate) struct Child {
    pid: Option<Pid>,
}

/// Forks a child that pins itself to `cpu`, runs `body` and exits: status 0
/// on `Ok`, 1 on `Err` (printed on stderr), 2 on a panic.
///
/// Call it from a point where no other thread of ours holds a lock the child
/// needs (the measurement functions are called from one thread; glibc resets
/// its allocator locks in the child).
pub(crate) fn spawn<F>(cpu: Option<usize>, body: F) -> Result<Child, BenchError>
where
    F: FnOnce() -> Result<(), BenchError>,
{
    // SAFETY: the child only runs `body` (allocation, shm_open, mmap, the
    // ring, read/write on fds it inherited) and then `_exit`s, never
    // returning into the caller's stack frames or running its destructors.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                if let Some(cpu) = cpu {
                    pin_thread(cpu)?;
                }
                body()
            }));
            let code = match outcome {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    eprintln!("ringproof-benches peer: {e}");
                    1
                }
                Err(_) => 2,
            };
            // SAFETY: `_exit` ends the child at once, without running the
            // parent's atexit handlers or flushing its copied stdio buffers.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => Ok(Child { pid: Some(child) }),
        Err(e) => Err(BenchError::Os("fork", e)),
    }
}

impl Child {
    /// Ends a measurement: after a success, waits for the child and reports
    /// its failure; after a failure the child may be blocked, so it is killed
    /// (by `Drop`) and the measurement's error returned.
    pub(crate) fn finish<T>(self, result: Result<T, BenchError>) -> Result<T, BenchError> {
        let value = result?;
        self.wait()?;
        Ok(value)
    }

    /// Waits for the child to exit and maps a failure to an error.
    pub(crate) fn wait(mut self) -> Result<(), BenchError> {
        let Some(pid) = self.pid.take() else {
            return Ok(());
        };
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
                Ok(WaitStatus::Exited(_, code)) => {
                    return Err(BenchError::Peer(format!("peer exited with status {code}")));
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    return Err(BenchError::Peer(format!("peer killed by {signal}")));
                }
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(BenchError::Os("waitpid", e)),
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

/// Words a parent and its forked child share (an anonymous shared mapping),
/// each alone on a 128-byte line.
#[derive(Debug)]
pub(crate) struct ControlPage {
    base: NonNull<AtomicU64>,
}

/// Number of words in a [`ControlPage`].
const SLOTS: usize = 72;
/// Words between two slots (128 bytes).
const STRIDE: usize = 16;
const PAGE: usize = SLOTS * STRIDE * 8;

// SAFETY: the page is plain shared memory accessed only through atomics.
unsafe impl Send for ControlPage {}
// SAFETY: as above.
unsafe impl Sync for ControlPage {}

impl ControlPage {
    pub(crate) fn new() -> Result<ControlPage, BenchError> {
        let len = NonZeroUsize::new(PAGE).ok_or(BenchError::Config("empty control page"))?;
        // SAFETY: a fresh anonymous mapping aliases nothing.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(|e| BenchError::Os("mmap", e))?;
        Ok(ControlPage { base: ptr.cast() })
    }

    /// Word `slot` (`< SLOTS`).
    pub(crate) fn word(&self, slot: usize) -> &AtomicU64 {
        assert!(slot < SLOTS, "control slot out of range");
        // SAFETY: the mapping holds SLOTS * STRIDE zero-initialised, 8-aligned
        // u64 words (page aligned) for as long as self lives; every access
        // goes through this atomic.
        unsafe { &*self.base.as_ptr().add(slot * STRIDE) }
    }

    /// Spins until word `slot` holds `value` (checking a deadline now and then).
    pub(crate) fn wait_for(&self, slot: usize, value: u64) -> Result<(), BenchError> {
        let word = self.word(slot);
        let start = Instant::now();
        let mut spins = 0u32;
        // Acquire: pairs with the Release store in `set`, so what the peer
        // did before setting the word is visible after this loop.
        while word.load(Ordering::Acquire) != value {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 4096 == 0 {
                if start.elapsed() > STALL {
                    return Err(BenchError::Stalled);
                }
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// Sets word `slot` to `value`.
    pub(crate) fn set(&self, slot: usize, value: u64) {
        // Release: pairs with the Acquire load in `wait_for`.
        self.word(slot).store(value, Ordering::Release);
    }
}

impl Drop for ControlPage {
    fn drop(&mut self) {
        // SAFETY: the mapping came from one mmap of PAGE bytes and is unmapped once.
        let _ = unsafe { munmap(self.base.cast(), PAGE) };
    }
}
