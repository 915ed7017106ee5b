//! `send` and `recv`: a byte stream through a ring, one message per chunk.
//!
//! Both sides open the ring with [`OpenMode::CreateOrOpen`], so either may
//! start first. `send` ends the stream with `close`; `recv` writes payloads
//! to stdout and releases them only after flushing them, so a `recv` killed at
//! any point loses nothing: its successor starts at the last released message
//! (and may write again what the killed one flushed but had not released).

use std::io::{BufWriter, Read, Write};

use ringproof::shm::{OpenMode, ShmConsumer, ShmError, ShmProducer};
use ringproof::{PushError, ReadError};

use crate::cli::{RecvArgs, SendArgs};
use crate::exit::CliError;
use crate::peer::{self, OnConsumerDeath, Pacer, Waited};
use crate::stdio::{is_broken_pipe, stdin_file, stdout_file};

/// Opens the producer side, explaining a name that holds an unread finished stream.
fn open_producer(name: &str, size: u64) -> Result<ShmProducer, CliError> {
    match ShmProducer::new(name, OpenMode::CreateOrOpen { capacity: size }) {
        Ok(producer) => Ok(producer),
        Err(ShmError::Ring(ringproof::Error::Closed)) => Err(CliError::invalid(format!(
            "segment {name} holds a closed stream not read to its end yet: receive it with `ringproof recv --name {name}` or remove it with `ringproof clean --name {name}`"
        ))),
        Err(e) => Err(CliError::from(e).context(format!("cannot open {name} as producer"))),
    }
}

/// `ringproof send`: stdin to the ring; closes the ring at end of input.
pub fn send(args: &SendArgs) -> Result<(), CliError> {
    let mut input = stdin_file()?;
    let mut producer = open_producer(&args.name, args.size)?;
    let chunk = usize::try_from(args.message_size)
        .unwrap_or(usize::MAX)
        .min(producer.max_message())
        .max(1);
    let mut buf = vec![0u8; chunk];
    let mut pacer = Pacer::new(args.rate_limit);
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CliError::unexpected(format!("reading standard input: {e}"))),
        };
        loop {
            match producer.push(&buf[..n]) {
                Ok(()) => break,
                Err(PushError::Full) => {
                    peer::wait_room(&mut producer, n, OnConsumerDeath::WaitForSuccessor)?;
                }
                Err(e) => return Err(CliError::from(e).context("sending")),
            }
        }
        pacer.account(n);
    }
    producer
        .close()
        .map_err(|e| CliError::from(e).context("closing the ring"))?;
    Ok(())
}

/// What ended a receive loop without an error.
enum End {
    /// The producer closed the stream and every message was written.
    Stream,
    /// Standard output was closed by its reader.
    BrokenPipe,
}

/// `ringproof recv`: the ring to stdout, until end of stream.
pub fn recv(args: &RecvArgs) -> Result<(), CliError> {
    let mut out = BufWriter::with_capacity(256 * 1024, stdout_file()?);
    let mut consumer = ShmConsumer::new(
        &args.name,
        OpenMode::CreateOrOpen {
            capacity: args.size,
        },
    )
    .map_err(|e| CliError::from(e).context(format!("cannot open {} as consumer", args.name)))?;
    let result = receive(&mut consumer, &mut out, args);
    let flushed = out.flush();
    match result {
        Ok(End::BrokenPipe) => Ok(()),
        Ok(End::Stream) => match flushed {
            Err(e) if is_broken_pipe(&e) => Ok(()),
            Err(e) => Err(CliError::unexpected(format!(
                "writing standard output: {e}"
            ))),
            Ok(()) => Ok(()),
        },
        Err(e) => Err(e),
    }
}

/// Bytes written to stdout before the batch holding them is released.
const RELEASE_EVERY: usize = 256 * 1024;

/// How a batch of reads ended.
enum Stop {
    /// Enough bytes for one flush; more may be waiting.
    Batch,
    /// The ring was empty.
    Empty,
    /// End of stream.
    Closed,
    /// Standard output was closed by its reader.
    BrokenPipe,
}

fn receive(
    consumer: &mut ShmConsumer,
    out: &mut BufWriter<std::fs::File>,
    args: &RecvArgs,
) -> Result<End, CliError> {
    let mut pacer = Pacer::new(args.rate_limit);
    let write_error = |e: std::io::Error| -> Result<Stop, CliError> {
        if is_broken_pipe(&e) {
            Ok(Stop::BrokenPipe)
        } else {
            Err(CliError::unexpected(format!(
                "writing standard output: {e}"
            )))
        }
    };
    loop {
        // Messages are released only once their bytes are flushed to stdout:
        // a recv killed at any point loses nothing; its successor delivers
        // again at most this unreleased batch.
        let mut batch = consumer.read_batch();
        let mut bytes = 0usize;
        let stop = loop {
            match batch.read() {
                Ok(message) => {
                    bytes += message.len();
                    if let Err(e) = out.write_all(message) {
                        break write_error(e)?;
                    }
                    pacer.account(message.len());
                    if bytes >= RELEASE_EVERY {
                        break Stop::Batch;
                    }
                }
                Err(ReadError::Empty) => break Stop::Empty,
                Err(ReadError::Closed) => break Stop::Closed,
                Err(e) => return Err(CliError::from(e).context("receiving")),
            }
        };
        if matches!(stop, Stop::BrokenPipe) {
            // Not delivered: the batch stays in the ring for another reader.
            return Ok(End::BrokenPipe);
        }
        if let Err(e) = out.flush() {
            write_error(e)?;
            return Ok(End::BrokenPipe);
        }
        batch.release();
        match stop {
            Stop::Batch => {}
            Stop::Closed => return Ok(End::Stream),
            Stop::BrokenPipe => return Ok(End::BrokenPipe),
            Stop::Empty => match peer::wait_message(consumer, args.timeout)? {
                Waited::Ready => {}
                Waited::TimedOut => {
                    return Err(peer::no_message_within(args.timeout.unwrap_or_default()));
                }
            },
        }
    }
}
