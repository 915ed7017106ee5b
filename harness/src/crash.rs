//! Crash injection with real processes and real `SIGKILL`.
//!
//! Two experiments, both over a small shared-memory ring (wrap-around and
//! padding records are frequent) and a stream of numbered, checksummed
//! messages of varying sizes, sent with `push`, `reserve`/`commit` and
//! batches, and read with `read`/`release` and `read_batch`:
//!
//! - **points**: for each crash point of a role ([`CrashPoint::ALL`]) and
//!   k = 1, 2, …, a child process runs that side with a hook that kills the
//!   process with `SIGKILL` at the k-th crossing of the point, until a run
//!   completes without reaching it (k is capped by `max_k`). After the kill a
//!   fresh child takes the role over and finishes the stream.
//! - **random**: producer and/or consumer are killed from outside at random
//!   moments of one long stream and replaced each time, `kills` times.
//!
//! After each run the invariants are checked: every committed message is
//! delivered, in order, from the producer that committed it; no torn message;
//! a message is delivered twice only when a dead consumer had read but not
//! released it (at most its unreleased batch); each takeover sees a bumped
//! generation; the dead side's lease is free; the segment is stale at the end
//! and is removed; every child is reaped.
//!
//! **What counts as committed** is decided from the ring itself: a
//! producer records the sequence number it is about to commit and the `tail`
//! it starts from *before* the commit store, and the new committed count
//! *after* it. When a producer dies with such a record open, the `tail` of the
//! segment says whether the commit store was done (`tail` moves only there).
//! The consumer records what it delivered and released the same way, and the
//! segment's `head` settles a release in doubt.
//!
//! The crash hook is [`KillAt`], the [`CrashHook`] the shipped [`MemShared`]
//! runs at each crash point ([`CrashShared`]); the shipped build keeps its
//! no-op hook. Every child is forked from the single-threaded
//! driver (checked before each fork) and leaves with `_exit`.
//!
//! Bookkeeping between the children and the driver goes through an anonymous
//! shared mapping (`Side`) made before the first fork; the driver reads it
//! only after `waitpid` has reported the writer's end.
#![allow(clippy::disallowed_types)] // the side page is ours, not the ring's: plain atomics.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::fmt;
use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use nix::sys::signal::{Signal, kill, raise};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use serde::Serialize;

use crate::exit::CliError;

use ringproof::layout::{MIN_CAPACITY, record_size};
use ringproof::mem::MemShared;
use ringproof::shm::{self, Claim, OpenMode, Role, Segment, ShmError};
use ringproof::spsc::Words;
use ringproof::spsc::{Consumer, Error as RingError, Producer};
use ringproof::sync::{CrashHook, CrashPoint};

/// Default messages per run in points mode (`RINGPROOF_CRASH_MESSAGES`).
pub const DEFAULT_MESSAGES: u64 = 128;
/// Default ring size in bytes (`RINGPROOF_CRASH_CAPACITY`).
pub const DEFAULT_CAPACITY: u64 = 512;
/// Smallest ring the experiment accepts: below it a consumer batch waiting
/// for its last message could hold the room a producer batch needs.
pub const MIN_EXPERIMENT_CAPACITY: u64 = 512;
/// Default bound on k per crash point (`RINGPROOF_CRASH_MAX_K`); with the
/// default stream no point is crossed this often, so the bound never bites.
pub const DEFAULT_MAX_K: u64 = 10_000;
/// Default kills in random mode (`RINGPROOF_CRASH_KILLS`).
pub const DEFAULT_KILLS: u64 = 1_000;
/// Longest batch either side uses; also the most a consumer death may
/// deliver twice.
pub const MAX_BATCH: u64 = 3;
/// How long one run may take before its children are killed and it fails.
const RUN_DEADLINE: Duration = Duration::from_secs(30);
/// Longest park in the children's blocking waits: a peer that died between
/// its index store and its wake-up is noticed after this.
const PARK: Duration = Duration::from_millis(5);
/// Random mode: longest pause between two kills.
const MAX_KILL_DELAY_US: u64 = 2_000;
/// Consumer-log entries (one per consumer start and per producer change).
const LOG_ENTRIES: usize = 1 << 16;
/// Smallest message: sequence number, producer, length, checksum.
const MESSAGE_HEADER: usize = 24;

// Child exit codes (the driver reports them by name).
const EXIT_OK: i32 = 0;
const EXIT_CLAIM: i32 = 20;
const EXIT_RING: i32 = 21;
const EXIT_CLOSED: i32 = 22;
const EXIT_BATCH_FULL: i32 = 23;
const EXIT_LOG_FULL: i32 = 24;
const EXIT_PANIC: i32 = 25;
/// Unit tests only: a [`Delivery`] ran out of its side-page stores (the
/// simulated death of a consumer between two of its stores).
const EXIT_STORES_SPENT: i32 = 26;

// ---------------------------------------------------------------------------
// Configuration and report
// ---------------------------------------------------------------------------

/// Which side the experiment kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RoleArg {
    /// Only the producer.
    Producer,
    /// Only the consumer.
    Consumer,
    /// Both (in turn in points mode; at random, sometimes together, in random mode).
    Both,
}

impl RoleArg {
    fn kills_producer(self) -> bool {
        self != RoleArg::Consumer
    }
    fn kills_consumer(self) -> bool {
        self != RoleArg::Producer
    }
}

/// How the experiment chooses the moment of death.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModeArg {
    /// At the k-th crossing of each crash point, for every k.
    Points,
    /// From outside, at random moments of one long stream.
    Random,
}

/// Parameters of an experiment.
#[derive(Clone, Debug)]
pub struct CrashConfig {
    /// Side(s) to kill.
    pub role: RoleArg,
    /// Points or random.
    pub mode: ModeArg,
    /// Random mode: number of kills.
    pub kills: u64,
    /// Points mode: messages per run.
    pub messages: u64,
    /// Ring size in bytes (a power of two, at least [`MIN_EXPERIMENT_CAPACITY`]).
    pub capacity: u64,
    /// Points mode: largest k tried per crash point.
    pub max_k: u64,
    /// Random mode: seed of the kill schedule.
    pub seed: u64,
}

impl CrashConfig {
    /// Defaults, overridden by `RINGPROOF_CRASH_{KILLS,MESSAGES,CAPACITY,MAX_K,SEED}`.
    pub fn from_env(role: RoleArg, mode: ModeArg) -> Result<Self, CrashError> {
        Ok(CrashConfig {
            role,
            mode,
            kills: env_u64("RINGPROOF_CRASH_KILLS", DEFAULT_KILLS)?,
            messages: env_u64("RINGPROOF_CRASH_MESSAGES", DEFAULT_MESSAGES)?,
            capacity: env_u64("RINGPROOF_CRASH_CAPACITY", DEFAULT_CAPACITY)?,
            max_k: env_u64("RINGPROOF_CRASH_MAX_K", DEFAULT_MAX_K)?,
            seed: env_u64("RINGPROOF_CRASH_SEED", clock_seed())?,
        })
    }

    fn check(&self) -> Result<(), CrashError> {
        if !self.capacity.is_power_of_two()
            || self.capacity < MIN_EXPERIMENT_CAPACITY.max(MIN_CAPACITY)
            || self.capacity > 1 << 20
        {
            return Err(CrashError::Config(format!(
                "ring size {} must be a power of two from {MIN_EXPERIMENT_CAPACITY} to {} bytes",
                self.capacity,
                1 << 20
            )));
        }
        if self.messages == 0 || self.max_k == 0 {
            return Err(CrashError::Config(
                "messages and max-k must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

fn env_u64(key: &str, default: u64) -> Result<u64, CrashError> {
    match std::env::var(key) {
        Err(_) => Ok(default),
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| CrashError::Config(format!("{key}={text:?} is not a number"))),
    }
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    splitmix(nanos ^ u64::from(std::process::id()))
}

/// Why an experiment could not run (a failed check is a report with
/// `passed: false`, not an error).
#[derive(Debug)]
#[non_exhaustive]
pub enum CrashError {
    /// A parameter is out of range.
    Config(String),
    /// The driver has more than one thread, so it must not fork.
    Threads(usize),
    /// Creating, inspecting or removing the segment failed.
    Shm(ShmError),
    /// Another OS call failed.
    Os(&'static str, nix::errno::Errno),
}

impl fmt::Display for CrashError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashError::Config(what) => f.write_str(what),
            CrashError::Threads(n) => write!(
                f,
                "the crash driver must be single-threaded to fork, but has {n} threads"
            ),
            CrashError::Shm(e) => write!(f, "shared memory: {e}"),
            CrashError::Os(what, errno) => write!(f, "{what}: {}", errno.desc()),
        }
    }
}

impl std::error::Error for CrashError {}

impl From<ShmError> for CrashError {
    fn from(e: ShmError) -> Self {
        CrashError::Shm(e)
    }
}

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
    fn new(cfg: &CrashConfig) -> Self {
        CrashReport {
            role: enum_name(cfg.role),
            mode: enum_name(cfg.mode),
            seed: cfg.seed,
            ..CrashReport::default()
        }
    }

    fn violation(&mut self, text: String) {
        if self.violations.len() < 20 {
            self.violations.push(text);
        }
    }

    fn finish(&mut self, started: Instant) {
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
        out.push_str(
            "in-doubt: kills between a commit (release) store and its record, settled from tail (head)\n",
        );
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

fn enum_name<T: clap::ValueEnum>(value: T) -> String {
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

// ---------------------------------------------------------------------------
// The crash hook
// ---------------------------------------------------------------------------

/// The crash hook: armed with `(point, k)`, it kills the process with
/// `SIGKILL` at the k-th crossing of `point`. It also counts the crossings of
/// every point.
#[derive(Debug)]
pub struct KillAt {
    armed: Option<CrashPoint>,
    left: Cell<u64>,
    crossings: [Cell<u64>; CrashPoint::ALL.len()],
}

impl KillAt {
    /// `arm` is the point and the crossing (1-based) to die at.
    pub fn new(arm: Option<(CrashPoint, u64)>) -> Self {
        KillAt {
            armed: arm.map(|(point, _)| point),
            left: Cell::new(arm.map_or(0, |(_, k)| k)),
            crossings: Default::default(),
        }
    }

    /// Crossings of `point` so far.
    pub fn crossings(&self, point: CrashPoint) -> u64 {
        self.crossings[point_index(point)].get()
    }
}

impl CrashHook for KillAt {
    fn crash_point(&self, point: CrashPoint) {
        let cell = &self.crossings[point_index(point)];
        cell.set(cell.get() + 1);
        if self.armed == Some(point) {
            let left = self.left.get().saturating_sub(1);
            self.left.set(left);
            if left == 0 {
                die();
            }
        }
    }
}

/// The shipped backend over a shared-memory segment, with the crash hook.
pub type CrashShared = MemShared<Claim, KillAt>;

fn point_index(point: CrashPoint) -> usize {
    CrashPoint::ALL
        .iter()
        .position(|p| *p == point)
        .unwrap_or(0)
}

/// Kills this process with `SIGKILL` (no handler, no unwinding, no flush).
fn die() -> ! {
    let _ = raise(Signal::SIGKILL);
    // SAFETY: `_exit` ends the process at once; SIGKILL cannot be blocked,
    // so this line is only reached if `raise` itself failed.
    unsafe { libc::_exit(EXIT_PANIC) }
}

// ---------------------------------------------------------------------------
// The side page: what children record for the driver
// ---------------------------------------------------------------------------

/// Bookkeeping shared by the driver and its children (an anonymous shared
/// mapping made before the first fork). Children write; the driver reads
/// after `waitpid` and resets before the next child of a role.
#[repr(C)]
#[derive(Debug)]
struct Side {
    /// Messages committed by the producers so far (recorded after the commit
    /// store); the next producer starts at this sequence number.
    p_committed: AtomicU64,
    /// 1 while a commit is in doubt: `p_pre_tail`/`p_pending_end` are set,
    /// `p_committed` not yet advanced.
    p_pending: AtomicU64,
    /// `tail` before the commit in doubt.
    p_pre_tail: AtomicU64,
    /// `p_committed` after the commit in doubt.
    p_pending_end: AtomicU64,
    /// Producer generation the current producer saw after its claim (0: not yet).
    p_gen: AtomicU64,
    /// The producer closed the ring.
    p_closed: AtomicU64,
    /// Crossings per crash point counted by the last producer (census runs).
    p_crossings: [AtomicU64; CrashPoint::ALL.len()],
    /// Sequence number after the last released message (recorded after the
    /// release store).
    c_released: AtomicU64,
    /// 1 while a release is in doubt.
    c_pending: AtomicU64,
    /// `head` before the release in doubt.
    c_pre_head: AtomicU64,
    /// `c_released` after the release in doubt.
    c_pending_end: AtomicU64,
    /// Consumer generation seen after the claim.
    c_gen: AtomicU64,
    /// Sequence number after the last message this consumer delivered (0: none).
    c_last: AtomicU64,
    /// Deliveries by this consumer.
    c_delivered: AtomicU64,
    /// While a delivery is being recorded: `c_last` once it is recorded
    /// (0: no record open). A death between the `c_last` and `c_delivered`
    /// stores leaves them one apart; the driver completes the record.
    c_recording: AtomicU64,
    /// `c_delivered` once the open record is written.
    c_recording_delivered: AtomicU64,
    /// Torn deliveries.
    c_torn: AtomicU64,
    /// Deliveries not following the previous one of this consumer.
    c_order: AtomicU64,
    /// The consumer read the end of stream.
    c_done: AtomicU64,
    /// Crossings per crash point counted by the last consumer.
    c_crossings: [AtomicU64; CrashPoint::ALL.len()],
    /// Random mode: the producer closes the ring when it sees this set.
    finish: AtomicU64,
    /// Entries used in `log`.
    log_len: AtomicU64,
    /// One entry per consumer start and per change of producer in the stream.
    log: [LogEntry; LOG_ENTRIES],
}

#[repr(C)]
#[derive(Debug)]
struct LogEntry {
    seq: AtomicU64,
    producer: AtomicU64,
    consumer: AtomicU64,
}

/// Owner of the side page mapping.
#[derive(Debug)]
struct SidePage {
    ptr: NonNull<c_void>,
    len: usize,
}

impl SidePage {
    fn new() -> Result<Self, CrashError> {
        let len = std::mem::size_of::<Side>();
        let Some(length) = NonZeroUsize::new(len) else {
            return Err(CrashError::Config("empty side page".into()));
        };
        // SAFETY: a fresh anonymous mapping; nothing aliases it yet.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED | MapFlags::MAP_NORESERVE,
            )
        }
        .map_err(|e| CrashError::Os("mmap(side page)", e))?;
        Ok(SidePage { ptr, len })
    }

    fn side(&self) -> &Side {
        // SAFETY: the mapping is page-aligned, `size_of::<Side>()` bytes long,
        // zero-filled (a valid `Side`: all atomics), lives as long as `self`,
        // and is only accessed through atomics.
        unsafe { &*self.ptr.as_ptr().cast::<Side>() }
    }
}

impl Drop for SidePage {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from one successful mmap; no `&Side`
        // outlives `self` (they borrow it).
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

impl Side {
    fn reset_all(&self) {
        self.reset_producer(0);
        self.reset_consumer(0);
        self.finish.store(0, Ordering::Relaxed);
        self.log_len.store(0, Ordering::Relaxed);
    }

    // Relaxed throughout the driver's side: it writes before `fork`, which
    // orders the writes before everything the child does, and reads after
    // `waitpid`, which orders everything the dead child did before it.
    fn reset_producer(&self, committed: u64) {
        self.p_committed.store(committed, Ordering::Relaxed);
        self.p_pending.store(0, Ordering::Relaxed);
        self.p_gen.store(0, Ordering::Relaxed);
        self.p_closed.store(0, Ordering::Relaxed);
        for c in &self.p_crossings {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn reset_consumer(&self, released: u64) {
        self.c_released.store(released, Ordering::Relaxed);
        self.c_pending.store(0, Ordering::Relaxed);
        self.c_gen.store(0, Ordering::Relaxed);
        self.c_last.store(0, Ordering::Relaxed);
        self.c_delivered.store(0, Ordering::Relaxed);
        self.c_recording.store(0, Ordering::Relaxed);
        self.c_recording_delivered.store(0, Ordering::Relaxed);
        self.c_torn.store(0, Ordering::Relaxed);
        self.c_order.store(0, Ordering::Relaxed);
        self.c_done.store(0, Ordering::Relaxed);
        for c in &self.c_crossings {
            c.store(0, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Length of message `seq` in a ring of `capacity` bytes: 24 to 24 + capacity/16.
fn message_len(seq: u64, capacity: u64) -> usize {
    MESSAGE_HEADER + (splitmix(seq ^ 0x5151) % (capacity / 16 + 1)) as usize
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn payload_byte(seq: u64, i: usize) -> u8 {
    (splitmix(seq.wrapping_mul(31).wrapping_add(i as u64 / 8)) >> ((i % 8) * 8)) as u8
}

/// Writes message `seq` from producer `producer` into `out` (its exact length).
fn encode(seq: u64, producer: u64, out: &mut [u8]) {
    let len = out.len();
    out[..8].copy_from_slice(&seq.to_le_bytes());
    out[8..12].copy_from_slice(&(producer as u32).to_le_bytes());
    out[12..16].copy_from_slice(&(len as u32).to_le_bytes());
    for (i, b) in out[16..len - 8].iter_mut().enumerate() {
        *b = payload_byte(seq, i);
    }
    let sum = fnv1a(&out[..len - 8]);
    out[len - 8..].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a delivered message; `Some((seq, producer))` when whole.
fn decode(bytes: &[u8], capacity: u64) -> Option<(u64, u64)> {
    let len = bytes.len();
    if len < MESSAGE_HEADER {
        return None;
    }
    let seq = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    let producer = u64::from(u32::from_le_bytes(bytes[8..12].try_into().ok()?));
    let stated = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
    let sum = u64::from_le_bytes(bytes[len - 8..].try_into().ok()?);
    let whole = stated == len
        && message_len(seq, capacity) == len
        && sum == fnv1a(&bytes[..len - 8])
        && bytes[16..len - 8]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == payload_byte(seq, i));
    whole.then_some((seq, producer))
}

/// How the producer sends the message(s) starting at `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SendOp {
    Push,
    Grant,
    Batch(u64),
}

fn send_plan(seq: u64) -> SendOp {
    match splitmix(seq ^ 0xB47C) % 8 {
        0..=2 => SendOp::Push,
        3..=4 => SendOp::Grant,
        r => SendOp::Batch(r - 3), // 2 or 3 (MAX_BATCH) records
    }
}

/// How many messages the consumer's `n`-th read takes (1: `read`, else a `read_batch`).
fn read_plan(n: u64) -> u64 {
    match splitmix(n ^ 0xC0C0) % 4 {
        0 | 1 => 1,
        r => r, // 2 or 3 (MAX_BATCH)
    }
}

/// Bytes a batch of these messages needs past `tail`, wrap padding included
/// (as the producer's `claim` places them).
fn batch_need(tail: u64, capacity: u64, lens: impl Iterator<Item = usize>) -> u64 {
    let mut pos = tail;
    for len in lens {
        let record = record_size(len as u64);
        let to_end = capacity - (pos & (capacity - 1));
        if record > to_end {
            pos += to_end;
        }
        pos += record;
    }
    pos - tail
}

// ---------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------

/// What a child needs to know.
#[derive(Clone, Debug)]
struct ChildSpec {
    name: String,
    capacity: u64,
    /// Index of this producer or consumer in the run (0, 1, …).
    incarnation: u64,
    /// Crash point and crossing to die at.
    arm: Option<(CrashPoint, u64)>,
    /// Producer: sequence number to stop at (then close); `u64::MAX`: until `finish`.
    end: u64,
}

fn ring_exit(e: RingError) -> i32 {
    match e {
        RingError::Closed => EXIT_CLOSED,
        _ => EXIT_RING,
    }
}

fn producer_child(spec: &ChildSpec, side: &Side) -> i32 {
    let Ok(shared) = shm::claim(&spec.name, spec.capacity, Role::Producer, OpenMode::Open) else {
        return EXIT_CLAIM;
    };
    // Relaxed: our own claim bumped it, earlier in this thread.
    let generation = shared.generation(true).load(Ordering::Relaxed);
    // Relaxed: read by the driver after `waitpid`.
    side.p_gen.store(u64::from(generation), Ordering::Relaxed);
    let mut producer = match Producer::new(shared.with_hook(KillAt::new(spec.arm))) {
        Ok(p) => p,
        Err(e) => return ring_exit(e),
    };
    let code = produce(&mut producer, spec, side).err().unwrap_or(EXIT_OK);
    for (i, c) in side.p_crossings.iter().enumerate() {
        // Relaxed: read by the driver after `waitpid`.
        c.store(
            producer.shared().hook().crossings(CrashPoint::ALL[i]),
            Ordering::Relaxed,
        );
    }
    code
}

/// Records a commit in doubt (before the commit store).
fn pending_commit(side: &Side, pre_tail: u64, end: u64) {
    // Relaxed: the driver reads these only after `waitpid`.
    side.p_pre_tail.store(pre_tail, Ordering::Relaxed);
    side.p_pending_end.store(end, Ordering::Relaxed);
    side.p_pending.store(1, Ordering::Relaxed);
}

/// Records a commit done (after the commit store).
fn committed(side: &Side, end: u64) {
    // Relaxed: as above.
    side.p_committed.store(end, Ordering::Relaxed);
    side.p_pending.store(0, Ordering::Relaxed);
}

fn produce(p: &mut Producer<CrashShared>, spec: &ChildSpec, side: &Side) -> Result<(), i32> {
    // Relaxed: set by the driver before `fork`.
    let mut seq = side.p_committed.load(Ordering::Relaxed);
    let capacity = spec.capacity;
    if p.is_closed() {
        // A predecessor closed the ring after its last commit.
        return if seq >= spec.end {
            Ok(())
        } else {
            Err(EXIT_CLOSED)
        };
    }
    let mut buf = vec![0u8; message_len(0, capacity).max(MESSAGE_HEADER + capacity as usize / 16)];
    // Relaxed: a flag from the driver; a late sighting costs one more message.
    while seq < spec.end && side.finish.load(Ordering::Relaxed) == 0 {
        match send_plan(seq) {
            SendOp::Push => {
                let len = message_len(seq, capacity);
                encode(seq, spec.incarnation, &mut buf[..len]);
                pending_commit(side, p.position(), seq + 1);
                loop {
                    match p.push(&buf[..len]) {
                        Ok(()) => break,
                        Err(RingError::Full) => {
                            p.wait_writable(len, Some(PARK)).map_err(ring_exit)?;
                        }
                        Err(e) => return Err(ring_exit(e)),
                    }
                }
                committed(side, seq + 1);
                seq += 1;
            }
            SendOp::Grant => {
                let len = message_len(seq, capacity);
                pending_commit(side, p.position(), seq + 1);
                loop {
                    match p.reserve(len) {
                        Ok(mut grant) => {
                            encode(seq, spec.incarnation, &mut grant);
                            grant.commit();
                            break;
                        }
                        Err(RingError::Full) => {
                            p.wait_writable(len, Some(PARK)).map_err(ring_exit)?;
                        }
                        Err(e) => return Err(ring_exit(e)),
                    }
                }
                committed(side, seq + 1);
                seq += 1;
            }
            SendOp::Batch(n) => {
                let n = n.min(spec.end - seq);
                let lens = || (seq..seq + n).map(|s| message_len(s, capacity));
                // Wait for room for the whole batch, so that no record of it
                // meets a full ring: the crossings stay the same in every run.
                loop {
                    let need = batch_need(p.position(), capacity, lens());
                    if p.free_bytes().map_err(ring_exit)? >= need {
                        break;
                    }
                    p.wait_writable(message_len(seq, capacity), Some(PARK))
                        .map_err(ring_exit)?;
                    std::thread::yield_now();
                }
                pending_commit(side, p.position(), seq + n);
                let mut batch = p.batch();
                for s in seq..seq + n {
                    let len = message_len(s, capacity);
                    match batch.reserve(len) {
                        Ok(slot) => encode(s, spec.incarnation, slot),
                        Err(RingError::Full) => return Err(EXIT_BATCH_FULL),
                        Err(e) => return Err(ring_exit(e)),
                    }
                }
                batch.commit();
                committed(side, seq + n);
                seq += n;
            }
        }
    }
    p.close().map_err(ring_exit)?;
    // Relaxed: read by the driver after `waitpid`.
    side.p_closed.store(1, Ordering::Relaxed);
    Ok(())
}

fn consumer_child(spec: &ChildSpec, side: &Side) -> i32 {
    let Ok(shared) = shm::claim(&spec.name, spec.capacity, Role::Consumer, OpenMode::Open) else {
        return EXIT_CLAIM;
    };
    // Relaxed: our own claim bumped it, earlier in this thread.
    let generation = shared.generation(false).load(Ordering::Relaxed);
    // Relaxed: read by the driver after `waitpid`.
    side.c_gen.store(u64::from(generation), Ordering::Relaxed);
    let mut consumer = match Consumer::new(shared.with_hook(KillAt::new(spec.arm))) {
        Ok(c) => c,
        Err(e) => return ring_exit(e),
    };
    let mut state = Delivery {
        side,
        capacity: spec.capacity,
        incarnation: spec.incarnation,
        producer: None,
        stores_left: None,
    };
    let code = consume(&mut consumer, &mut state).err().unwrap_or(EXIT_OK);
    for (i, c) in side.c_crossings.iter().enumerate() {
        // Relaxed: read by the driver after `waitpid`.
        c.store(
            consumer.shared().hook().crossings(CrashPoint::ALL[i]),
            Ordering::Relaxed,
        );
    }
    code
}

/// The consumer's record of what it delivered.
struct Delivery<'a> {
    side: &'a Side,
    capacity: u64,
    incarnation: u64,
    /// Producer of the last message delivered by this consumer.
    producer: Option<u64>,
    /// Side-page stores this consumer may still make (`None`: no bound).
    /// Unit tests bound it to stop a consumer between any two of its stores,
    /// which is what a `SIGKILL` can do; children run unbounded.
    stores_left: Option<u64>,
}

impl Delivery<'_> {
    /// Stores `value` into `word` of the side page, unless the store bound is
    /// spent ([`EXIT_STORES_SPENT`]).
    fn put(&mut self, word: &AtomicU64, value: u64) -> Result<(), i32> {
        if let Some(left) = self.stores_left.as_mut() {
            if *left == 0 {
                return Err(EXIT_STORES_SPENT);
            }
            *left -= 1;
        }
        // Relaxed: this child is the only writer; the driver reads after
        // `waitpid`, which orders every store the child made before it.
        word.store(value, Ordering::Relaxed);
        Ok(())
    }

    /// Checks and records one message (the application "uses" it here).
    fn deliver(&mut self, bytes: &[u8]) -> Result<(), i32> {
        let side = self.side;
        let Some((seq, producer)) = decode(bytes, self.capacity) else {
            // Relaxed: as in `put` (the child is the only writer).
            let torn = side.c_torn.load(Ordering::Relaxed);
            return self.put(&side.c_torn, torn + 1);
        };
        // Relaxed: as above.
        let last = side.c_last.load(Ordering::Relaxed);
        if last != 0 && seq != last {
            // Relaxed: as above.
            let order = side.c_order.load(Ordering::Relaxed);
            self.put(&side.c_order, order + 1)?;
        }
        if last == 0 || self.producer != Some(producer) {
            // Relaxed: as above.
            let at = side.log_len.load(Ordering::Relaxed) as usize;
            let Some(entry) = side.log.get(at) else {
                return Err(EXIT_LOG_FULL);
            };
            self.put(&entry.seq, seq)?;
            self.put(&entry.producer, producer)?;
            self.put(&entry.consumer, self.incarnation)?;
            self.put(&side.log_len, at as u64 + 1)?;
            self.producer = Some(producer);
        }
        // `c_last` is the delivery record: a message is delivered once it is
        // stored. `c_delivered` follows it, so the pair is opened first (the
        // opening store is `c_recording`) and closed after: a death in between
        // leaves what the driver needs to complete it.
        // Relaxed: as above.
        let delivered = side.c_delivered.load(Ordering::Relaxed) + 1;
        self.put(&side.c_recording_delivered, delivered)?;
        self.put(&side.c_recording, seq + 1)?;
        self.put(&side.c_last, seq + 1)?;
        self.put(&side.c_delivered, delivered)?;
        self.put(&side.c_recording, 0)
    }

    /// Records a release in doubt (before the release store).
    fn pending_release(&mut self, pre_head: u64) -> Result<(), i32> {
        let side = self.side;
        self.put(&side.c_pre_head, pre_head)?;
        // Relaxed: as in `put`.
        let last = side.c_last.load(Ordering::Relaxed);
        self.put(&side.c_pending_end, last)?;
        self.put(&side.c_pending, 1)
    }

    /// Records a release done (after the release store).
    fn released(&mut self) -> Result<(), i32> {
        let side = self.side;
        // Relaxed: as in `put`.
        let last = side.c_last.load(Ordering::Relaxed);
        self.put(&side.c_released, last)?;
        self.put(&side.c_pending, 0)
    }
}

fn consume(c: &mut Consumer<CrashShared>, d: &mut Delivery<'_>) -> Result<(), i32> {
    let mut reads = 0u64;
    loop {
        let take = read_plan(reads);
        reads += 1;
        let pre_head = c.position();
        if take == 1 {
            match c.read() {
                Ok(message) => {
                    d.deliver(&message)?;
                    d.pending_release(pre_head)?;
                    message.release();
                    d.released()?;
                }
                Err(RingError::Empty) => {
                    reads -= 1;
                    c.wait_readable(Some(PARK)).map_err(ring_exit)?;
                }
                Err(RingError::Closed) => break,
                Err(e) => return Err(ring_exit(e)),
            }
            continue;
        }
        // Start a batch only once a message is there, then wait in it for the
        // rest, so that each batch reads exactly `take` messages (or up to
        // the end of stream): the crossings stay the same in every run.
        if !c.wait_readable(Some(PARK)).map_err(ring_exit)? {
            reads -= 1;
            continue;
        }
        let mut batch = c.read_batch();
        let mut closed = false;
        let mut spins = 0u32;
        while (batch.len() as u64) < take {
            match batch.read() {
                Ok(message) => d.deliver(message)?,
                Err(RingError::Empty) => {
                    spins += 1;
                    if spins < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
                Err(RingError::Closed) => {
                    closed = true;
                    break;
                }
                Err(e) => return Err(ring_exit(e)),
            }
        }
        if !batch.is_empty() {
            d.pending_release(pre_head)?;
            batch.release();
            d.released()?;
        }
        if closed {
            break;
        }
    }
    // Relaxed: read by the driver after `waitpid`.
    d.side.c_done.store(1, Ordering::Relaxed);
    Ok(())
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|dir| dir.count())
        .unwrap_or(1)
}

/// Forks a child that runs `body` and leaves with its result as exit code.
fn spawn(body: impl FnOnce() -> i32) -> Result<Pid, CrashError> {
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
enum End {
    Exited(i32),
    Killed,
    Signal(Signal),
    Hung,
}

fn describe(end: End) -> String {
    match end {
        End::Exited(EXIT_CLAIM) => "could not claim its role".into(),
        End::Exited(EXIT_RING) => "got a ring error".into(),
        End::Exited(EXIT_CLOSED) => "found the ring closed early".into(),
        End::Exited(EXIT_BATCH_FULL) => "met a full ring inside a batch".into(),
        End::Exited(EXIT_LOG_FULL) => "filled the delivery log".into(),
        End::Exited(EXIT_PANIC) => "panicked".into(),
        End::Exited(EXIT_STORES_SPENT) => "ran out of side-page stores".into(),
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

/// Waits for `pid` until `deadline`; past it, kills and reaps it.
fn wait_until(pid: Pid, deadline: Instant) -> End {
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
fn kill_and_reap(pid: Pid) -> Option<End> {
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

// ---------------------------------------------------------------------------
// One run: a segment, a stream, its producers and consumers
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct ProducerLife {
    start: u64,
    end: u64,
    generation: u64,
}

#[derive(Clone, Debug)]
struct ConsumerLife {
    /// Released position (as a sequence number) it started from.
    start: u64,
    /// Released position it left.
    released: u64,
    /// Sequence number after its last delivery (0: none).
    last: u64,
    delivered: u64,
    torn: u64,
    order: u64,
    generation: u64,
}

/// Counts of one run.
#[derive(Clone, Debug, Default)]
struct RunStats {
    committed: u64,
    delivered: u64,
    lost: u64,
    torn: u64,
    duplicates: u64,
    in_doubt: u64,
    before_attach: u64,
    producer_kills: u64,
    consumer_kills: u64,
}

/// A run in progress, owned by the driver.
struct Run<'a> {
    page: &'a SidePage,
    name: String,
    capacity: u64,
    end: u64,
    deadline: Instant,
    producers: Vec<ProducerLife>,
    consumers: Vec<ConsumerLife>,
    producer: Option<Pid>,
    consumer: Option<Pid>,
    stats: RunStats,
    report: &'a mut CrashReport,
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Prefix of this process's segment names.
fn name_prefix() -> String {
    format!("ringproof-crash-{}-", std::process::id())
}

impl<'a> Run<'a> {
    fn start(
        page: &'a SidePage,
        capacity: u64,
        end: u64,
        report: &'a mut CrashReport,
    ) -> Result<Self, CrashError> {
        // Relaxed: a counter for unique names, one thread.
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}{n}", name_prefix());
        // The driver creates the segment and lets go of it at once: the
        // children claim their roles. No descriptor of it stays open here.
        drop(shm::claim(
            &name,
            capacity,
            Role::Consumer,
            OpenMode::Create,
        )?);
        page.side().reset_all();
        report.runs += 1;
        Ok(Run {
            page,
            name,
            capacity,
            end,
            deadline: Instant::now() + RUN_DEADLINE,
            producers: Vec::new(),
            consumers: Vec::new(),
            producer: None,
            consumer: None,
            stats: RunStats::default(),
            report,
        })
    }

    fn side(&self) -> &'a Side {
        self.page.side()
    }

    fn spec(&self, incarnation: u64, arm: Option<(CrashPoint, u64)>) -> ChildSpec {
        ChildSpec {
            name: self.name.clone(),
            capacity: self.capacity,
            incarnation,
            arm,
            end: self.end,
        }
    }

    fn spawn_producer(&mut self, arm: Option<(CrashPoint, u64)>) -> Result<(), CrashError> {
        let start = self.producers.last().map_or(0, |p| p.end);
        self.side().reset_producer(start);
        let spec = self.spec(self.producers.len() as u64, arm);
        let side = self.side();
        self.producer = Some(spawn(move || producer_child(&spec, side))?);
        self.producers.push(ProducerLife {
            start,
            end: start,
            generation: 0,
        });
        Ok(())
    }

    fn spawn_consumer(&mut self, arm: Option<(CrashPoint, u64)>) -> Result<(), CrashError> {
        let spec = self.next_consumer(arm);
        let side = self.side();
        self.consumer = Some(spawn(move || consumer_child(&spec, side))?);
        Ok(())
    }

    /// Prepares the side page and the record for the next consumer, which
    /// takes over at its predecessor's released position.
    fn next_consumer(&mut self, arm: Option<(CrashPoint, u64)>) -> ChildSpec {
        let start = self.consumers.last().map_or(0, |c| c.released);
        self.side().reset_consumer(start);
        let spec = self.spec(self.consumers.len() as u64, arm);
        self.consumers.push(ConsumerLife {
            start,
            released: start,
            last: 0,
            delivered: 0,
            torn: 0,
            order: 0,
            generation: 0,
        });
        spec
    }

    /// Reads `head` and `tail`, and whether each role is held now.
    fn inspect(&mut self) -> Option<shm::Inspection> {
        match Segment::inspect(&self.name) {
            Ok(i) => Some(i),
            Err(e) => {
                let text = format!("{}: inspect failed: {e}", self.name);
                self.report.violation(text);
                self.report.child_failures += 1;
                None
            }
        }
    }

    /// Settles what the producer that just ended committed.
    fn settle_producer(&mut self, end: End, expect_kill: bool) {
        let side = self.side();
        let inspection = self.inspect();
        // Relaxed: the producer is reaped; `waitpid` ordered its writes.
        let recorded = side.p_committed.load(Ordering::Relaxed);
        let mut committed = recorded;
        if side.p_pending.load(Ordering::Relaxed) == 1 {
            let pre_tail = side.p_pre_tail.load(Ordering::Relaxed);
            let pending_end = side.p_pending_end.load(Ordering::Relaxed);
            if inspection.as_ref().is_some_and(|i| i.tail != pre_tail) {
                committed = pending_end;
                if pending_end != recorded {
                    self.stats.in_doubt += 1;
                }
            }
        }
        let generation = side.p_gen.load(Ordering::Relaxed);
        let previous = self
            .producers
            .iter()
            .rev()
            .skip(1)
            .map(|p| p.generation)
            .find(|g| *g != 0);
        if let Some(life) = self.producers.last_mut() {
            life.end = committed;
            life.generation = generation;
        }
        if let Some(prev) = previous.filter(|prev| generation != 0 && generation <= *prev) {
            {
                self.report.generations_not_bumped += 1;
                let text = format!(
                    "{}: producer generation {generation} after {prev}",
                    self.name
                );
                self.report.violation(text);
            }
        }
        self.check_end("producer", end, expect_kill);
        if end == End::Killed {
            self.stats.producer_kills += 1;
            self.stats.before_attach += u64::from(generation == 0);
            if inspection.is_some_and(|i| i.producer_held) {
                self.report.leases_not_released += 1;
                let text = format!("{}: a dead producer's role is still held", self.name);
                self.report.violation(text);
            }
        }
        self.producer = None;
    }

    /// Settles what the consumer that just ended delivered and released.
    fn settle_consumer(&mut self, end: End, expect_kill: bool) {
        let inspection = self.inspect();
        self.settle_consumer_seen(end, expect_kill, inspection);
    }

    /// [`Run::settle_consumer`] given the segment as the consumer left it.
    fn settle_consumer_seen(
        &mut self,
        end: End,
        expect_kill: bool,
        inspection: Option<shm::Inspection>,
    ) {
        let side = self.side();
        // Relaxed: the consumer is reaped; `waitpid` ordered its writes.
        let mut released = side.c_released.load(Ordering::Relaxed);
        if side.c_pending.load(Ordering::Relaxed) == 1 {
            let pre_head = side.c_pre_head.load(Ordering::Relaxed);
            let pending_end = side.c_pending_end.load(Ordering::Relaxed);
            if inspection.as_ref().is_some_and(|i| i.head != pre_head) {
                if pending_end != released {
                    self.stats.in_doubt += 1;
                }
                released = pending_end;
            }
        }
        let generation = side.c_gen.load(Ordering::Relaxed);
        let previous = self
            .consumers
            .iter()
            .rev()
            .skip(1)
            .map(|c| c.generation)
            .find(|g| *g != 0);
        // Relaxed: as above.
        let last = side.c_last.load(Ordering::Relaxed);
        let mut delivered = side.c_delivered.load(Ordering::Relaxed);
        let recording = side.c_recording.load(Ordering::Relaxed);
        if recording != 0 && last == recording {
            // Died with a delivery recorded (`c_last`) but perhaps not yet
            // counted: the count it was writing.
            delivered = side.c_recording_delivered.load(Ordering::Relaxed);
        }
        if let Some(life) = self.consumers.last_mut() {
            life.released = released;
            life.last = last;
            life.delivered = delivered;
            life.torn = side.c_torn.load(Ordering::Relaxed);
            life.order = side.c_order.load(Ordering::Relaxed);
            life.generation = generation;
        }
        if let Some(prev) = previous.filter(|prev| generation != 0 && generation <= *prev) {
            {
                self.report.generations_not_bumped += 1;
                let text = format!(
                    "{}: consumer generation {generation} after {prev}",
                    self.name
                );
                self.report.violation(text);
            }
        }
        self.check_end("consumer", end, expect_kill);
        if end == End::Killed {
            self.stats.consumer_kills += 1;
            self.stats.before_attach += u64::from(generation == 0);
            if inspection.is_some_and(|i| i.consumer_held) {
                self.report.leases_not_released += 1;
                let text = format!("{}: a dead consumer's role is still held", self.name);
                self.report.violation(text);
            }
        }
        self.consumer = None;
    }

    fn check_end(&mut self, who: &str, end: End, expect_kill: bool) {
        let ok = match end {
            End::Exited(EXIT_OK) => true,
            End::Killed => expect_kill,
            _ => false,
        };
        if !ok {
            self.report.child_failures += 1;
            let text = format!("{}: a {who} {}", self.name, describe(end));
            self.report.violation(text);
        }
    }

    fn wait_producer(&mut self, expect_kill: bool) -> End {
        let end = self
            .producer
            .map_or(End::Hung, |pid| wait_until(pid, self.deadline));
        self.producer = None;
        self.settle_producer(end, expect_kill);
        end
    }

    fn wait_consumer(&mut self, expect_kill: bool) -> End {
        let end = self
            .consumer
            .map_or(End::Hung, |pid| wait_until(pid, self.deadline));
        self.consumer = None;
        self.settle_consumer(end, expect_kill);
        end
    }

    /// Kills a live side from outside and settles it.
    fn kill_producer(&mut self) {
        if let Some(pid) = self.producer.take() {
            let end = kill_and_reap(pid).unwrap_or(End::Hung);
            self.settle_producer(end, true);
        }
    }

    fn kill_consumer(&mut self) {
        if let Some(pid) = self.consumer.take() {
            let end = kill_and_reap(pid).unwrap_or(End::Hung);
            self.settle_consumer(end, true);
        }
    }

    /// Checks the stream and the segment, removes the segment, and adds the
    /// run's counts to `row`.
    fn finish(mut self, row: &mut PointRow) {
        for pid in [self.producer.take(), self.consumer.take()]
            .into_iter()
            .flatten()
        {
            let _ = kill_and_reap(pid);
            self.report.child_failures += 1;
        }
        self.check_stream();
        if let Some(i) = self.inspect() {
            let drained = i.closed && i.head == i.tail;
            if !i.stale() || !drained {
                self.report.stale_not_detected += 1;
                let text = format!(
                    "{}: at the end: stale {}, closed {}, head {}, tail {}",
                    self.name,
                    i.stale(),
                    i.closed,
                    i.head,
                    i.tail
                );
                self.report.violation(text);
            }
        }
        let _ = shm::unlink(&self.name);
        let s = &self.stats;
        row.runs += 1;
        row.kills += s.producer_kills + s.consumer_kills;
        row.committed += s.committed;
        row.delivered += s.delivered;
        row.lost += s.lost;
        row.torn += s.torn;
        row.duplicates += s.duplicates;
        row.in_doubt += s.in_doubt;
        row.before_attach += s.before_attach;
        let r = &mut *self.report;
        r.producer_kills += s.producer_kills;
        r.consumer_kills += s.consumer_kills;
        r.committed += s.committed;
        r.delivered += s.delivered;
        r.lost += s.lost;
        r.torn += s.torn;
        r.duplicates += s.duplicates;
    }

    /// The invariants over the producers' commits and the consumers' deliveries.
    fn check_stream(&mut self) {
        let side = self.side();
        let name = self.name.clone();
        let committed = self.producers.last().map_or(0, |p| p.end);
        self.stats.committed = committed;
        // Producer of each committed sequence number, by first number.
        let owners: BTreeMap<u64, u64> = self
            .producers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.end > p.start)
            .map(|(i, p)| (p.start, i as u64))
            .collect();
        let owner = |seq: u64| -> Option<u64> {
            if seq >= committed {
                return None;
            }
            owners.range(..=seq).next_back().map(|(_, i)| *i)
        };
        // Relaxed: every child is reaped.
        let log_len = (side.log_len.load(Ordering::Relaxed) as usize).min(LOG_ENTRIES);
        let log: Vec<(u64, u64, u64)> = side.log[..log_len]
            .iter()
            .map(|e| {
                (
                    e.seq.load(Ordering::Relaxed),
                    e.producer.load(Ordering::Relaxed),
                    e.consumer.load(Ordering::Relaxed),
                )
            })
            .collect();
        let mut violations = Vec::new();
        // Delivered sequence numbers, as disjoint sorted ranges.
        let mut seen: Vec<(u64, u64)> = Vec::new();
        let mut duplicates = 0u64;
        let mut outside = 0u64;
        let mut order = 0u64;
        let mut uncommitted = 0u64;
        let mut torn = 0u64;
        for (j, life) in self.consumers.iter().enumerate() {
            torn += life.torn;
            order += life.order;
            if life.order != 0 {
                violations.push(format!(
                    "{name}: consumer {j} delivered {} messages out of order",
                    life.order
                ));
            }
            if life.released < life.start || (life.last != 0 && life.released > life.last) {
                order += 1;
                violations.push(format!(
                    "{name}: consumer {j} released up to {} from {} having delivered up to {}",
                    life.released, life.start, life.last
                ));
            }
            if life.last == 0 {
                continue; // delivered nothing
            }
            let entries: Vec<(u64, u64)> = log
                .iter()
                .filter(|e| e.2 == j as u64 && e.0 < life.last)
                .map(|e| (e.0, e.1))
                .collect();
            let Some(&(first, _)) = entries.first() else {
                order += 1;
                violations.push(format!("{name}: consumer {j} delivered but logged nothing"));
                continue;
            };
            // Resumes exactly at its predecessor's released position.
            if first > life.start {
                order += 1;
                violations.push(format!(
                    "{name}: consumer {j} started at {first}, past the released {}",
                    life.start
                ));
            } else if first < life.start {
                outside += life.start - first;
                violations.push(format!(
                    "{name}: consumer {j} started at {first}, before the released {}",
                    life.start
                ));
            }
            if life.delivered != life.last - first && life.order == 0 {
                order += 1;
                violations.push(format!(
                    "{name}: consumer {j} delivered {} messages for {first}..{}",
                    life.delivered, life.last
                ));
            }
            // Every delivered message is committed, by the producer that
            // committed it: the producer changes exactly where the owners do.
            let mut expected = vec![(first, owner(first))];
            for (&start, &i) in owners.range(first + 1..life.last) {
                expected.push((start, Some(i)));
            }
            let actual: Vec<(u64, Option<u64>)> =
                entries.iter().map(|&(s, p)| (s, Some(p))).collect();
            if life.last > committed || actual != expected {
                uncommitted += 1;
                violations.push(format!(
                    "{name}: consumer {j} delivered producers {actual:?}, committed {expected:?} (committed count {committed})"
                ));
            }
            // Duplicates: what it delivered again of what others delivered.
            let again = overlap(&seen, first, life.last);
            add_range(&mut seen, first, life.last);
            duplicates += again;
            if again > MAX_BATCH {
                outside += again - MAX_BATCH;
                violations.push(format!(
                    "{name}: consumer {j} delivered {again} messages again (most a batch: {MAX_BATCH})"
                ));
            }
        }
        let distinct = overlap(&seen, 0, committed);
        let lost = committed - distinct;
        if lost != 0 {
            violations.push(format!(
                "{name}: {lost} of {committed} committed messages never delivered"
            ));
        }
        if torn != 0 {
            violations.push(format!("{name}: {torn} torn messages"));
        }
        let last_done = side.c_done.load(Ordering::Relaxed) == 1;
        let last_released = self.consumers.last().map_or(0, |c| c.released);
        if !last_done || last_released != committed {
            order += 1;
            violations.push(format!(
                "{name}: the last consumer saw end of stream {last_done}, released {last_released} of {committed}"
            ));
        }
        self.stats.delivered = distinct;
        self.stats.lost = lost;
        self.stats.torn = torn;
        self.stats.duplicates = duplicates;
        let r = &mut *self.report;
        r.duplicates_outside_batch += outside;
        r.order_violations += order;
        r.uncommitted_delivered += uncommitted;
        for v in violations {
            r.violation(v);
        }
    }
}

impl Drop for Run<'_> {
    /// A run abandoned on an error leaves no child behind (its segment is
    /// removed by [`run_experiment`]'s sweep).
    fn drop(&mut self) {
        for pid in [self.producer.take(), self.consumer.take()]
            .into_iter()
            .flatten()
        {
            let _ = kill_and_reap(pid);
        }
    }
}

/// How many numbers of `start..end` the sorted disjoint `ranges` hold.
fn overlap(ranges: &[(u64, u64)], start: u64, end: u64) -> u64 {
    ranges
        .iter()
        .map(|&(a, b)| b.min(end).saturating_sub(a.max(start)))
        .sum()
}

/// Adds `start..end` to the sorted disjoint `ranges`, merging.
fn add_range(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    ranges.push((start, end));
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    *ranges = merged;
}

// ---------------------------------------------------------------------------
// The experiments
// ---------------------------------------------------------------------------

/// Children forked but not reaped.
fn leaked_processes() -> u64 {
    // Relaxed: counters of this (single) thread.
    SPAWNED
        .load(Ordering::Relaxed)
        .saturating_sub(REAPED.load(Ordering::Relaxed))
}

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
    run.spawn_consumer(None)?;
    run.spawn_producer(None)?;
    run.wait_producer(false);
    run.wait_consumer(false);
    let side = page.side();
    let crossings: Vec<u64> = CrashPoint::ALL
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // Relaxed: both children are reaped.
            if p.is_producer() {
                side.p_crossings[i].load(Ordering::Relaxed)
            } else {
                side.c_crossings[i].load(Ordering::Relaxed)
            }
        })
        .collect();
    // The census run is checked like the others and counts as a run.
    run.finish(&mut census);
    let points: Vec<CrashPoint> = CrashPoint::ALL
        .iter()
        .copied()
        .filter(|p| {
            if p.is_producer() {
                cfg.role.kills_producer()
            } else {
                cfg.role.kills_consumer()
            }
        })
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
            role: if point.is_producer() {
                "producer"
            } else {
                "consumer"
            }
            .to_string(),
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
    let reached;
    if point.is_producer() {
        run.spawn_consumer(None)?;
        run.spawn_producer(arm)?;
        reached = run.wait_producer(true) == End::Killed;
        if reached {
            run.spawn_producer(None)?;
            run.wait_producer(false);
        }
        run.wait_consumer(false);
    } else {
        run.spawn_producer(None)?;
        run.spawn_consumer(arm)?;
        reached = run.wait_consumer(true) == End::Killed;
        if reached {
            run.spawn_consumer(None)?;
            run.wait_consumer(false);
        }
        run.wait_producer(false);
    }
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
    run.spawn_producer(None)?;
    run.spawn_consumer(None)?;
    while kills < total {
        let delay = next() % MAX_KILL_DELAY_US;
        std::thread::sleep(Duration::from_micros(delay));
        let (producer, consumer) = match cfg.role {
            RoleArg::Producer => (true, false),
            RoleArg::Consumer => (false, true),
            RoleArg::Both => match next() % 10 {
                0..=4 => (true, false),
                5..=8 => (false, true),
                _ => (true, true),
            },
        };
        if producer {
            run.kill_producer();
            kills += 1;
        }
        if consumer {
            run.kill_consumer();
            kills += 1;
        }
        if producer {
            run.spawn_producer(None)?;
        }
        if consumer {
            run.spawn_consumer(None)?;
        }
        in_run += u64::from(producer) + u64::from(consumer);
        progress(Progress {
            done: kills.min(total),
            total,
        });
        if in_run >= kills_per_run && kills < total {
            random_finish(run, page, &mut row);
            run = Run::start(page, cfg.capacity, u64::MAX, report)?;
            run.spawn_producer(None)?;
            run.spawn_consumer(None)?;
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
    run.wait_producer(false);
    run.wait_consumer(false);
    run.finish(row);
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// `ringproof crash`: kill real producer and consumer processes at every
/// crash point (or at random) and check that nothing committed is lost or torn.
#[derive(Debug, clap::Args)]
pub struct CrashArgs {
    /// Side to kill.
    #[arg(long, value_enum, default_value_t = RoleArg::Both)]
    pub role: RoleArg,
    /// `points`: at the k-th crossing of each crash point, for every k;
    /// `random`: from outside at random moments.
    #[arg(long, value_enum, default_value_t = ModeArg::Points)]
    pub mode: ModeArg,
    /// Random mode: number of kills [default: 1000, or RINGPROOF_CRASH_KILLS].
    #[arg(long)]
    pub kills: Option<u64>,
    /// Points mode: messages per run [default: 128, or RINGPROOF_CRASH_MESSAGES].
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

#[cfg(test)]
mod tests {
    use super::*;

    const CAPACITY: u64 = 512;
    /// Messages in the simulated stream (one producer, all committed).
    const MESSAGES: u64 = 6;

    /// The segment as a consumer left it; settling a consumer reads `head`
    /// (here counted in messages) and whether the role is held.
    fn segment_at(head: u64) -> shm::Inspection {
        shm::Inspection {
            name: "unit".into(),
            file_size: 0,
            error: None,
            position_error: None,
            capacity: CAPACITY,
            max_message: 0,
            head,
            tail: MESSAGES,
            used: MESSAGES - head,
            closed: true,
            producer_gen: 1,
            consumer_gen: 0,
            producer_held: false,
            consumer_held: false,
        }
    }

    /// The consumer loop of [`consume`] over a simulated ring holding the
    /// whole stream: reads of [`read_plan`] messages, each delivered, then
    /// the release recorded around the release store (`head`, in messages).
    /// That store counts against the bound like the side-page ones, so a
    /// bound of k stops the consumer where a `SIGKILL` after its k-th store
    /// would.
    fn consume_simulated(d: &mut Delivery<'_>, head: &AtomicU64) -> Result<(), i32> {
        let mut reads = 0;
        loop {
            // Relaxed: one thread owns both the simulated ring and the side page.
            let pre_head = head.load(Ordering::Relaxed);
            if pre_head == MESSAGES {
                break;
            }
            let take = read_plan(reads).min(MESSAGES - pre_head);
            reads += 1;
            for seq in pre_head..pre_head + take {
                let mut bytes = vec![0u8; message_len(seq, CAPACITY)];
                encode(seq, 0, &mut bytes);
                d.deliver(&bytes)?;
            }
            d.pending_release(pre_head)?;
            d.put(head, pre_head + take)?;
            d.released()?;
        }
        // Relaxed: as above.
        d.side.c_done.store(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs the next consumer of `run` from the released position, stopped
    /// after `stores` stores (`None`: to the end), and settles it as the
    /// driver would. Returns whether it reached the end of the stream.
    fn consumer_life(run: &mut Run<'_>, head: &AtomicU64, stores: Option<u64>) -> bool {
        run.next_consumer(None);
        let side = run.side();
        let incarnation = run.consumers.len() as u64 - 1;
        // Relaxed: this thread alone uses the side page here. What the
        // child would have recorded after its claim.
        side.c_gen.store(incarnation + 1, Ordering::Relaxed);
        let mut d = Delivery {
            side,
            capacity: CAPACITY,
            incarnation,
            producer: None,
            stores_left: stores,
        };
        let end = match consume_simulated(&mut d, head) {
            Ok(()) => End::Exited(EXIT_OK),
            Err(EXIT_STORES_SPENT) => End::Killed,
            Err(code) => End::Exited(code),
        };
        // Relaxed: as above.
        let at = head.load(Ordering::Relaxed);
        run.settle_consumer_seen(end, stores.is_some(), Some(segment_at(at)));
        end == End::Exited(EXIT_OK)
    }

    /// A consumer stopped after each of its stores in turn (k = 0, 1, … until
    /// one finishes the stream), then a successor from the released position:
    /// the checker must find the stream whole and the bookkeeping exact,
    /// wherever the first one stopped.
    #[test]
    fn a_consumer_killed_after_any_of_its_stores_is_accounted_exactly() {
        let page = SidePage::new().expect("side page");
        let mut k = 0;
        let (mut redelivered, mut in_doubt) = (0, 0);
        loop {
            page.side().reset_all();
            let mut report = CrashReport::default();
            let mut run = Run {
                page: &page,
                name: format!("unit-k{k}"),
                capacity: CAPACITY,
                end: MESSAGES,
                deadline: Instant::now() + RUN_DEADLINE,
                producers: vec![ProducerLife {
                    start: 0,
                    end: MESSAGES,
                    generation: 1,
                }],
                consumers: Vec::new(),
                producer: None,
                consumer: None,
                stats: RunStats::default(),
                report: &mut report,
            };
            let head = AtomicU64::new(0);
            let finished = consumer_life(&mut run, &head, Some(k));
            if !finished {
                assert!(consumer_life(&mut run, &head, None), "k = {k}");
            }
            run.check_stream();
            let stats = run.stats.clone();
            drop(run);
            assert!(
                report.violations.is_empty(),
                "stopped after {k} stores: {:#?}",
                report.violations
            );
            assert_eq!(report.order_violations, 0, "k = {k}");
            assert_eq!(report.duplicates_outside_batch, 0, "k = {k}");
            assert_eq!(report.child_failures, 0, "k = {k}");
            assert_eq!((stats.lost, stats.delivered), (0, MESSAGES), "k = {k}");
            redelivered += stats.duplicates;
            in_doubt += stats.in_doubt;
            if finished {
                break;
            }
            k += 1;
        }
        // Each message takes several stores: every one of them was a stop,
        // some inside an unreleased batch, some between a release and its
        // record.
        assert!(k > 4 * MESSAGES, "only {k} stores in a whole stream");
        assert!(redelivered > 0 && in_doubt > 0);
    }
}
