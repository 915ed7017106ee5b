//! The same stream through a pipe ([`pipe`]) and a Unix stream socket
//! ([`unix_socket`]): the peers a shared-memory ring has to beat.
//!
//! Framing: messages have the fixed size both sides know, so the byte stream
//! needs no length prefix (the cheapest framing a stream allows). The
//! producer makes one `write` per commit unit of the ring ([`crate::Api`]):
//! per message, or per `k` messages staged in a buffer. The consumer reads
//! through a 64 KiB `BufReader` (one `read` takes whatever is there) and
//! copies each message out, as the ring's consumer does. The kernel buffer
//! is asked to be `ring_size` bytes (`F_SETPIPE_SZ`, `SO_SNDBUF`/`SO_RCVBUF`;
//! the kernel caps it, at 1 MiB for a pipe by default).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::process::{ControlPage, PinGuard, spawn};
use crate::{BenchError, Throughput, Transfer, check, stamp};

/// Control word: the consumer drained the warm-up; the producer may go.
const GO: usize = 0;
/// Read buffer of the consumer.
const READ_BUFFER: usize = 64 * 1024;

/// Through a pipe.
pub fn pipe(cfg: &Transfer) -> Result<Throughput, BenchError> {
    let (reader, writer) = nix::unistd::pipe().map_err(|e| BenchError::Os("pipe", e))?;
    let size = i32::try_from(cfg.ring_size).unwrap_or(i32::MAX);
    // A bigger pipe buffer helps the pipe; failure (above the cap) keeps the default.
    let _ = nix::fcntl::fcntl(writer.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(size));
    run(cfg, File::from(reader), File::from(writer))
}

/// Through a Unix stream socket pair.
pub fn unix_socket(cfg: &Transfer) -> Result<Throughput, BenchError> {
    let (reader, writer) = UnixStream::pair()?;
    let size = libc::c_int::try_from(cfg.ring_size).unwrap_or(libc::c_int::MAX);
    // A bigger socket buffer helps the socket; the kernel caps it (wmem_max/rmem_max).
    set_buffer(&writer, libc::SO_SNDBUF, size);
    set_buffer(&reader, libc::SO_RCVBUF, size);
    run(cfg, reader, writer)
}

/// Asks for a socket buffer of `size` bytes (`SO_SNDBUF` or `SO_RCVBUF`).
pub(crate) fn set_buffer(
    socket: &impl std::os::fd::AsRawFd,
    option: libc::c_int,
    size: libc::c_int,
) {
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local;
    // the descriptor is open for the call. Failure keeps the default size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn run<R, W>(cfg: &Transfer, reader: R, writer: W) -> Result<Throughput, BenchError>
where
    R: Read + Into<OwnedFd>,
    W: Write + Into<OwnedFd>,
{
    let control = ControlPage::new()?;
    let (consumer_cpu, producer_cpu) = cfg.cpus();
    let mut writer = Some(writer);
    let child = spawn(producer_cpu, || {
        let Some(writer) = writer.take() else {
            return Err(BenchError::Config("writer already taken"));
        };
        produce(writer, cfg, &control)
    })?;
    // The parent's copy of the write end must close, or the reader never sees EOF.
    drop(writer.map(Into::<OwnedFd>::into));
    let result = {
        let _pin = PinGuard::pin(consumer_cpu)?;
        consume(reader, cfg, &control)
    };
    child.finish(result)
}

fn produce<W: Write>(
    mut writer: W,
    cfg: &Transfer,
    control: &ControlPage,
) -> Result<(), BenchError> {
    let len = cfg.message_size;
    let per_write = cfg.batch_len();
    let mut staged = vec![0xA5u8; len * per_write];
    let warmup = cfg.warmup_messages();
    let mut send = |from: u64, to: u64| -> Result<(), BenchError> {
        let mut seq = from;
        while seq < to {
            let n = ((to - seq) as usize).min(per_write);
            for (i, message) in staged[..n * len].chunks_exact_mut(len.max(1)).enumerate() {
                stamp(message, seq + i as u64);
            }
            writer.write_all(&staged[..n * len])?;
            seq += n as u64;
        }
        Ok(())
    };
    send(0, warmup)?;
    control.wait_for(GO, 1)?;
    send(warmup, warmup + cfg.messages)?;
    Ok(())
}

fn consume<R: Read>(
    reader: R,
    cfg: &Transfer,
    control: &ControlPage,
) -> Result<Throughput, BenchError> {
    let len = cfg.message_size;
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let mut buf = vec![0u8; len];
    let warmup = cfg.warmup_messages();
    let mut receive = |from: u64, to: u64| -> Result<(), BenchError> {
        for seq in from..to {
            reader.read_exact(&mut buf)?;
            check(&buf, len, seq)?;
            std::hint::black_box(&mut buf);
        }
        Ok(())
    };
    receive(0, warmup)?;
    control.set(GO, 1);
    let start = Instant::now();
    receive(warmup, warmup + cfg.messages)?;
    let elapsed = start.elapsed();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    if !rest.is_empty() {
        return Err(BenchError::Mismatch {
            expected: warmup + cfg.messages,
            found: rest.len() as u64,
        });
    }
    Ok(Throughput {
        messages: cfg.messages,
        bytes: cfg.messages * len as u64,
        elapsed: elapsed.max(Duration::from_nanos(1)),
    })
}
