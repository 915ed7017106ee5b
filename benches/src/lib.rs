//! Measurements of ringproof and of its peers, as plain functions returning
//! plain structs: the criterion benches, `ci/bench-gate` and the `ringproof
//! bench` command all call these.
//!
//! - [`ring`]: a message stream through a ring, producer and consumer in two
//!   processes ([`ring::cross_process`], a POSIX shared-memory segment) or two
//!   threads ([`ring::in_process`], a heap segment), single or batch API.
//! - [`stream`]: the same stream through a pipe and a Unix stream socket.
//! - [`inproc`]: the same stream through `rtrb` and crossbeam's `ArrayQueue`
//!   between two threads (the in-process yardsticks).
//! - [`latency`]: one-way latency by ping-pong over two rings (RTT/2, in an
//!   HDR histogram), and the hardware floor: a cache line bounced between two
//!   processes.
//! - [`fan_in`]: `K` producer processes into one consumer: the MPSC ring,
//!   a Unix datagram socket with `K` writers, and the SPSC ring for `K = 1`
//!   (throughput, and one-way latency from a timestamp in the message).
//! - [`memcpy_bandwidth`] and [`idle::consumer_cpu`] (the CPU a parked
//!   consumer burns on an idle ring).
//!
//! # Method (the same for every peer)
//!
//! - The consumer is the calling process, the producer a child made with
//!   `fork`; with two CPUs or more each is pinned to its own CPU (the caller's
//!   affinity is restored afterwards).
//! - The producer first sends a warm-up stream (page faults, caches, branch
//!   predictors), then waits on a shared flag. The consumer drains the
//!   warm-up, raises the flag and starts its clock; it stops the clock when
//!   the last message has been copied out. The clock therefore measures a
//!   transfer from an empty channel to the last delivery.
//! - Every message carries its sequence number in its first bytes; the
//!   producer writes it, the consumer checks it and copies the whole message
//!   into its own buffer (the pipe and the socket must copy too).
//! - Fairness of flushing: a message becomes visible to the consumer at the
//!   same granularity in every peer. With [`Api::Single`] the ring commits
//!   each message and the pipe/socket producer makes one `write` per message;
//!   with [`Api::Batch`]`(k)` the ring commits up to `k` records with one
//!   `tail` store and the pipe/socket producer writes `k` messages with one
//!   `write` (a `BufWriter` flushed every `k` messages). Readers always take
//!   whatever is available: the ring reads until empty, the pipe/socket
//!   reader through a 64 KiB `BufReader`.

use std::fmt;
use std::time::Duration;

pub mod fan_in;
pub mod idle;
pub mod inproc;
pub mod latency;
mod process;
pub mod ring;
pub mod stream;

pub use process::{allowed_cpus, cpu_pair, pin_thread};

/// How messages are handed to the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// One message per commit (`push` / `pop_into`; one `write` per message).
    Single,
    /// Up to `n` messages per commit (`Producer::batch` / `Consumer::read_batch`;
    /// one `write` per `n` messages).
    Batch(usize),
}

/// A stream of fixed-size messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Payload bytes per message.
    pub message_size: usize,
    /// Ring capacity in bytes (for a pipe or socket: the requested kernel
    /// buffer size, capped by the kernel).
    pub ring_size: u64,
    /// Messages timed.
    pub messages: u64,
    /// Single or batch.
    pub api: Api,
    /// Pin the two sides to two different CPUs when there are two.
    pub pin: bool,
}

impl Transfer {
    /// `messages` messages of `message_size` bytes through a `ring_size`
    /// ring, single API, pinned.
    pub fn new(message_size: usize, ring_size: u64, messages: u64) -> Transfer {
        Transfer {
            message_size,
            ring_size,
            messages,
            api: Api::Single,
            pin: true,
        }
    }

    /// The same transfer with another API.
    pub fn with_api(self, api: Api) -> Transfer {
        Transfer { api, ..self }
    }

    /// The same transfer with another message count.
    pub fn with_messages(self, messages: u64) -> Transfer {
        Transfer { messages, ..self }
    }

    /// Messages sent before the clock starts: enough to go once round the
    /// ring (every page touched), at most 2^16, at least 16.
    pub fn warmup_messages(&self) -> u64 {
        let record = (self.message_size as u64 + 15) & !7;
        (self.ring_size / record).clamp(16, 1 << 16)
    }

    /// Messages per commit.
    pub fn batch_len(&self) -> usize {
        match self.api {
            Api::Single => 1,
            Api::Batch(n) => n.max(1),
        }
    }

    /// The (consumer, producer) CPUs, when pinning.
    pub(crate) fn cpus(&self) -> (Option<usize>, Option<usize>) {
        match (self.pin, cpu_pair()) {
            (true, Some((consumer, producer))) => (Some(consumer), Some(producer)),
            _ => (None, None),
        }
    }
}

/// What a transfer measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Throughput {
    /// Messages timed.
    pub messages: u64,
    /// Payload bytes timed.
    pub bytes: u64,
    /// From the start signal to the last message copied out.
    pub elapsed: Duration,
}

impl Throughput {
    /// Messages per second.
    pub fn messages_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-12)
    }

    /// Payload bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-12)
    }
}

/// One-way latency summary in nanoseconds (each sample is half a round trip).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// Round trips recorded.
    pub samples: u64,
    /// Mean.
    pub avg: f64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

/// Why a measurement failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BenchError {
    /// The parameters cannot work (e.g. a message larger than the ring takes).
    Config(&'static str),
    /// Creating or using a shared-memory ring failed.
    Shm(ringproof::shm::ShmError),
    /// Creating an in-process ring failed.
    Heap(ringproof::heap::HeapError),
    /// A ring operation failed.
    Ring(ringproof::Error),
    /// A system call failed.
    Os(&'static str, nix::errno::Errno),
    /// Reading or writing a pipe or socket failed.
    Io(std::io::Error),
    /// The forked peer failed.
    Peer(String),
    /// A message arrived out of order or with the wrong length.
    Mismatch {
        /// Sequence number expected.
        expected: u64,
        /// Sequence number (or length) found.
        found: u64,
    },
    /// The peer made no progress for a long time.
    Stalled,
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Config(what) => write!(f, "invalid benchmark parameters: {what}"),
            BenchError::Shm(e) => write!(f, "shared memory: {e}"),
            BenchError::Heap(e) => write!(f, "in-process ring: {e}"),
            BenchError::Ring(e) => write!(f, "ring: {e}"),
            BenchError::Os(what, errno) => write!(f, "{what}: {}", errno.desc()),
            BenchError::Io(e) => write!(f, "i/o: {e}"),
            BenchError::Peer(what) => write!(f, "peer process: {what}"),
            BenchError::Mismatch { expected, found } => {
                write!(f, "message {expected} arrived as {found}")
            }
            BenchError::Stalled => f.write_str("the peer made no progress"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<ringproof::shm::ShmError> for BenchError {
    fn from(e: ringproof::shm::ShmError) -> Self {
        BenchError::Shm(e)
    }
}

impl From<ringproof::heap::HeapError> for BenchError {
    fn from(e: ringproof::heap::HeapError) -> Self {
        BenchError::Heap(e)
    }
}

ringproof::from_ring_errors!(BenchError);

impl From<ringproof::Error> for BenchError {
    fn from(e: ringproof::Error) -> Self {
        BenchError::Ring(e)
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError::Io(e)
    }
}

/// Writes the sequence number `seq` into the first bytes of `message`.
#[inline(always)]
pub(crate) fn stamp(message: &mut [u8], seq: u64) {
    let bytes = seq.to_le_bytes();
    let n = message.len().min(8);
    message[..n].copy_from_slice(&bytes[..n]);
}

/// Checks that `message` is message number `seq` of `len` bytes.
#[inline(always)]
pub(crate) fn check(message: &[u8], len: usize, seq: u64) -> Result<(), BenchError> {
    if message.len() != len {
        return Err(BenchError::Mismatch {
            expected: seq,
            found: message.len() as u64,
        });
    }
    let mut bytes = [0u8; 8];
    let n = len.min(8);
    bytes[..n].copy_from_slice(&message[..n]);
    let mask = if n == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    let found = u64::from_le_bytes(bytes);
    if found != seq & mask {
        return Err(BenchError::Mismatch {
            expected: seq,
            found,
        });
    }
    Ok(())
}

/// `memcpy` bandwidth: copies a `size`-byte buffer into another until
/// `total` bytes have been copied (rounded up to whole copies).
pub fn memcpy_bandwidth(size: usize, total: u64) -> Throughput {
    let size = size.max(1);
    let source: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut dest = vec![0u8; size];
    let copies = total.div_ceil(size as u64).max(1);
    // One untimed copy: both buffers faulted in and in cache.
    dest.copy_from_slice(&source);
    let start = std::time::Instant::now();
    for _ in 0..copies {
        dest.copy_from_slice(std::hint::black_box(&source));
        std::hint::black_box(&mut dest);
    }
    Throughput {
        messages: copies,
        bytes: copies * size as u64,
        elapsed: start.elapsed(),
    }
}

/// Longest single park while waiting for the peer.
pub(crate) const PARK: Duration = Duration::from_millis(50);
