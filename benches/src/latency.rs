//! One-way latency: [`ring`] bounces a message over two shared-memory rings
//! between two processes; [`cache_line`] bounces one cache line, the floor
//! any shared-memory channel between these two CPUs can reach.
//!
//! Both time every round trip with `Instant::now()` on the initiating side
//! and record half of it (RTT/2) in an HDR histogram, so the two figures
//! carry the same timer overhead (one clock read, about 20 ns, per sample).

use std::sync::atomic::Ordering;
use std::time::Instant;

use hdrhistogram::Histogram;
use ringproof::shm::{OpenMode, ShmConsumer, ShmProducer, TempName};
use ringproof::spsc::{Consumer, Producer};
use ringproof::sync::Shared;
use ringproof::{PopIntoError, PushError};

use crate::process::{ControlPage, PinGuard, STALL, cpu_pair, spawn};
use crate::{BenchError, Latency, PARK};

/// Round trips made before recording starts.
const WARMUP: u64 = 10_000;

/// A ping-pong over two rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingPong {
    /// Payload bytes of each message.
    pub message_size: usize,
    /// Capacity of each ring.
    pub ring_size: u64,
    /// Round trips recorded.
    pub round_trips: u64,
    /// Pin the two sides to two CPUs when there are two.
    pub pin: bool,
}

fn cpus(pin: bool) -> (Option<usize>, Option<usize>) {
    match (pin, cpu_pair()) {
        (true, Some((ours, peer))) => (Some(ours), Some(peer)),
        _ => (None, None),
    }
}

fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|_| BenchError::Config("histogram bounds"))
}

pub(crate) fn summary(histogram: &Histogram<u64>) -> Latency {
    Latency {
        samples: histogram.len(),
        avg: histogram.mean(),
        p50: histogram.value_at_quantile(0.5),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
    }
}

/// One-way latency of a message over a shared-memory ring: RTT/2 of a
/// ping-pong over two rings (the peer echoes each message back).
pub fn ring(cfg: &PingPong) -> Result<Latency, BenchError> {
    if cfg.message_size as u64 > ringproof::layout::max_message(cfg.ring_size)
        || !ringproof::layout::capacity_ok(cfg.ring_size)
    {
        return Err(BenchError::Config("message larger than the ring accepts"));
    }
    let ping_name = TempName::new("bench-ping");
    let pong_name = TempName::new("bench-pong");
    let mut ping = ShmProducer::new(
        ping_name.name(),
        OpenMode::Create {
            capacity: cfg.ring_size,
        },
    )?;
    let mut pong = ShmConsumer::new(
        pong_name.name(),
        OpenMode::Create {
            capacity: cfg.ring_size,
        },
    )?;
    let (our_cpu, peer_cpu) = cpus(cfg.pin);
    let child = spawn(peer_cpu, || {
        let mut ping = ShmConsumer::new(ping_name.name(), OpenMode::Open)?;
        let mut pong = ShmProducer::new(pong_name.name(), OpenMode::Open)?;
        echo(
            ping.as_consumer_mut(),
            pong.as_producer_mut(),
            cfg.message_size,
        )
    })?;
    let result = {
        let _pin = PinGuard::pin(our_cpu)?;
        bounce(ping.as_producer_mut(), pong.as_consumer_mut(), cfg)
    };
    // Closing the ping ring ends the echo loop (also after a failure).
    let closed = ping.close();
    let latency = child.finish(result)?;
    closed?;
    Ok(latency)
}

fn echo<P: Shared, Q: Shared>(
    ping: &mut Consumer<P>,
    pong: &mut Producer<Q>,
    len: usize,
) -> Result<(), BenchError> {
    let mut buf = vec![0u8; len];
    loop {
        match ping.pop_into(&mut buf) {
            Ok(got) => push(pong, &buf[..got])?,
            Err(PopIntoError::Empty) => {
                ping.wait_readable(Some(PARK))?;
            }
            Err(PopIntoError::Closed) => return Ok(pong.close()?),
            Err(e) => return Err(e.into()),
        }
    }
}

fn push<S: Shared>(producer: &mut Producer<S>, message: &[u8]) -> Result<(), BenchError> {
    loop {
        match producer.push(message) {
            Ok(()) => return Ok(()),
            Err(PushError::Full) => {
                producer.wait_writable(message.len(), Some(PARK))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn bounce<P: Shared, Q: Shared>(
    ping: &mut Producer<P>,
    pong: &mut Consumer<Q>,
    cfg: &PingPong,
) -> Result<Latency, BenchError> {
    let mut message = vec![0x5Au8; cfg.message_size];
    let mut buf = vec![0u8; cfg.message_size];
    let mut histogram = histogram()?;
    for round in 0..WARMUP + cfg.round_trips {
        crate::stamp(&mut message, round);
        let start = Instant::now();
        push(ping, &message)?;
        loop {
            match pong.pop_into(&mut buf) {
                Ok(got) => {
                    crate::check(&buf[..got], cfg.message_size, round)?;
                    break;
                }
                Err(PopIntoError::Empty) => {
                    if !pong.wait_readable(Some(PARK))? && start.elapsed() > STALL {
                        return Err(BenchError::Stalled);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        let rtt = start.elapsed().as_nanos() as u64;
        if round >= WARMUP {
            let _ = histogram.record((rtt / 2).max(1));
        }
    }
    Ok(summary(&histogram))
}

/// Slot of the bounced word in the control page.
const BALL: usize = 1;
/// Value that tells the peer to stop.
const STOP: u64 = u64::MAX;

/// The hardware floor: one-way latency of a cache line between two
/// processes (RTT/2 of an `AtomicU64` in a shared mapping bounced between
/// them, each side spinning on plain loads).
pub fn cache_line(round_trips: u64, pin: bool) -> Result<Latency, BenchError> {
    let control = ControlPage::new()?;
    let (our_cpu, peer_cpu) = cpus(pin);
    let child = spawn(peer_cpu, || {
        let ball = control.word(BALL);
        let mut expected = 1u64;
        let mut spins = 0u64;
        let mut since = Instant::now();
        loop {
            // Acquire: pairs with the parent's Release store of an odd value.
            let seen = ball.load(Ordering::Acquire);
            if seen == STOP {
                return Ok(());
            }
            if seen == expected {
                // Release: pairs with the parent's Acquire load below.
                ball.store(seen + 1, Ordering::Release);
                expected += 2;
                spins = 0;
            } else {
                spins += 1;
                if spins % (1 << 20) == 0 {
                    if since.elapsed() > STALL {
                        return Err(BenchError::Stalled);
                    }
                    since = Instant::now();
                }
            }
        }
    })?;
    let result = (|| {
        let _pin = PinGuard::pin(our_cpu)?;
        let ball = control.word(BALL);
        let mut histogram = histogram()?;
        for round in 0..WARMUP + round_trips {
            let serve = 2 * round + 1;
            let start = Instant::now();
            // Release: pairs with the child's Acquire load.
            ball.store(serve, Ordering::Release);
            let mut spins = 0u64;
            // Acquire: pairs with the child's Release store of `serve + 1`.
            while ball.load(Ordering::Acquire) != serve + 1 {
                spins += 1;
                if spins % (1 << 20) == 0 && start.elapsed() > STALL {
                    return Err(BenchError::Stalled);
                }
            }
            let rtt = start.elapsed().as_nanos() as u64;
            if round >= WARMUP {
                let _ = histogram.record((rtt / 2).max(1));
            }
        }
        Ok(summary(&histogram))
    })();
    control.set(BALL, STOP);
    child.finish(result)
}
