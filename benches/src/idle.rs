//! The CPU a blocked consumer burns on an idle ring.

use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use ringproof::shm::{OpenMode, ShmConsumer, ShmError, ShmProducer, TempName};

use crate::BenchError;

/// CPU time used over a wall-clock interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuUse {
    /// User plus system time of the waiting thread.
    pub cpu: Duration,
    /// Wall-clock time waited.
    pub wall: Duration,
}

impl CpuUse {
    /// `cpu / wall`, in percent.
    pub fn percent(&self) -> f64 {
        100.0 * self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

fn thread_cpu() -> Result<Duration, BenchError> {
    let usage = getrusage(UsageWho::RUSAGE_THREAD).map_err(|e| BenchError::Os("getrusage", e))?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok(micros(usage.user_time()) + micros(usage.system_time()))
}

/// Blocks a consumer in `read_blocking` on a ring whose producer is attached
/// but sends nothing, for `wait`, and returns the CPU the calling thread used.
pub fn consumer_cpu(wait: Duration) -> Result<CpuUse, BenchError> {
    let name = TempName::new("bench-idle");
    let mut consumer = ShmConsumer::new(name.name(), OpenMode::Create { capacity: 4096 })?;
    let _producer = ShmProducer::new(name.name(), OpenMode::Open)?;
    let cpu_before = thread_cpu()?;
    let start = Instant::now();
    match consumer.read_blocking(Some(wait)) {
        Err(ShmError::TimedOut) => {}
        Ok(_) => return Err(BenchError::Config("a message arrived on an idle ring")),
        Err(e) => return Err(e.into()),
    }
    let wall = start.elapsed();
    let cpu = thread_cpu()? - cpu_before;
    Ok(CpuUse { cpu, wall })
}
