//! Two-process throughput: the ring, then a pipe, in the same run.
//!
//! Every measurement runs a producer process and a consumer process (this
//! executable re-run as `ringproof bench-child --role …`), pinned to two
//! different CPUs when the process may use two or more. Each message carries
//! its sequence number in its first bytes (up to 8) and the consumer checks
//! it, so both peers touch every message.
//!
//! The clock runs in the consumer: it starts when the first message (a
//! warm-up, not counted) has been read and stops after the last one. The
//! consumer prints `{"messages": N, "seconds": S}` on stdout for the parent.
//!
//! - ring: `reserve`/`commit` (or `batch()` with `--batch` > 1) into a
//!   shared-memory ring; the consumer reads in place and releases.
//! - pipe: one `write(2)` per batch of messages; the consumer copies each
//!   message out of a 64 KiB buffered reader.
//!
//! Further peers (latency, Unix sockets) add a `measure_*` function and a
//! pair of child roles.

use std::io::{BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use clap::Parser as _;
use ringproof::Error as RingError;
use ringproof::shm::{OpenMode, Role, ShmConsumer, ShmProducer};
use serde::{Deserialize, Serialize};

use crate::cli::{BenchArgs, BenchChildArgs, BenchRole, Cli, Command};
use crate::exit::CliError;
use crate::peer::{self, NameGuard, OnConsumerDeath, Waited};
use crate::size::human;
use crate::stdio::{stdin_file, stdout_file};

/// How long a consumer waits for its next message before giving up.
const STALL: Duration = Duration::from_secs(20);
/// How long a ring producer waits for its consumer to attach.
const ATTACH_WAIT: Duration = Duration::from_secs(20);
/// Largest write buffer of the pipe producer (`message_size * batch`).
const MAX_BATCH_BYTES: u64 = 256 << 20;

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
        },
    }
}

/// One transfer: what both peers send and receive.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The executable to re-run as the child processes.
    pub exe: PathBuf,
    /// Ring capacity.
    pub buffer_size: u64,
    /// Bytes per message.
    pub message_size: usize,
    /// Timed messages.
    pub messages: u64,
    /// Messages per commit or write.
    pub batch: u64,
    /// CPUs for (consumer, producer), when there are two to use.
    pub cpus: Option<(usize, usize)>,
}

/// What a consumer measured.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Measured {
    /// Timed messages received.
    pub messages: u64,
    /// Seconds from the warm-up message to the last one.
    pub seconds: f64,
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

impl Throughput {
    fn of(m: Measured, message_size: usize) -> Self {
        let seconds = m.seconds.max(1e-9);
        let messages_per_sec = m.messages as f64 / seconds;
        Throughput {
            seconds: m.seconds,
            messages_per_sec,
            bytes_per_sec: messages_per_sec * message_size as f64,
        }
    }
}

/// The other transports measured in the same run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Peers {
    /// An anonymous pipe between the two processes.
    pub pipe: Throughput,
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
    /// CPUs of the consumer and the producer (empty: not pinned).
    pub cpus: Vec<usize>,
    /// Ring: seconds of the timed part.
    pub seconds: f64,
    /// Ring: messages per second.
    pub messages_per_sec: f64,
    /// Ring: payload bytes per second.
    pub bytes_per_sec: f64,
    /// The same transfer through other transports.
    pub peers: Peers,
    /// Ring messages per second over pipe messages per second.
    pub ratio_vs_pipe: f64,
}

/// `ringproof bench` (and `ringproof` alone).
pub fn run(args: &BenchArgs, output: Output) -> Result<(), CliError> {
    let plan = plan(args)?;
    let ring = Throughput::of(measure_ring(&plan)?, plan.message_size);
    let pipe = Throughput::of(measure_pipe(&plan)?, plan.message_size);
    let report = Report {
        message_size: plan.message_size,
        messages: plan.messages,
        batch: plan.batch,
        buffer_size: plan.buffer_size,
        cpus: plan.cpus.map(|(c, p)| vec![c, p]).unwrap_or_default(),
        seconds: ring.seconds,
        messages_per_sec: ring.messages_per_sec,
        bytes_per_sec: ring.bytes_per_sec,
        peers: Peers { pipe },
        ratio_vs_pipe: ring.messages_per_sec / pipe.messages_per_sec.max(1e-9),
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

/// Checks the arguments and picks the CPUs.
pub fn plan(args: &BenchArgs) -> Result<Plan, CliError> {
    let max = ringproof::layout::max_message(args.buffer_size);
    if args.message_size > max {
        return Err(CliError::invalid(format!(
            "--message-size {} is larger than the largest message of a {} ring ({max} bytes)",
            args.message_size,
            human(args.buffer_size)
        )));
    }
    if args.message_size.saturating_mul(args.batch) > MAX_BATCH_BYTES {
        return Err(CliError::invalid(format!(
            "--message-size times --batch is over {}",
            human(MAX_BATCH_BYTES)
        )));
    }
    let exe = current_exe()?;
    let cpus = allowed_cpus();
    Ok(Plan {
        exe,
        buffer_size: args.buffer_size,
        message_size: args.message_size as usize,
        messages: args.iterations,
        batch: args.batch,
        cpus: (cpus.len() >= 2).then(|| (cpus[0], cpus[1])),
    })
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else {
        format!("{:.1} k", r / 1e3)
    }
}

/// The human summary.
pub fn summary(r: &Report, output: Output) -> String {
    let cpus = match r.cpus.as_slice() {
        [c, p] => format!("pinned to CPUs {c} (consumer) and {p} (producer)"),
        _ => "not pinned (fewer than 2 CPUs)".to_string(),
    };
    let line = |label: &str, t: &Throughput| {
        format!(
            "  {label:<5} {:>9} msg/s {:>12}/s {:>9.3} s\n",
            rate(t.messages_per_sec),
            human(t.bytes_per_sec as u64),
            t.seconds
        )
    };
    let ring = Throughput {
        seconds: r.seconds,
        messages_per_sec: r.messages_per_sec,
        bytes_per_sec: r.bytes_per_sec,
    };
    let mut s = format!(
        "ringproof bench: {} messages of {} between two processes, {cpus}; ring {}, batch {}\n",
        r.messages,
        human(r.message_size as u64),
        human(r.buffer_size),
        r.batch
    );
    s += &line("ring", &ring);
    s += &line("pipe", &r.peers.pipe);
    s += &format!("  ring/pipe: {:.1}x the message rate\n", r.ratio_vs_pipe);
    match output {
        Output::Summary => {
            s += "(this is `ringproof bench` with its defaults; `ringproof --help` lists the other commands)\n";
        }
        Output::Full => {
            s += "(clock at the consumer, warm-up message excluded; pipe: one write(2) per batch, reader copies each message from a 64 KiB buffer)\n";
        }
        Output::Json => {}
    }
    s
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Pins this process to one CPU.
pub fn pin_to(cpu: usize) -> Result<(), CliError> {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    set.set(cpu)
        .map_err(|e| CliError::invalid(format!("cannot pin to CPU {cpu}: {}", e.desc())))?;
    sched_setaffinity(Pid::from_raw(0), &set)
        .map_err(|e| CliError::unexpected(format!("cannot pin to CPU {cpu}: {}", e.desc())))
}

fn spawn(
    plan: &Plan,
    role: BenchRole,
    name: &str,
    cpu: Option<usize>,
    stdin: Stdio,
    stdout: Stdio,
) -> Result<Child, CliError> {
    let role_arg = match role {
        BenchRole::RingProducer => "ring-producer",
        BenchRole::RingConsumer => "ring-consumer",
        BenchRole::PipeProducer => "pipe-producer",
        BenchRole::PipeConsumer => "pipe-consumer",
    };
    let mut command = Process::new(&plan.exe);
    command
        .arg("bench-child")
        .args(["--role", role_arg])
        .args(["--buffer-size", &plan.buffer_size.to_string()])
        .args(["--message-size", &plan.message_size.to_string()])
        .args(["--messages", &plan.messages.to_string()])
        .args(["--batch", &plan.batch.to_string()])
        .stdin(stdin)
        .stdout(stdout);
    if !name.is_empty() {
        command.args(["--name", name]);
    }
    if let Some(cpu) = cpu {
        command.args(["--cpu", &cpu.to_string()]);
    }
    command
        .spawn()
        .map_err(|e| CliError::unexpected(format!("cannot start a bench process: {e}")))
}

/// Waits for the consumer's report, then for the producer; kills the
/// producer if the consumer failed.
fn collect(what: &str, mut consumer: Child, mut producer: Child) -> Result<Measured, CliError> {
    let mut out = String::new();
    if let Some(mut stdout) = consumer.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    let consumer_status = consumer
        .wait()
        .map_err(|e| CliError::unexpected(format!("waiting for the {what} consumer: {e}")))?;
    if !consumer_status.success() {
        let _ = producer.kill();
        let _ = producer.wait();
        return Err(CliError::unexpected(format!(
            "{what} bench: the consumer process ended with {consumer_status}"
        )));
    }
    let producer_status = producer
        .wait()
        .map_err(|e| CliError::unexpected(format!("waiting for the {what} producer: {e}")))?;
    if !producer_status.success() {
        return Err(CliError::unexpected(format!(
            "{what} bench: the producer process ended with {producer_status}"
        )));
    }
    serde_json::from_str(out.trim()).map_err(|e| {
        CliError::unexpected(format!(
            "{what} bench: unreadable consumer report {out:?}: {e}"
        ))
    })
}

/// Two processes through a shared-memory ring.
pub fn measure_ring(plan: &Plan) -> Result<Measured, CliError> {
    let guard = NameGuard::unique("bench");
    let consumer = spawn(
        plan,
        BenchRole::RingConsumer,
        guard.name(),
        plan.cpus.map(|c| c.0),
        Stdio::null(),
        Stdio::piped(),
    )?;
    let producer = match spawn(
        plan,
        BenchRole::RingProducer,
        guard.name(),
        plan.cpus.map(|c| c.1),
        Stdio::null(),
        Stdio::null(),
    ) {
        Ok(p) => p,
        Err(e) => {
            let mut consumer = consumer;
            let _ = consumer.kill();
            let _ = consumer.wait();
            return Err(e);
        }
    };
    collect("ring", consumer, producer)
}

/// Two processes through an anonymous pipe.
pub fn measure_pipe(plan: &Plan) -> Result<Measured, CliError> {
    let mut producer = spawn(
        plan,
        BenchRole::PipeProducer,
        "",
        plan.cpus.map(|c| c.1),
        Stdio::null(),
        Stdio::piped(),
    )?;
    let Some(pipe) = producer.stdout.take() else {
        let _ = producer.kill();
        let _ = producer.wait();
        return Err(CliError::unexpected("the pipe producer has no stdout"));
    };
    let consumer = match spawn(
        plan,
        BenchRole::PipeConsumer,
        "",
        plan.cpus.map(|c| c.0),
        Stdio::from(pipe),
        Stdio::piped(),
    ) {
        Ok(c) => c,
        Err(e) => {
            let _ = producer.kill();
            let _ = producer.wait();
            return Err(e);
        }
    };
    collect("pipe", consumer, producer)
}

/// `ringproof bench-child`: one side of one transfer.
pub fn child(args: &BenchChildArgs) -> Result<(), CliError> {
    if let Some(cpu) = args.cpu {
        pin_to(cpu)?;
    }
    let m = usize::try_from(args.message_size)
        .map_err(|_| CliError::invalid("--message-size is too large"))?;
    let batch = usize::try_from(args.batch.max(1))
        .map_err(|_| CliError::invalid("--batch is too large"))?;
    match args.role {
        BenchRole::RingProducer => ring_producer(args, m, batch),
        BenchRole::RingConsumer => report(ring_consumer(args, m, batch)?),
        BenchRole::PipeProducer => pipe_producer(args, m, batch),
        BenchRole::PipeConsumer => report(pipe_consumer(args, m)?),
    }
}

fn report(m: Measured) -> Result<(), CliError> {
    let json = serde_json::to_string(&m)
        .map_err(|e| CliError::unexpected(format!("formatting JSON: {e}")))?;
    let mut out = stdout_file()?;
    writeln!(out, "{json}").map_err(|e| CliError::unexpected(format!("writing the report: {e}")))
}

/// Writes the sequence number's first bytes (up to 8) into a message.
#[inline]
fn stamp(message: &mut [u8], seq: u64) {
    let bytes = seq.to_le_bytes();
    let k = message.len().min(8);
    message[..k].copy_from_slice(&bytes[..k]);
}

/// Checks a message's length and sequence number.
#[inline]
fn check(message: &[u8], m: usize, seq: u64) -> Result<(), CliError> {
    let bytes = seq.to_le_bytes();
    let k = m.min(8);
    if message.len() != m || message[..k] != bytes[..k] {
        return Err(CliError::unexpected(format!(
            "message {seq}: wrong length or sequence number ({} bytes)",
            message.len()
        )));
    }
    Ok(())
}

fn ring_producer(args: &BenchChildArgs, m: usize, batch: usize) -> Result<(), CliError> {
    let mut producer = ShmProducer::new(&args.name, args.buffer_size, OpenMode::CreateOrOpen)?;
    // Start only once the consumer is attached and waiting, as the pipe's
    // reader is blocked in read(2): neither peer gets a head start.
    let deadline = Instant::now() + ATTACH_WAIT;
    while !producer.segment().role_held(Role::Consumer)? {
        if Instant::now() > deadline {
            return Err(CliError::unexpected("the ring consumer never attached"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let total = args.messages + 1; // the warm-up message first
    let mut seq = 0u64;
    while seq < total {
        let want = batch.min((total - seq) as usize);
        let sent = if batch == 1 {
            match producer.reserve(m) {
                Ok(mut grant) => {
                    stamp(&mut grant, seq);
                    grant.commit();
                    1
                }
                Err(RingError::Full) => 0,
                Err(e) => return Err(e.into()),
            }
        } else {
            let mut staged = producer.batch();
            let mut k = 0;
            while k < want {
                match staged.reserve(m) {
                    Ok(message) => stamp(message, seq + k as u64),
                    Err(RingError::Full) => break,
                    Err(e) => return Err(e.into()),
                }
                k += 1;
            }
            staged.commit();
            k
        };
        if sent == 0 {
            peer::wait_room(&mut producer, m, OnConsumerDeath::Fail, None)?;
        }
        seq += sent as u64;
    }
    producer.close()?;
    Ok(())
}

fn wait_for_message(consumer: &mut ShmConsumer, received: u64) -> Result<(), CliError> {
    match peer::wait_message(consumer, Some(STALL))? {
        Waited::Ready => Ok(()),
        Waited::TimedOut => Err(CliError::unexpected(format!(
            "no message within {} after {received} messages",
            crate::size::human_duration(STALL)
        ))),
    }
}

fn ring_consumer(args: &BenchChildArgs, m: usize, batch: usize) -> Result<Measured, CliError> {
    let mut consumer = ShmConsumer::new(&args.name, args.buffer_size, OpenMode::CreateOrOpen)?;
    let total = args.messages + 1;
    let mut received = 0u64;
    let mut start = None;
    while received < total {
        let got = if batch == 1 || received == 0 {
            match consumer.read() {
                Ok(message) => {
                    check(&message, m, received)?;
                    message.release();
                    1
                }
                Err(RingError::Empty) => 0,
                Err(RingError::Closed) => usize::MAX,
                Err(e) => return Err(e.into()),
            }
        } else {
            let mut reads = consumer.read_batch();
            let mut k = 0;
            let mut closed = false;
            while k < batch {
                match reads.read() {
                    Ok(message) => check(message, m, received + k as u64)?,
                    Err(RingError::Empty) => break,
                    Err(RingError::Closed) => {
                        closed = true;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
                k += 1;
            }
            reads.release();
            if closed && k == 0 { usize::MAX } else { k }
        };
        match got {
            0 => wait_for_message(&mut consumer, received)?,
            usize::MAX => {
                return Err(CliError::unexpected(format!(
                    "the stream ended after {received} of {total} messages"
                )));
            }
            k => {
                if received == 0 {
                    start = Some(Instant::now());
                }
                received += k as u64;
            }
        }
    }
    let seconds = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    // Read the end of stream too, so that the segment is finished and its
    // last user removes it.
    loop {
        match consumer.read() {
            Err(RingError::Closed) => break,
            Err(RingError::Empty) => wait_for_message(&mut consumer, received)?,
            Ok(_) => return Err(CliError::unexpected("a message after the last one")),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Measured {
        messages: args.messages,
        seconds,
    })
}

fn pipe_producer(args: &BenchChildArgs, m: usize, batch: usize) -> Result<(), CliError> {
    let mut out = stdout_file()?;
    let mut buf = vec![0u8; m * batch];
    let write_error = |e: std::io::Error| CliError::unexpected(format!("writing the pipe: {e}"));
    stamp(&mut buf[..m], 0);
    out.write_all(&buf[..m]).map_err(write_error)?;
    let total = args.messages + 1;
    let mut seq = 1u64;
    while seq < total {
        let k = batch.min((total - seq) as usize);
        for (i, message) in buf.chunks_exact_mut(m).take(k).enumerate() {
            stamp(message, seq + i as u64);
        }
        out.write_all(&buf[..k * m]).map_err(write_error)?;
        seq += k as u64;
    }
    Ok(())
}

fn pipe_consumer(args: &BenchChildArgs, m: usize) -> Result<Measured, CliError> {
    let mut input = BufReader::with_capacity(64 * 1024, stdin_file()?);
    let mut message = vec![0u8; m];
    let read_error = |e: std::io::Error| CliError::unexpected(format!("reading the pipe: {e}"));
    input.read_exact(&mut message).map_err(read_error)?;
    check(&message, m, 0)?;
    let start = Instant::now();
    for seq in 1..=args.messages {
        input.read_exact(&mut message).map_err(read_error)?;
        check(&message, m, seq)?;
    }
    Ok(Measured {
        messages: args.messages,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The executable's path, for callers that spawn bench children themselves.
pub fn current_exe() -> Result<PathBuf, CliError> {
    std::env::current_exe()
        .map_err(|e| CliError::unexpected(format!("cannot find this executable: {e}")))
}
