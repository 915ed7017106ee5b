//! A message stream through a ring: [`cross_process`] (shared memory, two
//! processes) and [`in_process`] (heap segment, two threads).
//!
//! The producing and consuming loops are written once over
//! [`ringproof::sync::Shared`], so both measure the same code.

use std::time::{Duration, Instant};

use ringproof::shm::{OpenMode, ShmConsumer, ShmProducer, TempName};
use ringproof::spsc::{Consumer, Producer};
use ringproof::sync::Shared;
use ringproof::{PopIntoError, PushError, ReadError};

use crate::process::{ControlPage, PinGuard, STALL, spawn};
use crate::{Api, BenchError, PARK, Throughput, Transfer, check, stamp};

/// Control word: the consumer drained the warm-up; the producer may go.
const GO: usize = 0;

/// Checks that a message of this size fits a ring of this size.
fn check_fits(cfg: &Transfer) -> Result<(), BenchError> {
    if !ringproof::layout::capacity_ok(cfg.ring_size) {
        return Err(BenchError::Config(
            "ring size must be a power of two of at least 32 bytes",
        ));
    }
    if cfg.message_size as u64 > ringproof::layout::max_message(cfg.ring_size) {
        return Err(BenchError::Config("message larger than the ring accepts"));
    }
    Ok(())
}

/// Producer and consumer in two processes over a POSIX shared-memory ring.
pub fn cross_process(cfg: &Transfer) -> Result<Throughput, BenchError> {
    check_fits(cfg)?;
    let name = TempName::new("bench-tp");
    let mut consumer = ShmConsumer::new(
        name.name(),
        OpenMode::Create {
            capacity: cfg.ring_size,
        },
    )?;
    let control = ControlPage::new()?;
    let (consumer_cpu, producer_cpu) = cfg.cpus();
    let child = spawn(producer_cpu, || {
        let mut producer = ShmProducer::new(name.name(), OpenMode::Open)?;
        produce(producer.as_producer_mut(), cfg, &control)
    })?;
    let result = {
        let _pin = PinGuard::pin(consumer_cpu)?;
        consume(consumer.as_consumer_mut(), cfg, &control)
    };
    child.finish(result)
}

/// Producer and consumer in two threads of this process over a heap ring
/// (`ringproof::heap::channel`): the in-process figure for the same code.
pub fn in_process(cfg: &Transfer) -> Result<Throughput, BenchError> {
    check_fits(cfg)?;
    let (mut producer, mut consumer) = ringproof::heap::channel(cfg.ring_size)?;
    let control = ControlPage::new()?;
    let (consumer_cpu, producer_cpu) = cfg.cpus();
    std::thread::scope(|scope| {
        let control = &control;
        let producing = scope.spawn(move || {
            if let Some(cpu) = producer_cpu {
                crate::pin_thread(cpu)?;
            }
            produce(&mut producer, cfg, control)
        });
        let result = {
            let _pin = PinGuard::pin(consumer_cpu)?;
            consume(&mut consumer, cfg, control)
        };
        let produced = producing
            .join()
            .map_err(|_| BenchError::Peer("producer thread panicked".into()))?;
        let throughput = result?;
        produced?;
        Ok(throughput)
    })
}

/// The producer's side: warm-up, wait for the signal, the timed stream, close.
pub(crate) fn produce<S: Shared>(
    producer: &mut Producer<S>,
    cfg: &Transfer,
    control: &ControlPage,
) -> Result<(), BenchError> {
    let mut message = vec![0xA5u8; cfg.message_size];
    let warmup = cfg.warmup_messages();
    send(producer, cfg, &mut message, 0, warmup)?;
    control.wait_for(GO, 1)?;
    send(producer, cfg, &mut message, warmup, warmup + cfg.messages)?;
    producer.close()?;
    Ok(())
}

/// Sends messages `from..to`.
fn send<S: Shared>(
    producer: &mut Producer<S>,
    cfg: &Transfer,
    message: &mut [u8],
    from: u64,
    to: u64,
) -> Result<(), BenchError> {
    let len = message.len();
    match cfg.api {
        Api::Single => {
            for seq in from..to {
                stamp(message, seq);
                loop {
                    match producer.push(message) {
                        Ok(()) => break,
                        Err(PushError::Full) => wait_writable(producer, len)?,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Api::Batch(_) => {
            let limit = cfg.batch_len();
            let mut seq = from;
            while seq < to {
                let mut batch = producer.batch();
                while batch.len() < limit && seq < to {
                    match batch.reserve(len) {
                        Ok(slot) => {
                            slot.copy_from_slice(message);
                            stamp(slot, seq);
                            seq += 1;
                        }
                        Err(PushError::Full) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                if batch.is_empty() {
                    drop(batch);
                    wait_writable(producer, len)?;
                } else {
                    batch.commit();
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn wait_writable<S: Shared>(
    producer: &mut Producer<S>,
    len: usize,
) -> Result<(), BenchError> {
    let start = Instant::now();
    while !producer.wait_writable(len, Some(PARK))? {
        if start.elapsed() > STALL {
            return Err(BenchError::Stalled);
        }
    }
    Ok(())
}

pub(crate) fn wait_readable<S: Shared>(consumer: &mut Consumer<S>) -> Result<(), BenchError> {
    let start = Instant::now();
    while !consumer.wait_readable(Some(PARK))? {
        if start.elapsed() > STALL {
            return Err(BenchError::Stalled);
        }
    }
    Ok(())
}

/// The consumer's side: drain the warm-up, signal, time the stream, then
/// expect the end of stream.
pub(crate) fn consume<S: Shared>(
    consumer: &mut Consumer<S>,
    cfg: &Transfer,
    control: &ControlPage,
) -> Result<Throughput, BenchError> {
    let mut buf = vec![0u8; cfg.message_size];
    let warmup = cfg.warmup_messages();
    receive(consumer, cfg, &mut buf, 0, warmup)?;
    control.set(GO, 1);
    let start = Instant::now();
    receive(consumer, cfg, &mut buf, warmup, warmup + cfg.messages)?;
    let elapsed = start.elapsed();
    loop {
        match consumer.pop_into(&mut buf) {
            Err(PopIntoError::Closed) => break,
            Err(PopIntoError::Empty) => wait_readable(consumer)?,
            Ok(_) => {
                return Err(BenchError::Mismatch {
                    expected: warmup + cfg.messages,
                    found: u64::MAX,
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Throughput {
        messages: cfg.messages,
        bytes: cfg.messages * cfg.message_size as u64,
        elapsed: elapsed.max(Duration::from_nanos(1)),
    })
}

/// Receives messages `from..to`, copying each into `buf`.
fn receive<S: Shared>(
    consumer: &mut Consumer<S>,
    cfg: &Transfer,
    buf: &mut [u8],
    from: u64,
    to: u64,
) -> Result<(), BenchError> {
    let len = buf.len();
    match cfg.api {
        Api::Single => {
            for seq in from..to {
                loop {
                    match consumer.pop_into(buf) {
                        Ok(got) => {
                            check(&buf[..got], len, seq)?;
                            std::hint::black_box(&mut *buf);
                            break;
                        }
                        Err(PopIntoError::Empty) => wait_readable(consumer)?,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Api::Batch(_) => {
            let limit = cfg.batch_len();
            let mut seq = from;
            while seq < to {
                let mut batch = consumer.read_batch();
                while batch.len() < limit && seq < to {
                    match batch.read() {
                        Ok(message) => {
                            check(message, len, seq)?;
                            buf.copy_from_slice(message);
                            std::hint::black_box(&mut *buf);
                            seq += 1;
                        }
                        Err(ReadError::Empty) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                if batch.is_empty() {
                    drop(batch);
                    wait_readable(consumer)?;
                } else {
                    batch.release();
                }
            }
        }
    }
    Ok(())
}
