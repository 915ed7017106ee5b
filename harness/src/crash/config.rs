//! The parameters of an experiment ([`CrashConfig`], from the environment
//! and the command line) and why one could not run ([`CrashError`]).

use std::fmt;

use serde::Serialize;

use ringproof::layout::MIN_CAPACITY;
use ringproof::shm::{Role, ShmError};

use super::message::splitmix;
use super::mpsc::{DEFAULT_PRODUCERS, MAX_PRODUCERS};
use super::{
    DEFAULT_CAPACITY, DEFAULT_KILLS, DEFAULT_MAX_K, DEFAULT_MESSAGES, MIN_EXPERIMENT_CAPACITY,
};

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
    /// Whether the experiment kills children of `role`.
    pub(super) fn kills(self, role: Role) -> bool {
        match role {
            Role::Producer => self != RoleArg::Consumer,
            Role::Consumer => self != RoleArg::Producer,
        }
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
    /// The MPSC ring: several producer processes into one consumer; every
    /// crash point × k of one producer among live ones and of the
    /// consumer, then a random soak killing producers and the consumer.
    Mpsc,
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
    /// MPSC mode: producer processes (each a producer id with its own sequence).
    pub producers: u64,
}

impl CrashConfig {
    /// Defaults, overridden by
    /// `RINGPROOF_CRASH_{KILLS,MESSAGES,CAPACITY,MAX_K,SEED,PRODUCERS}`.
    pub fn from_env(role: RoleArg, mode: ModeArg) -> Result<Self, CrashError> {
        Ok(CrashConfig {
            role,
            mode,
            kills: env_u64("RINGPROOF_CRASH_KILLS", DEFAULT_KILLS)?,
            messages: env_u64("RINGPROOF_CRASH_MESSAGES", DEFAULT_MESSAGES)?,
            capacity: env_u64("RINGPROOF_CRASH_CAPACITY", DEFAULT_CAPACITY)?,
            max_k: env_u64("RINGPROOF_CRASH_MAX_K", DEFAULT_MAX_K)?,
            seed: env_u64("RINGPROOF_CRASH_SEED", clock_seed())?,
            producers: env_u64("RINGPROOF_CRASH_PRODUCERS", DEFAULT_PRODUCERS)?,
        })
    }

    pub(super) fn check(&self) -> Result<(), CrashError> {
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
        if self.mode == ModeArg::Mpsc && !(2..=MAX_PRODUCERS as u64).contains(&self.producers) {
            return Err(CrashError::Config(format!(
                "producers {} must be from 2 to {MAX_PRODUCERS}",
                self.producers
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
