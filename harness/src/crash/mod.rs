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
//! - **mpsc**: both of the above for the MPSC ring, with several producer
//!   processes and one consumer (see `mpsc/mod.rs`).
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
//!
//! Where things live:
//!
//! - `config.rs`: the parameters ([`CrashConfig`]) and [`CrashError`];
//! - `report.rs`: [`CrashReport`] and its rows;
//! - `hook.rs`: the crash hook;
//! - `side.rs`: the side page, what children record for the driver;
//! - `message.rs`: the numbered, checksummed messages and the send and read plans;
//! - `child.rs`: the producer and consumer children;
//! - `process.rs`: forking, waiting for and killing children;
//! - `run.rs`: one run, and the checks of its stream and segment;
//! - `experiment.rs`: points and random mode;
//! - `mpsc/`: the same for the MPSC ring (several producers, one
//!   consumer): its side page, children, driver and checker;
//! - `cli.rs`: `ringproof crash`.
#![allow(clippy::disallowed_types)] // the side page is ours, not the ring's: plain atomics.

mod child;
mod cli;
mod config;
mod experiment;
mod hook;
mod message;
mod mpsc;
mod process;
mod report;
mod run;
mod side;
#[cfg(test)]
mod tests;

use std::time::Duration;

#[cfg(doc)]
use ringproof::{
    mem::MemShared,
    sync::{CrashHook, CrashPoint},
};

pub use cli::{CrashArgs, run};
pub use config::{CrashConfig, CrashError, ModeArg, RoleArg};
pub use experiment::run_experiment;
pub use hook::{CrashMpsc, CrashShared, KillAt};
pub use mpsc::MPSC_POINTS;
pub use mpsc::check::{Evidence, ProducerFacts, Verdict, check};
pub use report::{CrashReport, PointRow, Progress};

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
/// Unit tests only: a [`Delivery`](child::Delivery) ran out of its side-page stores (the
/// simulated death of a consumer between two of its stores).
const EXIT_STORES_SPENT: i32 = 26;
/// An MPSC consumer read `Corrupted` from the ring.
const EXIT_CORRUPTED: i32 = 28;
