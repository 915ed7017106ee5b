//! Waiting on the other side of a ring: blocking with peer-death detection,
//! and rate limiting.
//!
//! The waits are `ShmProducer::wait_room` and `ShmConsumer::wait_message`
//! (bounded parks, with the peer's role lease checked between them); these
//! helpers turn their outcomes into the CLI's exit codes.

use std::time::{Duration, Instant};

use ringproof::shm::{ShmConsumer, ShmError, ShmProducer};

use crate::exit::CliError;
use crate::size::human_duration;

/// Longest single wait of a producer that gives up when its consumer dies.
const PARK: Duration = Duration::from_millis(50);

/// What a producer waiting for room does when its consumer has died.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConsumerDeath {
    /// Keep waiting: a successor consumer resumes where the dead one
    /// stopped (the unreleased messages are delivered to it).
    WaitForSuccessor,
    /// Give up with exit 3 (the bench and demo children).
    Fail,
}

/// How a wait ended when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// The awaited condition holds.
    Ready,
    /// The timeout passed first.
    TimedOut,
}

/// Waits until a `len`-byte message fits in the ring.
pub fn wait_room(
    producer: &mut ShmProducer,
    len: usize,
    on_death: OnConsumerDeath,
) -> Result<(), CliError> {
    let slice = match on_death {
        OnConsumerDeath::WaitForSuccessor => None,
        OnConsumerDeath::Fail => Some(PARK),
    };
    loop {
        match producer.wait_room(len, slice) {
            Ok(()) => return Ok(()),
            Err(ShmError::TimedOut) => {
                if producer.consumer_gone()? {
                    return Err(CliError::peer_died(
                        "the consumer died while the ring was full",
                    ));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until a message (or the end of stream) can be read, up to
/// `timeout`. A producer that died without closing is exit 3, but only once
/// every message it committed has been read.
pub fn wait_message(
    consumer: &mut ShmConsumer,
    timeout: Option<Duration>,
) -> Result<Waited, CliError> {
    match consumer.wait_message(timeout) {
        Ok(()) => Ok(Waited::Ready),
        Err(ShmError::TimedOut) => Ok(Waited::TimedOut),
        Err(ShmError::PeerDied(_)) => Err(CliError::peer_died(
            "the producer died without closing the ring (every message it committed was delivered)",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The error for a wait that timed out.
pub fn no_message_within(timeout: Duration) -> CliError {
    CliError::peer_died(format!(
        "no message within {} (--timeout); giving up",
        human_duration(timeout)
    ))
}

/// Keeps a byte stream at or under a rate by sleeping.
#[derive(Debug)]
pub struct Pacer {
    rate: Option<u64>,
    start: Instant,
    bytes: u64,
}

impl Pacer {
    /// A pacer for `rate` bytes per second (`None`: no limit).
    pub fn new(rate: Option<u64>) -> Self {
        Pacer {
            rate,
            start: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `bytes` more and sleeps until the average is back at the rate.
    pub fn account(&mut self, bytes: usize) {
        let Some(rate) = self.rate else { return };
        self.bytes = self.bytes.saturating_add(bytes as u64);
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            std::thread::sleep(due - elapsed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_holds_the_rate() {
        let mut pacer = Pacer::new(Some(100_000));
        let start = Instant::now();
        for _ in 0..10 {
            pacer.account(2_000);
        }
        // 20 kB at 100 kB/s takes at least 200 ms.
        assert!(start.elapsed() >= Duration::from_millis(195));
    }

    #[test]
    fn unlimited_pacer_does_not_sleep() {
        let mut pacer = Pacer::new(None);
        let start = Instant::now();
        pacer.account(usize::MAX);
        assert!(start.elapsed() < Duration::from_millis(100));
    }
}
