//! `ringproof bench`: throughput, latency and the peers, in one run.
//!
//! The measurements are those of the `ringproof-benches` library (the same
//! code the criterion benches and the regression gate run); this module
//! checks the arguments, runs the phases one after another and prints the
//! result. Each phase forks a peer process (the producer, or the echoing
//! side), pinned to another CPU than this process when there are two:
//!
//! 1. the ring: `--iterations` messages through a shared-memory ring
//!    (`ring::cross_process`; `--batch` > 1 uses the batch API);
//! 2. the same messages through a pipe, then a Unix stream socket
//!    (`stream::pipe`, `stream::unix_socket`; one `write` per batch);
//! 3. one-way latency: ping-pong over two rings, RTT/2 in an HDR histogram
//!    (`latency::ring`);
//! 4. the floor: a cache line bounced between the two CPUs
//!    (`latency::cache_line`).
//!
//! The library forks, so this process stays single-threaded while it
//! measures: the progress bar (stderr, only on a terminal) has no ticking
//! thread and is redrawn between phases.

use std::io::IsTerminal as _;

use clap::Parser as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringproof_benches::fan_in::{self, FanIn, FanInResult};
use ringproof_benches::latency::{self, PingPong};
use ringproof_benches::{Api, BenchError, Latency, Transfer, ring, stream};
use serde::Serialize;

use crate::cli::{BenchArgs, BenchMode, Cli, Command};
use crate::exit::CliError;
use crate::size::human;

/// Largest staging buffer of the pipe/socket producer (`message_size * batch`).
const MAX_BATCH_BYTES: u64 = 256 << 20;
/// Most round trips of each latency measurement.
const MAX_ROUND_TRIPS: u64 = 100_000;
/// Messages of the quick run (`ringproof` with no arguments).
const QUICK_MESSAGES: u64 = 1_000_000;
/// Most latency samples of each fan-in measurement (all producers together).
const MAX_FAN_IN_SAMPLES: u64 = 20_000;

/// How `bench` prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `ringproof` with no arguments: the short summary.
    Summary,
    /// `ringproof bench`: the summary and the method.
    Full,
    /// `ringproof bench --json`: one JSON object.
    Json,
}

/// The arguments of a plain `ringproof bench`, defaults included.
pub fn default_args() -> BenchArgs {
    match Cli::try_parse_from(["ringproof", "bench"]) {
        Ok(Cli {
            command: Some(Command::Bench(args)),
        }) => args,
        // The literal command line above always parses to `bench`.
        _ => BenchArgs {
            buffer_size: 1 << 20,
            message_size: 64,
            iterations: 2_000_000,
            batch: 1,
            json: false,
            mode: BenchMode::Spsc,
            producers: 1,
        },
    }
}

/// The arguments of `ringproof` with no arguments: `bench`'s defaults with
/// fewer messages, so that it finishes in seconds.
pub fn quick_args() -> BenchArgs {
    let args = default_args();
    BenchArgs {
        iterations: args.iterations.min(QUICK_MESSAGES),
        ..args
    }
}

/// Rates of one transfer.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Throughput {
    /// Seconds the timed part took.
    pub seconds: f64,
    /// Messages per second.
    pub messages_per_sec: f64,
    /// Payload bytes per second.
    pub bytes_per_sec: f64,
}

impl From<ringproof_benches::Throughput> for Throughput {
    fn from(t: ringproof_benches::Throughput) -> Self {
        Throughput {
            seconds: t.elapsed.as_secs_f64(),
            messages_per_sec: t.messages_per_sec(),
            bytes_per_sec: t.bytes_per_sec(),
        }
    }
}

/// A one-way latency summary in nanoseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LatencyNs {
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
    /// Round trips recorded (each sample is half of one).
    pub samples: u64,
}

impl From<Latency> for LatencyNs {
    fn from(l: Latency) -> Self {
        LatencyNs {
            avg: l.avg,
            p50: l.p50,
            p99: l.p99,
            p999: l.p999,
            max: l.max,
            samples: l.samples,
        }
    }
}

/// The other transports measured in the same run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Peers {
    /// An anonymous pipe between the two processes.
    pub pipe: Throughput,
    /// A Unix stream socket pair between the two processes.
    pub unix_socket: Throughput,
}

/// What `bench --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Bytes per message.
    pub message_size: usize,
    /// Timed messages per transfer.
    pub messages: u64,
    /// Messages per commit or write.
    pub batch: u64,
    /// Ring capacity.
    pub buffer_size: u64,
    /// CPUs of this process (consumer, ping side) and of its peer (empty:
    /// not pinned).
    pub cpus: Vec<usize>,
    /// Ring: seconds of the timed part.
    pub seconds: f64,
    /// Ring: messages per second.
    pub messages_per_sec: f64,
    /// Ring: payload bytes per second.
    pub bytes_per_sec: f64,
    /// One-way latency of a message over a ring (RTT/2 of a ping-pong).
    pub latency_ns: LatencyNs,
    /// One-way transfer of a cache line between the same two CPUs (RTT/2);
    /// `null` with fewer than two CPUs.
    pub cache_line_ns: Option<LatencyNs>,
    /// The same transfer through other transports.
    pub peers: Peers,
    /// Ring messages per second over pipe messages per second.
    pub ratio_vs_pipe: f64,
    /// Ring messages per second over Unix socket messages per second.
    pub ratio_vs_unix_socket: f64,
    /// Ring latency p50 over the cache line's p50 (`null` without it).
    pub latency_p50_vs_cache_line: Option<f64>,
}

/// `ringproof bench` (and `ringproof` alone).
pub fn run(args: &BenchArgs, output: Output) -> Result<(), CliError> {
    if args.mode == BenchMode::Mpsc {
        return run_fan_in(args, output);
    }
    if args.producers != 1 {
        return Err(CliError::invalid("--producers needs --mode mpsc"));
    }
    let transfer = transfer(args)?;
    let ping_pong = PingPong {
        message_size: transfer.message_size,
        ring_size: transfer.ring_size,
        round_trips: transfer.messages.min(MAX_ROUND_TRIPS),
        pin: true,
    };
    // The cache-line floor is a transfer between two CPUs; on one CPU its two
    // spinning sides would take turns by time slices.
    let two_cpus = ringproof_benches::cpu_pair().is_some();
    let progress = Progress::new(if two_cpus { 5 } else { 4 });
    progress.phase("ring");
    let ringed = measured("ring", ring::cross_process(&transfer))?;
    progress.phase("pipe");
    let pipe = measured("pipe", stream::pipe(&transfer))?;
    progress.phase("unix socket");
    let socket = measured("unix socket", stream::unix_socket(&transfer))?;
    progress.phase("latency");
    let latency = measured("latency", latency::ring(&ping_pong))?;
    let cache_line = if two_cpus {
        progress.phase("cache line");
        let floor = latency::cache_line(ping_pong.round_trips, ping_pong.pin);
        Some(LatencyNs::from(measured("cache line", floor)?))
    } else {
        None
    };
    progress.finish();

    let ringed = Throughput::from(ringed);
    let pipe = Throughput::from(pipe);
    let unix_socket = Throughput::from(socket);
    let latency = LatencyNs::from(latency);
    let report = Report {
        message_size: transfer.message_size,
        messages: transfer.messages,
        batch: args.batch,
        buffer_size: transfer.ring_size,
        cpus: ringproof_benches::cpu_pair()
            .map(|(ours, peer)| vec![ours, peer])
            .unwrap_or_default(),
        seconds: ringed.seconds,
        messages_per_sec: ringed.messages_per_sec,
        bytes_per_sec: ringed.bytes_per_sec,
        latency_ns: latency,
        cache_line_ns: cache_line,
        peers: Peers { pipe, unix_socket },
        ratio_vs_pipe: ratio(ringed.messages_per_sec, pipe.messages_per_sec),
        ratio_vs_unix_socket: ratio(ringed.messages_per_sec, unix_socket.messages_per_sec),
        latency_p50_vs_cache_line: cache_line.map(|c| ratio(latency.p50 as f64, c.p50 as f64)),
    };
    match output {
        Output::Json => {
            let json = serde_json::to_string(&report)
                .map_err(|e| CliError::unexpected(format!("formatting JSON: {e}")))?;
            println!("{json}");
        }
        Output::Summary | Output::Full => print!("{}", summary(&report, output)),
    }
    Ok(())
}

/// Checks the arguments and builds the transfer they describe.
pub fn transfer(args: &BenchArgs) -> Result<Transfer, CliError> {
    if !ringproof::layout::capacity_ok(args.buffer_size) {
        return Err(CliError::invalid(format!(
            "--buffer-size {} is not a valid ring size (a power of two, at least 32 bytes)",
            args.buffer_size
        )));
    }
    let max = ringproof::layout::max_message(args.buffer_size);
    if args.message_size > max {
        return Err(CliError::invalid(format!(
            "--message-size {} is larger than the largest message of a {} ring ({max} bytes)",
            args.message_size,
            human(args.buffer_size)
        )));
    }
    if args.iterations == 0 {
        return Err(CliError::invalid("--iterations must be at least 1"));
    }
    if args.batch == 0 {
        return Err(CliError::invalid("--batch must be at least 1"));
    }
    if args.message_size.saturating_mul(args.batch) > MAX_BATCH_BYTES {
        return Err(CliError::invalid(format!(
            "--message-size times --batch is over {}",
            human(MAX_BATCH_BYTES)
        )));
    }
    let message_size = usize::try_from(args.message_size)
        .map_err(|_| CliError::invalid("--message-size is too large"))?;
    let batch =
        usize::try_from(args.batch).map_err(|_| CliError::invalid("--batch is too large"))?;
    let api = if batch == 1 {
        Api::Single
    } else {
        Api::Batch(batch)
    };
    Ok(Transfer::new(message_size, args.buffer_size, args.iterations).with_api(api))
}

/// One transport of a fan-in run.
#[derive(Clone, Debug, Serialize)]
pub struct FanInFigures {
    /// Producer processes.
    pub producers: usize,
    /// Timed messages, all producers together.
    pub messages: u64,
    /// Seconds of the timed stream.
    pub seconds: f64,
    /// Messages per second, all producers together.
    pub messages_per_sec: f64,
    /// Payload bytes per second.
    pub bytes_per_sec: f64,
    /// One-way latency, stamp at the producer to copy-out at the consumer
    /// (`samples`: messages timed so).
    pub latency_ns: LatencyNs,
    /// Timed messages received from each producer (each checked in order).
    pub per_producer: Vec<u64>,
}

impl From<FanInResult> for FanInFigures {
    fn from(r: FanInResult) -> Self {
        let t = Throughput::from(r.throughput);
        FanInFigures {
            producers: r.per_producer.len(),
            messages: r.throughput.messages,
            seconds: t.seconds,
            messages_per_sec: t.messages_per_sec,
            bytes_per_sec: t.bytes_per_sec,
            latency_ns: LatencyNs::from(r.latency),
            per_producer: r.per_producer,
        }
    }
}

/// The peers of a fan-in run.
#[derive(Clone, Debug, Serialize)]
pub struct FanInPeers {
    /// The SPSC ring, one producer sending all the messages.
    pub spsc: FanInFigures,
    /// A Unix datagram socket, one writer process per producer.
    pub unix_datagram: FanInFigures,
}

/// What `bench --mode mpsc --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct FanInReport {
    /// `"mpsc"`.
    pub mode: &'static str,
    /// Producer processes.
    pub producers: usize,
    /// Bytes per message.
    pub message_size: usize,
    /// Ring capacity (socket: the buffer sizes asked for).
    pub buffer_size: u64,
    /// Timed messages of each producer.
    pub messages_per_producer: u64,
    /// Timed messages, all producers together.
    pub messages: u64,
    /// CPUs: the consumer on the first, producers spread over the others
    /// (empty: not pinned).
    pub cpus: Vec<usize>,
    /// The MPSC ring.
    pub mpsc: FanInFigures,
    /// The same messages through the peers.
    pub peers: FanInPeers,
    /// MPSC messages per second over the datagram socket's.
    pub ratio_vs_unix_datagram: f64,
    /// MPSC messages per second over the SPSC ring's.
    pub ratio_vs_spsc: f64,
    /// MPSC latency p50 over the datagram socket's.
    pub latency_p50_vs_unix_datagram: f64,
    /// MPSC latency p50 over the SPSC ring's.
    pub latency_p50_vs_spsc: f64,
}

/// `ringproof bench --mode mpsc`: `K` producer processes into one consumer
/// through the MPSC ring, then the SPSC ring (one producer, the same total)
/// and a Unix datagram socket (`K` writers), through the same code.
fn run_fan_in(args: &BenchArgs, output: Output) -> Result<(), CliError> {
    let cfg = fan_in_config(args)?;
    let progress = Progress::new(3);
    progress.phase("mpsc ring");
    let mpsc = measured("mpsc ring", fan_in::mpsc_ring(&cfg))?;
    progress.phase("spsc ring");
    let k = cfg.producers as u64;
    let single = FanIn {
        producers: 1,
        messages: cfg.messages * k,
        latency_samples: cfg.latency_samples * k,
        ..cfg
    };
    let spsc = measured("spsc ring", fan_in::spsc_ring(&single))?;
    progress.phase("unix datagram");
    let dgram = measured("unix datagram", fan_in::unix_datagram(&cfg))?;
    progress.finish();

    let cpus = ringproof_benches::allowed_cpus();
    let (mpsc, spsc, dgram) = (
        FanInFigures::from(mpsc),
        FanInFigures::from(spsc),
        FanInFigures::from(dgram),
    );
    let report = FanInReport {
        mode: "mpsc",
        producers: cfg.producers,
        message_size: cfg.message_size,
        buffer_size: cfg.ring_size,
        messages_per_producer: cfg.messages,
        messages: cfg.messages * k,
        cpus: if cpus.len() >= 2 { cpus } else { Vec::new() },
        ratio_vs_unix_datagram: ratio(mpsc.messages_per_sec, dgram.messages_per_sec),
        ratio_vs_spsc: ratio(mpsc.messages_per_sec, spsc.messages_per_sec),
        latency_p50_vs_unix_datagram: ratio(
            mpsc.latency_ns.p50 as f64,
            dgram.latency_ns.p50 as f64,
        ),
        latency_p50_vs_spsc: ratio(mpsc.latency_ns.p50 as f64, spsc.latency_ns.p50 as f64),
        mpsc,
        peers: FanInPeers {
            spsc,
            unix_datagram: dgram,
        },
    };
    match output {
        Output::Json => {
            let json = serde_json::to_string(&report)
                .map_err(|e| CliError::unexpected(format!("formatting JSON: {e}")))?;
            println!("{json}");
        }
        Output::Summary | Output::Full => print!("{}", fan_in_summary(&report)),
    }
    Ok(())
}

/// Checks the arguments of `--mode mpsc` and builds its measurement.
pub fn fan_in_config(args: &BenchArgs) -> Result<FanIn, CliError> {
    if args.batch != 1 {
        return Err(CliError::invalid("--batch applies to --mode spsc only"));
    }
    let producers = usize::try_from(args.producers)
        .ok()
        .filter(|k| (1..=fan_in::MAX_PRODUCERS).contains(k))
        .ok_or_else(|| CliError::invalid("--producers must be 1 to 64"))?;
    // The ring's own checks (size, largest message), as in spsc mode.
    let transfer = transfer(args)?;
    if transfer.message_size < fan_in::HEADER {
        return Err(CliError::invalid(format!(
            "--message-size must be at least {} bytes in mpsc mode (producer, sequence number and timestamp)",
            fan_in::HEADER
        )));
    }
    let k = producers as u64;
    Ok(FanIn {
        producers,
        message_size: transfer.message_size,
        ring_size: transfer.ring_size,
        messages: args.iterations,
        latency_samples: (MAX_FAN_IN_SAMPLES / k).clamp(1, args.iterations),
        pin: true,
    })
}

/// The human summary of `--mode mpsc`.
pub fn fan_in_summary(r: &FanInReport) -> String {
    let cpus = match r.cpus.as_slice() {
        [c, rest @ ..] => format!(
            "consumer on CPU {c}, producers on {}",
            rest.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        _ => "not pinned (fewer than 2 CPUs)".to_string(),
    };
    let mut s = format!(
        "ringproof bench --mode mpsc: {} producer processes x {} messages of {} into one consumer; {cpus}; ring {}
",
        r.producers,
        r.messages_per_producer,
        human(r.message_size as u64),
        human(r.buffer_size),
    );
    s += &format!(
        "  {:<24} {:>9} {:>12} {:>9} {:>9} {:>9}
",
        "", "msg/s", "bytes/s", "p50", "p99", "max"
    );
    let line = |label: String, f: &FanInFigures| {
        format!(
            "  {label:<24} {:>9} {:>12} {:>9} {:>9} {:>9}
",
            rate(f.messages_per_sec),
            gbps(f.bytes_per_sec),
            ns(f.latency_ns.p50 as f64),
            ns(f.latency_ns.p99 as f64),
            ns(f.latency_ns.max as f64),
        )
    };
    s += &line(format!("mpsc ring ({} procs)", r.producers), &r.mpsc);
    s += &line("spsc ring (1 proc)".to_string(), &r.peers.spsc);
    s += &line(
        format!("unix dgram ({} procs)", r.producers),
        &r.peers.unix_datagram,
    );
    s += &format!(
        "mpsc vs unix dgram: {:.2}x msg/s, p50 {:.2}x; mpsc vs spsc: {:.2}x msg/s, p50 {:.2}x
",
        r.ratio_vs_unix_datagram,
        r.latency_p50_vs_unix_datagram,
        r.ratio_vs_spsc,
        r.latency_p50_vs_spsc
    );
    s += &format!(
        "every message checked: {} timed per transport, each producer's in order, none missing
",
        r.messages
    );
    s += "(throughput: clock at the consumer from an empty channel after a warm-up to the last message; latency: CLOCK_MONOTONIC stamped by the producer, read at the consumer after the copy-out, one message in flight per producer)
";
    s
}

/// Maps a measurement's failure to the CLI's error, naming the phase.
fn measured<T>(phase: &str, result: Result<T, BenchError>) -> Result<T, CliError> {
    result.map_err(|e| match e {
        BenchError::Config(what) => CliError::invalid(what).context(phase),
        BenchError::Shm(e) => CliError::from(e).context(phase),
        e => CliError::unexpected(e.to_string()).context(format!("{phase} bench")),
    })
}

fn ratio(ours: f64, theirs: f64) -> f64 {
    ours / theirs.max(1e-9)
}

/// A progress bar on stderr when it is a terminal, redrawn by hand between
/// phases (no ticking thread: the phases fork).
#[derive(Debug)]
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(phases: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(phases), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("bench [{bar:20}] {pos}/{len} {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress(Some(bar))
    }

    /// Starts the next phase: counts the finished ones and names this one.
    fn phase(&self, name: &'static str) {
        if let Some(bar) = &self.0 {
            if !bar.message().is_empty() {
                bar.inc(1);
            }
            bar.set_message(name);
            bar.force_draw();
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

fn gbps(bytes_per_sec: f64) -> String {
    format!("{:.3} GB/s", bytes_per_sec / 1e9)
}

fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1} us", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

/// The human summary.
pub fn summary(r: &Report, output: Output) -> String {
    let cpus = match r.cpus.as_slice() {
        [c, p] => format!("pinned to CPUs {c} and {p}"),
        _ => "not pinned (fewer than 2 CPUs)".to_string(),
    };
    let line = |label: &str, t: &Throughput, versus: &str| {
        format!(
            "  {label:<12} {:>9} msg/s {:>12} {:>9.3} s{versus}\n",
            rate(t.messages_per_sec),
            gbps(t.bytes_per_sec),
            t.seconds
        )
    };
    let ring = Throughput {
        seconds: r.seconds,
        messages_per_sec: r.messages_per_sec,
        bytes_per_sec: r.bytes_per_sec,
    };
    let l = &r.latency_ns;
    let mut s = format!(
        "ringproof bench: {} messages of {} between two processes, {cpus}; ring {}, batch {}\n",
        r.messages,
        human(r.message_size as u64),
        human(r.buffer_size),
        r.batch
    );
    s += "throughput\n";
    s += &line("ring", &ring, "");
    s += &line(
        "pipe",
        &r.peers.pipe,
        &format!("   ring is {:.1}x", r.ratio_vs_pipe),
    );
    s += &line(
        "unix socket",
        &r.peers.unix_socket,
        &format!("   ring is {:.1}x", r.ratio_vs_unix_socket),
    );
    s += &format!(
        "one-way latency (ping-pong over two rings, RTT/2, {} round trips)\n  avg {}  p50 {}  p99 {}  p99.9 {}  max {}\n",
        l.samples,
        ns(l.avg),
        ns(l.p50 as f64),
        ns(l.p99 as f64),
        ns(l.p999 as f64),
        ns(l.max as f64)
    );
    match (&r.cache_line_ns, r.latency_p50_vs_cache_line) {
        (Some(c), Some(times)) => {
            s += &format!(
                "cache-line floor (one-way, same CPUs)\n  p50 {}  avg {}  (ring p50 is {times:.1}x)\n",
                ns(c.p50 as f64),
                ns(c.avg),
            );
        }
        _ => s += "cache-line floor: not measured (needs two CPUs)\n",
    }
    match output {
        Output::Summary => {
            s += "(a short `ringproof bench`; `ringproof bench --help` for the options, `ringproof --help` for the other commands)\n";
        }
        Output::Full => {
            s += "(clock at the consumer from an empty channel after a warm-up to the last message; every message checked and copied out; pipe and socket: one write(2) per batch, reader through a 64 KiB buffer)\n";
        }
        Output::Json => {}
    }
    s
}
