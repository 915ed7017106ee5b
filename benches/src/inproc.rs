//! Well-known in-process queues moving the same stream between two pinned
//! threads: `rtrb` (single `push`/`pop` and the chunk API) and crossbeam's
//! `ArrayQueue`. A message is a `[u8; N]` value, so the queue copies it in
//! and out as the ring does; `N` is one of [`SIZES`]. Neither queue can
//! block, so both sides spin (`spin_loop`) when it is full or empty.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::process::{ControlPage, PinGuard, STALL};
use crate::{Api, BenchError, Throughput, Transfer, check, stamp};

/// Message sizes the in-process peers are built for.
pub const SIZES: [usize; 4] = [8, 64, 1024, 64 * 1024];

/// Control words.
const GO: usize = 0;
const ABORT: usize = 1;

/// A spin-wait that gives up when the other side aborted or stalled.
struct Spinner<'a> {
    control: &'a ControlPage,
    start: Instant,
    spins: u32,
}

impl<'a> Spinner<'a> {
    fn new(control: &'a ControlPage) -> Self {
        Spinner {
            control,
            start: Instant::now(),
            spins: 0,
        }
    }

    #[inline]
    fn spin(&mut self) -> Result<(), BenchError> {
        std::hint::spin_loop();
        self.spins = self.spins.wrapping_add(1);
        if self.spins % (1 << 16) == 0 {
            // Relaxed: only a stop request; nothing is read after it.
            if self.control.word(ABORT).load(Ordering::Relaxed) != 0 {
                return Err(BenchError::Peer("the other thread failed".into()));
            }
            if self.start.elapsed() > STALL {
                return Err(BenchError::Stalled);
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        if self.spins != 0 {
            self.spins = 0;
            self.start = Instant::now();
        }
    }
}

/// Runs `send(from, to)` in a pinned producer thread and `receive(from, to)`
/// in the calling (pinned) thread: warm-up, start signal, timed stream.
fn pair<S, R>(cfg: &Transfer, mut send: S, mut receive: R) -> Result<Throughput, BenchError>
where
    S: FnMut(u64, u64, &ControlPage) -> Result<(), BenchError> + Send,
    R: FnMut(u64, u64, &ControlPage) -> Result<(), BenchError>,
{
    let control = ControlPage::new()?;
    let (consumer_cpu, producer_cpu) = cfg.cpus();
    let warmup = cfg.warmup_messages();
    let end = warmup + cfg.messages;
    std::thread::scope(|scope| {
        let control = &control;
        let producing = scope.spawn(move || {
            let result = (|| {
                if let Some(cpu) = producer_cpu {
                    crate::pin_thread(cpu)?;
                }
                send(0, warmup, control)?;
                control.wait_for(GO, 1)?;
                send(warmup, end, control)
            })();
            if result.is_err() {
                control.set(ABORT, 1);
            }
            result
        });
        let result: Result<Duration, BenchError> = (|| {
            let _pin = PinGuard::pin(consumer_cpu)?;
            receive(0, warmup, control)?;
            control.set(GO, 1);
            let start = Instant::now();
            receive(warmup, end, control)?;
            Ok(start.elapsed())
        })();
        if result.is_err() {
            control.set(ABORT, 1);
            control.set(GO, 1);
        }
        let produced = producing
            .join()
            .map_err(|_| BenchError::Peer("producer thread panicked".into()))?;
        let elapsed: Duration = result?;
        produced?;
        Ok(Throughput {
            messages: cfg.messages,
            bytes: cfg.messages * cfg.message_size as u64,
            elapsed: elapsed.max(Duration::from_nanos(1)),
        })
    })
}

macro_rules! dispatch {
    ($cfg:expr, $f:ident) => {
        match $cfg.message_size {
            8 => $f::<8>($cfg),
            64 => $f::<64>($cfg),
            1024 => $f::<1024>($cfg),
            65536 => $f::<65536>($cfg),
            _ => Err(BenchError::Config(
                "in-process peers take messages of 8, 64, 1024 or 65536 bytes",
            )),
        }
    };
}

/// Slots of `N` bytes in a queue of `ring_size` bytes (at least 2).
fn slots<const N: usize>(cfg: &Transfer) -> usize {
    (usize::try_from(cfg.ring_size).unwrap_or(usize::MAX) / N).max(2)
}

/// `rtrb`: [`Api::Single`] uses `push`/`pop`, [`Api::Batch`]`(k)` writes and
/// reads chunks of up to `k` slots (`write_chunk_uninit`, `read_chunk`).
pub fn rtrb(cfg: &Transfer) -> Result<Throughput, BenchError> {
    dispatch!(cfg, rtrb_n)
}

fn rtrb_n<const N: usize>(cfg: &Transfer) -> Result<Throughput, BenchError> {
    let (mut producer, mut consumer) = rtrb::RingBuffer::<[u8; N]>::new(slots::<N>(cfg));
    let limit = cfg.batch_len();
    let single = cfg.api == Api::Single;
    let mut message = [0xA5u8; N];
    let send = move |from: u64, to: u64, control: &ControlPage| {
        let mut spinner = Spinner::new(control);
        let mut seq = from;
        while seq < to {
            if single {
                stamp(&mut message, seq);
                if producer.push(message).is_ok() {
                    seq += 1;
                    spinner.reset();
                } else {
                    spinner.spin()?;
                }
            } else {
                let n = producer.slots().min(limit).min((to - seq) as usize);
                if n == 0 {
                    spinner.spin()?;
                    continue;
                }
                let Ok(chunk) = producer.write_chunk_uninit(n) else {
                    return Err(BenchError::Config("rtrb chunk unavailable"));
                };
                let first = seq;
                chunk.fill_from_iter((first..first + n as u64).map(|s| {
                    stamp(&mut message, s);
                    message
                }));
                seq += n as u64;
                spinner.reset();
            }
        }
        Ok(())
    };
    let mut buf = [0u8; N];
    let receive = move |from: u64, to: u64, control: &ControlPage| {
        let mut spinner = Spinner::new(control);
        let mut seq = from;
        while seq < to {
            if single {
                match consumer.pop() {
                    Ok(message) => {
                        buf = message;
                        check(&buf, N, seq)?;
                        std::hint::black_box(&mut buf);
                        seq += 1;
                        spinner.reset();
                    }
                    Err(_) => spinner.spin()?,
                }
            } else {
                let n = consumer.slots().min(limit).min((to - seq) as usize);
                if n == 0 {
                    spinner.spin()?;
                    continue;
                }
                let Ok(chunk) = consumer.read_chunk(n) else {
                    return Err(BenchError::Config("rtrb chunk unavailable"));
                };
                let (first, second) = chunk.as_slices();
                for message in first.iter().chain(second) {
                    buf.copy_from_slice(message);
                    check(&buf, N, seq)?;
                    std::hint::black_box(&mut buf);
                    seq += 1;
                }
                chunk.commit_all();
                spinner.reset();
            }
        }
        Ok(())
    };
    pair(cfg, send, receive)
}

/// crossbeam's `ArrayQueue` (`push`/`pop`; it has no batch API, so
/// [`Api::Batch`] is refused).
pub fn array_queue(cfg: &Transfer) -> Result<Throughput, BenchError> {
    if cfg.api != Api::Single {
        return Err(BenchError::Config("ArrayQueue has no batch API"));
    }
    dispatch!(cfg, array_queue_n)
}

fn array_queue_n<const N: usize>(cfg: &Transfer) -> Result<Throughput, BenchError> {
    let queue = ArrayQueue::<[u8; N]>::new(slots::<N>(cfg));
    let queue = &queue;
    let mut message = [0xA5u8; N];
    let send = move |from: u64, to: u64, control: &ControlPage| {
        let mut spinner = Spinner::new(control);
        let mut seq = from;
        while seq < to {
            stamp(&mut message, seq);
            if queue.push(message).is_ok() {
                seq += 1;
                spinner.reset();
            } else {
                spinner.spin()?;
            }
        }
        Ok(())
    };
    let receive = move |from: u64, to: u64, control: &ControlPage| {
        let mut spinner = Spinner::new(control);
        let mut seq = from;
        while seq < to {
            match queue.pop() {
                Some(message) => {
                    let mut buf = message;
                    check(&buf, N, seq)?;
                    std::hint::black_box(&mut buf);
                    seq += 1;
                    spinner.reset();
                }
                None => spinner.spin()?,
            }
        }
        Ok(())
    };
    pair(cfg, send, receive)
}
