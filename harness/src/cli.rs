//! The command line, declared with clap's derive API.
//!
//! Each subcommand's arguments are a struct here; the code that runs it lives
//! in the module named for it. The hidden subcommand is the child role the
//! tool re-executes itself as (`demo-child`).

use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES;
use crate::size::{parse_duration, parse_positive_size, parse_ring_size};

/// Stream bytes between processes through a lock-free ring in shared memory.
///
/// With no subcommand, runs a short two-process benchmark (ring vs pipe and
/// Unix socket, latency) and prints a summary.
#[derive(Debug, Parser)]
#[command(name = "ringproof", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do (default: a short `bench`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stream stdin into a ring as messages; close the ring at end of input.
    #[command(after_help = EXIT_CODES)]
    Send(SendArgs),
    /// Write the payloads of a ring's messages to stdout until end of stream.
    #[command(after_help = EXIT_CODES)]
    Recv(RecvArgs),
    /// Show a segment's header, validation result, positions and role holders.
    #[command(after_help = EXIT_CODES)]
    Inspect(InspectArgs),
    /// Remove a segment, or every segment nobody holds.
    #[command(after_help = EXIT_CODES)]
    Clean(CleanArgs),
    /// Run a scripted scenario: a checked exchange, or the failure path.
    #[command(after_help = EXIT_CODES)]
    Demo(DemoArgs),
    /// Measure throughput and latency between two processes: the ring, a
    /// pipe and a Unix socket.
    #[command(after_help = EXIT_CODES)]
    Bench(BenchArgs),
    /// Kill real producer and consumer processes at every crash point (or at
    /// random) and check that nothing committed is lost or torn.
    #[command(after_help = EXIT_CODES)]
    Crash(crate::crash::CrashArgs),
    /// The producer process of `demo --mode golden`.
    #[command(hide = true, name = "demo-child")]
    DemoChild(DemoChildArgs),
}

/// `ringproof send`.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Segment name (`feed` or `/feed`).
    #[arg(long)]
    pub name: String,
    /// Ring capacity, a power of two; used only when this side creates the ring.
    #[arg(long, default_value = "1MiB", value_parser = parse_ring_size)]
    pub size: u64,
    /// Largest message; clamped to the ring's largest message (half the ring
    /// less 8 bytes).
    #[arg(long, default_value = "64KiB", value_parser = parse_positive_size)]
    pub message_size: u64,
    /// Send at most this many bytes per second.
    #[arg(long, value_parser = parse_positive_size)]
    pub rate_limit: Option<u64>,
    /// The kind of ring: `spsc` (one sender) or `mpsc` (several senders into
    /// one receiver; the last sender to finish closes the stream).
    #[arg(long, value_enum, default_value_t = RingMode::Spsc)]
    pub mode: RingMode,
}

/// The kind of ring `send` and `recv` use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RingMode {
    /// One producer, one consumer.
    Spsc,
    /// Many producers, one consumer.
    Mpsc,
}

/// `ringproof recv`.
#[derive(Debug, Clone, Args)]
#[command(
    long_about = "Write the payloads of a ring's messages to stdout, byte-exact, until end of stream.\n\n\
    If the ring does not exist yet, recv creates it (so send and recv may start in either order) \
    and waits for a producer. If the producer dies without closing the ring, recv first writes \
    every message it committed, then exits 3. With --timeout, waiting longer than that for the \
    next message is also exit 3 (\"no message within ...\"). With --mode mpsc (or an MPSC ring \
    found by its header), several senders write into this one receiver; a sender killed mid-message \
    is skipped as soon as the kernel drops its slot lease, a stopped one is waited for. When stdout is closed early \
    (EPIPE), recv stops quietly and exits 0; the messages it had not read yet stay in the ring \
    (it buffers up to 256 KiB of output, which is lost with the closed stdout)."
)]
pub struct RecvArgs {
    /// Segment name (`feed` or `/feed`).
    #[arg(long)]
    pub name: String,
    /// Ring capacity, a power of two; used only when this side creates the ring.
    #[arg(long, default_value = "1MiB", value_parser = parse_ring_size)]
    pub size: u64,
    /// Receive at most this many bytes per second.
    #[arg(long, value_parser = parse_positive_size)]
    pub rate_limit: Option<u64>,
    /// Give up (exit 3) after waiting this long for the next message (e.g. 5s).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// The kind of ring. Without it, the kind of an existing ring is read
    /// from its header, and a ring recv creates is SPSC.
    #[arg(long, value_enum)]
    pub mode: Option<RingMode>,
}

/// `ringproof inspect`.
#[derive(Debug, Clone, Args)]
#[command(
    long_about = "Show a segment's header, validation result, capacity, used bytes, head and tail, \
    which roles a live process holds, the closed flag and whether it is stale (no role held).\n\n\
    A segment that fails validation is still described, then inspect exits 2."
)]
pub struct InspectArgs {
    /// Segment name (`feed` or `/feed`).
    #[arg(long)]
    pub name: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `ringproof clean`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["name", "stale"])))]
#[command(
    long_about = "Remove one segment (--name), or every ringproof segment in /dev/shm that no live \
    process holds (--stale). A segment in use (a producer or consumer role held) is refused \
    unless --force; processes that have it mapped keep their mapping."
)]
pub struct CleanArgs {
    /// The segment to remove.
    #[arg(long, conflicts_with = "stale")]
    pub name: Option<String>,
    /// Remove every ringproof segment whose roles are all free.
    #[arg(long)]
    pub stale: bool,
    /// With --stale: only names starting with this (with or without a leading `/`).
    #[arg(long, requires = "stale")]
    pub prefix: Option<String>,
    /// With --name: remove the segment even while a role is held.
    #[arg(long, requires = "name")]
    pub force: bool,
}

/// The scenarios of `ringproof demo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoMode {
    /// A producer and a consumer process exchange checked messages.
    Golden,
    /// Attach to an invalid segment: the error path (exit 2).
    Failure,
}

/// `ringproof demo`.
#[derive(Debug, Clone, Args)]
#[command(
    long_about = "golden: a producer process and a consumer process exchange messages of varying \
    sizes through a ring, each carrying its sequence number and a checksum; the consumer checks \
    every one and prints \"OK: golden scenario completed\" (exit 0).\n\n\
    failure: attaches to an invalid segment and prints \
    \"ERROR: invalid input or unavailable IPC resource\" on stderr (exit 2)."
)]
pub struct DemoArgs {
    /// Which scenario.
    #[arg(long, value_enum)]
    pub mode: DemoMode,
    /// golden: how many messages.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u64,
    /// golden: ring capacity (small rings wrap often).
    #[arg(long, default_value = "64KiB", value_parser = parse_ring_size)]
    pub size: u64,
    /// golden: seed of the message sizes and contents.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// golden: print what was exchanged on stderr.
    #[arg(long, short)]
    pub verbose: bool,
}

/// What `ringproof bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchMode {
    /// One producer process into one consumer.
    Spsc,
    /// `--producers` processes into one consumer.
    Mpsc,
}

/// `ringproof bench`.
#[derive(Debug, Clone, Args)]
#[command(
    long_about = "Measure between two processes (pinned to different CPUs when there are two or \
    more), in one run: the throughput of a ring, then of the same messages through a pipe and a \
    Unix stream socket, with the ratios; the one-way latency of a message (ping-pong over two \
    rings, RTT/2: avg, p50, p99, p99.9, max); and the floor, a cache line's one-way transfer \
    between the same two CPUs.\n\n\
    Each message carries its sequence number, which the consumer checks, and is copied out. The \
    clock runs at the consumer, from an empty channel after a warm-up to the last message. \
    With --batch N the ring commits N messages at once and the pipe and socket writers issue \
    one write(2) per N messages; readers take what is there (the stream readers through a \
    64 KiB buffer)."
)]
pub struct BenchArgs {
    /// spsc: one producer process, the ring against a pipe and a Unix
    /// socket. mpsc: --producers processes into one consumer through an
    /// MPSC ring, against the SPSC ring (one producer) and a Unix datagram
    /// socket with as many writers; --iterations messages per producer.
    #[arg(long, value_enum, default_value_t = BenchMode::Spsc)]
    pub mode: BenchMode,
    /// mpsc: producer processes (1 to 64).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub producers: u64,
    /// Ring capacity, a power of two.
    #[arg(long, default_value = "1MiB", value_parser = parse_ring_size)]
    pub buffer_size: u64,
    /// Payload bytes per message.
    #[arg(long, default_value = "64B", value_parser = parse_positive_size)]
    pub message_size: u64,
    /// Messages per transfer (latency: as many round trips, at most 100000).
    #[arg(long, default_value_t = 2_000_000, value_parser = parse_count)]
    pub iterations: u64,
    /// Messages per commit (ring) and per write(2) (pipe, socket).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub batch: u64,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Parses a count of at least 1.
fn parse_count(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("it must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// `ringproof demo-child` (hidden): the golden scenario's producer.
#[derive(Debug, Clone, Args)]
pub struct DemoChildArgs {
    /// Ring name.
    #[arg(long)]
    pub name: String,
    /// Ring capacity when creating.
    #[arg(long, value_parser = parse_ring_size)]
    pub size: u64,
    /// How many messages.
    #[arg(long)]
    pub messages: u64,
    /// Seed of the sizes and contents.
    #[arg(long)]
    pub seed: u64,
}
