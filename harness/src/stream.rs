//! `send` and `recv`: a byte stream through a ring, one message per chunk.
//!
//! Both sides open the ring with [`OpenMode::CreateOrOpen`], so either may
//! start first. `send` ends the stream with `close`; `recv` writes payloads
//! to stdout and releases them only after flushing them, so a `recv` killed at
//! any point loses nothing: its successor starts at the last released message
//! (and may write again what the killed one flushed but had not released).
//!
//! With `--mode mpsc` the ring is an MPSC one: each `send` takes a producer
//! slot and, at end of input, leaves closing the stream if no other sender
//! is attached; `recv` reads the senders' messages as they were committed.
//! `recv` reads the kind of an existing ring from its header.

use std::io::{BufWriter, Read, Write};

use ringproof::shm::{
    OpenMode, RingKind, Segment, ShmConsumer, ShmError, ShmMpscConsumer, ShmMpscProducer,
    ShmProducer,
};
use ringproof::{PushError, ReadError};

use crate::cli::{RecvArgs, RingMode, SendArgs};
use crate::exit::CliError;
use crate::peer::{self, OnConsumerDeath, Pacer, Waited};
use crate::stdio::{is_broken_pipe, stdin_file, stdout_file};

/// Opens the producer side, explaining a name that holds an unread finished stream.
fn open_producer(name: &str, size: u64) -> Result<ShmProducer, CliError> {
    match ShmProducer::new(name, OpenMode::CreateOrOpen { capacity: size }) {
        Ok(producer) => Ok(producer),
        Err(ShmError::Ring(ringproof::Error::Closed)) => Err(closed_stream(name)),
        Err(e) => Err(CliError::from(e).context(format!("cannot open {name} as producer"))),
    }
}

/// The error for a name that holds a closed stream not read to its end.
fn closed_stream(name: &str) -> CliError {
    CliError::invalid(format!(
        "segment {name} holds a closed stream not read to its end yet: receive it with `ringproof recv --name {name}` or remove it with `ringproof clean --name {name}`"
    ))
}

/// Reads stdin in chunks of at most `chunk` bytes, handing each to `push`.
fn each_chunk(
    chunk: usize,
    rate_limit: Option<u64>,
    mut push: impl FnMut(&[u8]) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut input = stdin_file()?;
    let mut buf = vec![0u8; chunk];
    let mut pacer = Pacer::new(rate_limit);
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CliError::unexpected(format!("reading standard input: {e}"))),
        };
        push(&buf[..n])?;
        pacer.account(n);
    }
}

/// `ringproof send --mode mpsc`: stdin to an MPSC ring, in a producer slot;
/// the last sender to finish closes the stream.
fn send_mpsc(args: &SendArgs) -> Result<(), CliError> {
    let name = &args.name;
    let open = OpenMode::CreateOrOpen {
        capacity: args.size,
    };
    let mut producer = match ShmMpscProducer::new(name, open) {
        Ok(producer) => producer,
        Err(ShmError::MpscPush(ringproof::mpsc::PushError::Closed)) => {
            return Err(closed_stream(name));
        }
        Err(e) => {
            return Err(CliError::from(e).context(format!("cannot open {name} as producer")));
        }
    };
    let chunk = usize::try_from(args.message_size)
        .unwrap_or(usize::MAX)
        .min(producer.max_message())
        .max(1);
    // A dead consumer leaves the ring full until a successor takes its
    // role over: wait for one, as the SPSC sender does.
    each_chunk(chunk, args.rate_limit, |bytes| {
        producer
            .push_blocking(bytes, None)
            .map_err(|e| CliError::from(e).context("sending"))
    })?;
    producer
        .finish()
        .map_err(|e| CliError::from(e).context("leaving the ring"))?;
    Ok(())
}

/// `ringproof send`: stdin to the ring; closes the ring at end of input.
pub fn send(args: &SendArgs) -> Result<(), CliError> {
    if args.mode == RingMode::Mpsc {
        return send_mpsc(args);
    }
    let mut producer = open_producer(&args.name, args.size)?;
    let chunk = usize::try_from(args.message_size)
        .unwrap_or(usize::MAX)
        .min(producer.max_message())
        .max(1);
    each_chunk(chunk, args.rate_limit, |bytes| {
        loop {
            match producer.push(bytes) {
                Ok(()) => return Ok(()),
                Err(PushError::Full) => {
                    peer::wait_room(
                        &mut producer,
                        bytes.len(),
                        OnConsumerDeath::WaitForSuccessor,
                    )?;
                }
                Err(e) => return Err(CliError::from(e).context("sending")),
            }
        }
    })?;
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

/// The kind `recv` opens: `--mode`, else the kind an existing ring's header
/// names, else SPSC.
fn recv_kind(args: &RecvArgs) -> Result<RingKind, CliError> {
    match args.mode {
        Some(RingMode::Spsc) => Ok(RingKind::Spsc),
        Some(RingMode::Mpsc) => Ok(RingKind::Mpsc),
        None => match Segment::kind_of(&args.name) {
            Ok(kind) => Ok(kind.unwrap_or(RingKind::Spsc)),
            Err(ShmError::NotFound(_)) => Ok(RingKind::Spsc),
            Err(e) => Err(CliError::from(e).context(format!("cannot open {}", args.name))),
        },
    }
}

/// Writes `result`'s end: a closed stdout is a quiet end, as is a flushed
/// end of stream.
fn finish_output(
    result: Result<End, CliError>,
    out: &mut BufWriter<std::fs::File>,
) -> Result<(), CliError> {
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

/// `ringproof recv`: the ring to stdout, until end of stream.
pub fn recv(args: &RecvArgs) -> Result<(), CliError> {
    let kind = recv_kind(args)?;
    let mut out = BufWriter::with_capacity(256 * 1024, stdout_file()?);
    if kind == RingKind::Mpsc {
        let open = OpenMode::CreateOrOpen {
            capacity: args.size,
        };
        let mut consumer = ShmMpscConsumer::new(&args.name, open).map_err(|e| {
            CliError::from(e).context(format!("cannot open {} as consumer", args.name))
        })?;
        let result = receive_mpsc(&mut consumer, &mut out, args);
        return finish_output(result, &mut out);
    }
    let opened = ShmConsumer::new(
        &args.name,
        OpenMode::CreateOrOpen {
            capacity: args.size,
        },
    );
    let mut consumer = match opened {
        // Without `--mode`, a ring whose header was still being written when
        // we looked (an MPSC sender creating it) is opened as what it is.
        Err(ShmError::WrongKind {
            found: RingKind::Mpsc,
            ..
        }) if args.mode.is_none() => {
            let mut consumer = ShmMpscConsumer::new(&args.name, OpenMode::Open).map_err(|e| {
                CliError::from(e).context(format!("cannot open {} as consumer", args.name))
            })?;
            let result = receive_mpsc(&mut consumer, &mut out, args);
            return finish_output(result, &mut out);
        }
        other => other.map_err(|e| {
            CliError::from(e).context(format!("cannot open {} as consumer", args.name))
        })?,
    };
    let result = receive(&mut consumer, &mut out, args);
    finish_output(result, &mut out)
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

/// [`receive`] for an MPSC ring: the same batching (release after flush),
/// over the MPSC consumer, whose reads may also find a live sender's
/// message not committed yet (`Pending`: wait, as for `Empty`).
fn receive_mpsc(
    consumer: &mut ShmMpscConsumer,
    out: &mut BufWriter<std::fs::File>,
    args: &RecvArgs,
) -> Result<End, CliError> {
    use ringproof::mpsc::ReadError as MpscReadError;
    let mut pacer = Pacer::new(args.rate_limit);
    loop {
        let mut batch = consumer.as_consumer_mut().read_batch();
        let mut bytes = 0usize;
        let stop = loop {
            match batch.read() {
                Ok(message) => {
                    bytes += message.len();
                    if let Err(e) = out.write_all(message) {
                        break write_stop(e)?;
                    }
                    pacer.account(message.len());
                    if bytes >= RELEASE_EVERY {
                        break Stop::Batch;
                    }
                }
                Err(MpscReadError::Empty | MpscReadError::Pending { .. }) => break Stop::Empty,
                Err(MpscReadError::Closed) => break Stop::Closed,
                Err(e) => {
                    return Err(CliError::from(ShmError::MpscRead(e)).context("receiving"));
                }
            }
        };
        if matches!(stop, Stop::BrokenPipe) {
            return Ok(End::BrokenPipe);
        }
        if let Err(e) = out.flush() {
            write_stop(e)?;
            return Ok(End::BrokenPipe);
        }
        batch.release();
        match stop {
            Stop::Batch => {}
            Stop::Closed => return Ok(End::Stream),
            Stop::BrokenPipe => return Ok(End::BrokenPipe),
            Stop::Empty => match consumer.wait_message(args.timeout) {
                Ok(()) => {}
                Err(ShmError::TimedOut) => {
                    return Err(peer::no_message_within(args.timeout.unwrap_or_default()));
                }
                Err(ShmError::PeerDied(_)) => {
                    return Err(CliError::peer_died(
                        "every sender left without closing the ring (every message they committed was delivered)",
                    ));
                }
                Err(e) => return Err(CliError::from(e).context("receiving")),
            },
        }
    }
}

/// A write error: a closed stdout stops the loop, any other is an error.
fn write_stop(e: std::io::Error) -> Result<Stop, CliError> {
    if is_broken_pipe(&e) {
        Ok(Stop::BrokenPipe)
    } else {
        Err(CliError::unexpected(format!(
            "writing standard output: {e}"
        )))
    }
}

fn receive(
    consumer: &mut ShmConsumer,
    out: &mut BufWriter<std::fs::File>,
    args: &RecvArgs,
) -> Result<End, CliError> {
    let mut pacer = Pacer::new(args.rate_limit);
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
                        break write_stop(e)?;
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
            write_stop(e)?;
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
