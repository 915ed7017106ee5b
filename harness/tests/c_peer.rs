//! The C peer (`clients/c/`, written from `docs/LAYOUT.md` alone) against
//! the `ringproof` CLI: byte-exact streams both ways through rings small
//! enough to wrap thousands of times with padding records, end of stream,
//! finished streams and their names, role exclusivity across languages, a
//! killed producer on either side, and corrupt segments.
//!
//! The C programs are compiled with `cc` once per test process into
//! Cargo's target tmp dir; a missing `cc` fails every test here, clearly.
//! Every segment name is a `TempName`, removed on drop; every process is a
//! `Proc`, killed on drop.
//!
//! One file (~750 lines): every scenario runs the same two C programs, built
//! once per test process, through the same process and stream helpers; the
//! scenarios follow the list of peer rules in `docs/LAYOUT.md` and read best
//! as one list.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use ringproof::ReadError;
use ringproof::layout::{MAGIC, RECORD_MESSAGE, RECORD_PADDING, checksum, lap};
use ringproof::shm::{OpenMode, Role, Segment, claim};
use ringproof::testing::TempName;
use ringproof::{Consumer, Producer};

mod support;
use support::{
    Proc, assert_error_line, consumer_held, env_count, producer_held, random_bytes, stderr_text,
    wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_ringproof");

// ---------------------------------------------------------------------------
// Building and running the two peers.

/// The compiled C programs.
struct CPeer {
    send: PathBuf,
    recv: PathBuf,
}

/// Compiles `clients/c` once per test process, as its README says.
fn c_peer() -> &'static CPeer {
    static PEER: OnceLock<CPeer> = OnceLock::new();
    PEER.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-peer");
        std::fs::create_dir_all(&dir).unwrap();
        let build = |program: &str| -> PathBuf {
            // Built under a name of our own, then renamed into place: test
            // processes running at once never run a half-written binary.
            let staged = dir.join(format!("{program}.{}", std::process::id()));
            let result = Command::new("cc")
                .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o"])
                .arg(&staged)
                .arg(src.join(format!("{program}.c")))
                .arg(src.join("ringproof.c"))
                .output();
            let out = match result {
                Ok(out) => out,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                    "`cc` was not found on PATH: these tests compile the C peer in clients/c; \
                     install a C compiler (gcc or clang) that answers to `cc`"
                ),
                Err(e) => panic!("running `cc`: {e}"),
            };
            assert!(
                out.status.success(),
                "cc failed to compile clients/c/{program}.c:\n{}",
                stderr_text(&out)
            );
            let path = dir.join(program);
            std::fs::rename(&staged, &path).unwrap();
            path
        };
        CPeer {
            send: build("rp_send"),
            recv: build("rp_recv"),
        }
    })
}

/// Which implementation plays a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    /// `clients/c`: `rp_send` / `rp_recv`.
    C,
    /// The `ringproof` CLI: `send` / `recv`.
    Cli,
}

impl Peer {
    /// The prefix of its error lines.
    fn prefix(self, role: Role) -> &'static str {
        match (self, role) {
            (Peer::C, Role::Producer) => "rp_send: ",
            (Peer::C, Role::Consumer) => "rp_recv: ",
            (Peer::Cli, _) => "ringproof: ",
        }
    }
}

/// A producer of `name` (ring of `ring` bytes if it creates it), sending
/// each read of at most `message` bytes of stdin as one message. The C
/// producer prints its statistics line (`RP_STATS`).
fn producer(peer: Peer, name: &TempName, ring: u64, message: u64) -> Command {
    let (ring, message) = (ring.to_string(), message.to_string());
    match peer {
        Peer::C => {
            let mut command = Command::new(&c_peer().send);
            command
                .args([name.name(), &ring, &message])
                .env("RP_STATS", "1");
            command
        }
        Peer::Cli => {
            let mut command = Command::new(BIN);
            command.args([
                "send",
                "--name",
                name.name(),
                "--size",
                &ring,
                "--message-size",
                &message,
            ]);
            command
        }
    }
}

/// A consumer of `name` (ring of `ring` bytes if it creates it).
fn consumer(peer: Peer, name: &TempName, ring: u64) -> Command {
    let ring = ring.to_string();
    match peer {
        Peer::C => {
            let mut command = Command::new(&c_peer().recv);
            command.args([name.name(), &ring]).env("RP_STATS", "1");
            command
        }
        Peer::Cli => {
            let mut command = Command::new(BIN);
            command.args(["recv", "--name", name.name(), "--size", &ring]);
            command
        }
    }
}

/// How long any process of these tests may run.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs to completion (at most [`LIMIT`]): stdin from `input`, stdout and
/// stderr collected.
#[track_caller]
fn run_with(mut command: Command, input: &[u8]) -> Output {
    let file = InputFile::new(input);
    let what = format!("{command:?}");
    Proc::spawn(
        command
            .stdin(file.open())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .finish_within(LIMIT, &what)
}

/// A file holding a producer's input: read(2) on a regular file returns
/// exactly what was asked for until the end, so every message but the last
/// has exactly the message size. Removed on drop.
struct InputFile(PathBuf);

impl InputFile {
    fn new(data: &[u8]) -> InputFile {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // Relaxed: only uniqueness matters.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-peer");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("input-{}-{n}", std::process::id()));
        std::fs::write(&path, data).unwrap();
        InputFile(path)
    }

    fn open(&self) -> File {
        File::open(&self.0).unwrap()
    }
}

impl Drop for InputFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The `key=value` figures of a C program's `stats` line on stderr.
fn stats(out: &Output) -> Vec<(String, u64)> {
    let text = stderr_text(out);
    let line = text
        .lines()
        .find(|l| l.contains(": stats "))
        .unwrap_or_else(|| panic!("no stats line in {text:?}"));
    line.split_whitespace()
        .filter_map(|word| {
            let (key, value) = word.split_once('=')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn stat(figures: &[(String, u64)], key: &str) -> u64 {
    figures
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key} in {figures:?}"))
        .1
}

#[track_caller]
fn assert_same_bytes(received: &[u8], sent: &[u8]) {
    if let Some(i) = received.iter().zip(sent).position(|(a, b)| a != b) {
        panic!("first difference at byte {i}");
    }
    assert_eq!(received.len(), sent.len(), "byte count");
}

// ---------------------------------------------------------------------------
// Byte-exact streams, both directions.

/// Streams `RINGPROOF_C_PEER_BYTES` (default 1 MB) from `from` to `to`
/// through a ring of `ring` bytes in messages of `message` bytes, and checks
/// the output byte for byte, both exits, the framing and the laps (from the
/// C side's statistics), and that the last side to leave removed the name.
/// Returns the C side's statistics.
fn stream(
    from: Peer,
    to: Peer,
    ring: u64,
    message: u64,
    consumer_first: bool,
) -> Vec<(String, u64)> {
    let len = env_count("RINGPROOF_C_PEER_BYTES", 1_000_000) as usize;
    let data = random_bytes(len, ring ^ message ^ u64::from(consumer_first));
    let input = InputFile::new(&data);
    let name = TempName::for_test("cpeer");
    let mut send = producer(from, &name, ring, message);
    send.stdin(input.open())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut recv = consumer(to, &name, ring);
    recv.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (send, recv) = if consumer_first {
        let recv = Proc::spawn(&mut recv);
        wait_until("the consumer holds its role", || consumer_held(&name));
        (Proc::spawn(&mut send), recv)
    } else {
        let send = Proc::spawn(&mut send);
        wait_until("the producer holds its role", || producer_held(&name));
        (send, Proc::spawn(&mut recv))
    };
    let received = recv.finish_within(LIMIT, "the consumer");
    // A consumer that failed leaves the producer waiting for a successor:
    // fail here, and the producer is killed on drop.
    assert!(
        received.status.success(),
        "{to:?} consumer: {}",
        stderr_text(&received)
    );
    let sent = send.finish_within(LIMIT, "the producer");
    assert!(
        sent.status.success(),
        "{from:?} producer: {}",
        stderr_text(&sent)
    );
    assert_same_bytes(&received.stdout, &data);
    assert!(
        !name.exists(),
        "the last side to leave removes a finished stream's name"
    );

    let figures = if from == Peer::C {
        stats(&sent)
    } else {
        stats(&received)
    };
    let max_message = ring / 2 - 8;
    let chunk = message.min(max_message);
    assert_eq!(
        stat(&figures, "messages"),
        (len as u64).div_ceil(chunk),
        "one message per read of {chunk} bytes"
    );
    assert_eq!(stat(&figures, "capacity"), ring);
    let position = figures
        .iter()
        .find(|(k, _)| k == "tail" || k == "head")
        .map(|(_, v)| *v)
        .unwrap();
    if ring <= 128 {
        assert!(
            position / ring >= 1000,
            "the ring wrapped only {} times",
            position / ring
        );
    }
    figures
}

#[test]
fn c_producer_to_cli_recv_wraps_with_padding_records_consumer_first() {
    let figures = stream(Peer::C, Peer::Cli, 64, 13, true);
    // 24-byte records in 64 bytes: two records, then 16 bytes of padding.
    assert!(stat(&figures, "padding") > 1000, "{figures:?}");
}

#[test]
fn c_producer_to_cli_recv_writes_empty_padding_records_producer_first() {
    // 24-byte records in 128 bytes: five records, then a padding record of
    // 8 bytes whose `len` is 0.
    let figures = stream(Peer::C, Peer::Cli, 128, 13, false);
    assert!(stat(&figures, "padding") > 1000, "{figures:?}");
}

#[test]
fn c_producer_to_cli_recv_in_the_smallest_ring() {
    // 16-byte records in 32 bytes: no padding, a new lap every two records.
    let figures = stream(Peer::C, Peer::Cli, 32, 7, true);
    assert_eq!(stat(&figures, "padding"), 0);
}

#[test]
fn cli_send_to_c_recv_skips_padding_records_producer_first() {
    let figures = stream(Peer::Cli, Peer::C, 64, 13, false);
    assert!(stat(&figures, "padding") > 1000, "{figures:?}");
}

#[test]
fn cli_send_to_c_recv_skips_empty_padding_records_consumer_first() {
    let figures = stream(Peer::Cli, Peer::C, 128, 13, true);
    assert!(stat(&figures, "padding") > 1000, "{figures:?}");
}

#[test]
fn cli_send_to_c_recv_in_the_smallest_ring() {
    let figures = stream(Peer::Cli, Peer::C, 32, 7, false);
    assert_eq!(stat(&figures, "padding"), 0);
}

#[test]
fn default_sizes_stream_both_ways() {
    // 1 MiB ring, 64 KiB messages: what both sides do with no options. The
    // consumer starts first: a producer could send the whole stream into a
    // ring this large and leave before it is seen holding its role.
    stream(Peer::C, Peer::Cli, 1 << 20, 64 << 10, true);
    stream(Peer::Cli, Peer::C, 1 << 20, 64 << 10, true);
}

// ---------------------------------------------------------------------------
// End of stream and who removes the name.

#[test]
fn a_finished_stream_waits_for_a_late_consumer_of_the_other_language() {
    for (from, to) in [(Peer::C, Peer::Cli), (Peer::Cli, Peer::C)] {
        // An empty stream too: a producer written to layout version 1 would
        // remove it on leaving, and the late consumer would never see its end.
        for len in [0usize, 100_000] {
            let name = TempName::for_test("cpeer-late");
            let data = random_bytes(len, 5);
            let sent = run_with(producer(from, &name, 1 << 20, 64 << 10), &data);
            assert!(sent.status.success(), "{from:?}: {}", stderr_text(&sent));
            assert!(
                name.exists(),
                "{from:?} producer removed a stream no consumer has read ({len} bytes)"
            );
            let received = run_with(consumer(to, &name, 1 << 20), b"");
            assert!(
                received.status.success(),
                "{to:?}: {}",
                stderr_text(&received)
            );
            assert_same_bytes(&received.stdout, &data);
            assert!(
                !name.exists(),
                "{to:?} consumer left last a finished stream and kept its name"
            );
        }
    }
}

/// Leaves at `name` a finished stream that kept its name: closed, every
/// message released, no role held (as after a consumer killed between its
/// last release and its leaving). Made with the library's `claim`, which
/// never removes the name.
fn finished_stream_with_a_name(name: &TempName, data: &[u8]) {
    let mut tx = Producer::new(
        claim(
            name.name(),
            Role::Producer,
            OpenMode::Create { capacity: 4096 },
        )
        .unwrap(),
    )
    .unwrap();
    tx.push(data).unwrap();
    tx.close().unwrap();
    drop(tx);
    let mut rx =
        Consumer::new(claim(name.name(), Role::Consumer, OpenMode::Open).unwrap()).unwrap();
    assert_eq!(rx.pop().unwrap(), data);
    assert_eq!(rx.pop(), Err(ReadError::Closed));
    drop(rx);
    let seen = Segment::inspect(name.name()).unwrap();
    assert!(seen.closed && seen.used == 0 && seen.stale(), "{seen:?}");
}

#[test]
fn c_producer_reclaims_a_finished_stream_and_c_consumer_only_sees_its_end() {
    // The consumer never reclaims: it reads the end of the finished stream,
    // and, leaving last, removes the name.
    let name = TempName::for_test("cpeer-reclaim");
    finished_stream_with_a_name(&name, b"old");
    let out = run_with(consumer(Peer::C, &name, 4096), b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(out.stdout, b"");
    assert!(!name.exists(), "rp_recv left a finished stream's name");

    // The producer starts a fresh stream over a finished one.
    let name = TempName::for_test("cpeer-reclaim");
    finished_stream_with_a_name(&name, b"old");
    let sent = run_with(producer(Peer::C, &name, 4096, 64), b"new stream");
    assert!(sent.status.success(), "{}", stderr_text(&sent));
    let seen = Segment::inspect(name.name()).unwrap();
    assert_eq!(
        (seen.producer_gen, seen.consumer_gen),
        (1, 0),
        "a fresh segment"
    );
    let out = run_with(consumer(Peer::Cli, &name, 4096), b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(out.stdout, b"new stream");

    // A closed stream not read to its end is refused, and kept for its consumer.
    let name = TempName::for_test("cpeer-reclaim");
    let sent = run_with(producer(Peer::Cli, &name, 4096, 64), b"unread");
    assert!(sent.status.success(), "{}", stderr_text(&sent));
    let out = run_with(producer(Peer::C, &name, 4096, 64), b"more");
    assert_error_line(&out, 2, "rp_send: ", "closed stream not read");
    let out = run_with(consumer(Peer::C, &name, 4096), b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(out.stdout, b"unread");
    assert!(!name.exists());
}

// ---------------------------------------------------------------------------
// One producer and one consumer at a time, whatever the language.

#[test]
fn roles_are_exclusive_between_c_and_the_cli() {
    for first in [Peer::C, Peer::Cli] {
        let second = if first == Peer::C { Peer::Cli } else { Peer::C };
        let name = TempName::for_test("cpeer-roles");
        let mut holder = Proc::spawn(
            producer(first, &name, 4096, 64)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let mut stdin = holder.stdin();
        wait_until("the first producer holds its role", || producer_held(&name));
        for other in [Peer::C, Peer::Cli] {
            let out = run_with(producer(other, &name, 4096, 64), b"intruder");
            assert_error_line(
                &out,
                2,
                other.prefix(Role::Producer),
                "producer role is held",
            );
        }
        let reader = Proc::spawn(
            consumer(second, &name, 4096)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        wait_until("the consumer holds its role", || consumer_held(&name));
        for other in [Peer::C, Peer::Cli] {
            let out = run_with(consumer(other, &name, 4096), b"");
            assert_error_line(
                &out,
                2,
                other.prefix(Role::Consumer),
                "consumer role is held",
            );
            assert_eq!(out.stdout, b"");
        }
        stdin.write_all(b"only the holders talk").unwrap();
        drop(stdin);
        let sent = holder.finish_within(LIMIT, "the producer");
        let received = reader.finish_within(LIMIT, "the consumer");
        assert!(sent.status.success(), "{}", stderr_text(&sent));
        assert!(received.status.success(), "{}", stderr_text(&received));
        assert_eq!(received.stdout, b"only the holders talk");
        assert!(!name.exists());
    }
}

// ---------------------------------------------------------------------------
// A producer killed mid-stream.

/// The 13-byte message number `i`.
fn record(i: usize) -> Vec<u8> {
    format!("{i:012}\n").into_bytes()
}

/// Kills the `from` producer (SIGKILL) while messages flow through a 64-byte
/// ring, and checks that the `to` consumer wrote whole messages, in order,
/// then exited 3 saying the producer died.
///
/// The producer's stdin is a pipe fed one 13-byte message per write(2):
/// pipe writes up to PIPE_BUF are atomic, so each 13-byte read the
/// producer makes is exactly one message.
fn killed_producer(from: Peer, to: Peer) {
    let name = TempName::for_test("cpeer-kill");
    let mut recv = Proc::spawn(
        consumer(to, &name, 64)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    wait_until("the consumer holds its role", || consumer_held(&name));
    let mut stdout = recv.0.stdout.take().unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let reader = {
        let written = Arc::clone(&written);
        thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                out.extend_from_slice(&buf[..n]);
                // Relaxed: a progress count; the bytes come back through join.
                written.fetch_add(n, Ordering::Relaxed);
            }
            out
        })
    };
    let mut send = Proc::spawn(
        producer(from, &name, 64, 13)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut stdin = send.stdin();
    let feeder = thread::spawn(move || {
        // Until the killed producer's end of the pipe is gone (EPIPE).
        (0..).find(|&i| stdin.write_all(&record(i)).is_err())
    });
    let enough = 2_000 * 13;
    // Relaxed: see the reader.
    wait_until("the consumer wrote 2000 messages", || {
        written.load(Ordering::Relaxed) >= enough
    });
    send.0.kill().unwrap();
    let _ = send.0.wait();
    let fed = feeder.join().unwrap().unwrap();
    let out = recv.finish_within(LIMIT, "the consumer");
    let received = reader.join().unwrap();
    assert_error_line(&out, 3, to.prefix(Role::Consumer), "producer died");
    assert!(received.len() >= enough);
    assert_eq!(received.len() % 13, 0, "a torn message was delivered");
    let count = received.len() / 13;
    assert!(count <= fed, "{count} messages delivered, {fed} fed");
    for (i, message) in received.chunks(13).enumerate() {
        assert_eq!(message, record(i), "message {i}");
    }
    assert!(name.exists(), "a stream whose producer died is kept");
}

#[test]
fn cli_recv_reports_a_killed_c_producer_after_whole_messages() {
    killed_producer(Peer::C, Peer::Cli);
}

#[test]
fn c_recv_reports_a_killed_cli_send_after_whole_messages() {
    killed_producer(Peer::Cli, Peer::C);
}

// ---------------------------------------------------------------------------
// Corrupt segments: exit 2, one line.

/// A segment file's bytes: a valid header for `capacity` (with `version`),
/// both generations 1, the given positions, and no role held.
fn segment_bytes(capacity: u64, version: u32, head: u64, tail: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 384 + capacity as usize];
    bytes[0..8].copy_from_slice(&MAGIC);
    bytes[8..12].copy_from_slice(&version.to_ne_bytes());
    bytes[12..16].copy_from_slice(&384u32.to_ne_bytes());
    bytes[16..24].copy_from_slice(&capacity.to_ne_bytes());
    let sum = checksum(bytes[..24].try_into().unwrap());
    bytes[24..32].copy_from_slice(&sum.to_ne_bytes());
    bytes[32..36].copy_from_slice(&1u32.to_ne_bytes());
    bytes[36..40].copy_from_slice(&1u32.to_ne_bytes());
    bytes[128..136].copy_from_slice(&head.to_ne_bytes());
    bytes[256..264].copy_from_slice(&tail.to_ne_bytes());
    bytes
}

/// Writes a record header at `position`: `len`, then `tag` as given.
fn put_record(bytes: &mut [u8], capacity: u64, position: u64, len: u32, tag: u32) {
    let at = 384 + (position & (capacity - 1)) as usize;
    bytes[at..at + 4].copy_from_slice(&len.to_ne_bytes());
    bytes[at + 4..at + 8].copy_from_slice(&tag.to_ne_bytes());
}

#[test]
fn c_peers_refuse_corrupt_segments_with_exit_2() {
    let cap = 64;
    let message = |bytes: &mut Vec<u8>, position: u64, len: u32| {
        put_record(
            bytes,
            cap,
            position,
            len,
            RECORD_MESSAGE ^ lap(position, cap),
        );
    };
    let mut cases: Vec<(&str, Role, Vec<u8>, &str)> = Vec::new();
    cases.push((
        "version 1",
        Role::Consumer,
        segment_bytes(cap, 1, 0, 0),
        "unsupported layout version 1",
    ));
    cases.push((
        "version 1",
        Role::Producer,
        segment_bytes(cap, 1, 0, 0),
        "unsupported layout version 1",
    ));
    let mut bytes = segment_bytes(cap, 2, 0, 0);
    bytes[24] ^= 0x01;
    cases.push(("checksum", Role::Consumer, bytes, "checksum"));
    cases.push((
        "tail unaligned",
        Role::Consumer,
        segment_bytes(cap, 2, 0, 12),
        "tail index out of range",
    ));
    cases.push((
        "tail more than a capacity ahead",
        Role::Consumer,
        segment_bytes(cap, 2, 0, 2 * cap),
        "tail index out of range",
    ));
    cases.push((
        "head unaligned",
        Role::Producer,
        segment_bytes(cap, 2, 4, 8),
        "head index out of range",
    ));
    cases.push((
        "unwritten record",
        Role::Consumer,
        segment_bytes(cap, 2, 0, 16),
        "unknown record kind",
    ));
    // A record written in lap 0, read where lap 1 is expected: a tail pushed
    // ahead by exactly a capacity over stale bytes.
    let mut bytes = segment_bytes(cap, 2, cap, cap + 16);
    put_record(&mut bytes, cap, 0, 3, RECORD_MESSAGE);
    cases.push((
        "record of a stale lap",
        Role::Consumer,
        bytes,
        "unknown record kind",
    ));
    let mut bytes = segment_bytes(cap, 2, 0, 16);
    message(&mut bytes, 0, 25);
    cases.push(("message too long", Role::Consumer, bytes, "record length"));
    let mut bytes = segment_bytes(cap, 2, 0, 16);
    message(&mut bytes, 0, 9);
    cases.push(("message past tail", Role::Consumer, bytes, "record length"));
    let mut bytes = segment_bytes(cap, 2, 48, 80);
    put_record(&mut bytes, cap, 48, 0, RECORD_PADDING);
    message(&mut bytes, 64, 8);
    cases.push((
        "padding of the wrong length",
        Role::Consumer,
        bytes,
        "record length",
    ));

    for (what, role, bytes, needle) in cases {
        let name = TempName::for_test("cpeer-corrupt");
        name.create_file(&bytes)
            .expect("create a test segment file");
        let command = match role {
            Role::Producer => producer(Peer::C, &name, cap, 8),
            Role::Consumer => consumer(Peer::C, &name, cap),
        };
        let out = run_with(command, b"x");
        assert!(out.stdout.is_empty(), "{what}: wrote {:?}", out.stdout);
        let prefix = Peer::C.prefix(role);
        let err = stderr_text(&out);
        assert!(
            out.status.code() == Some(2) && err.lines().count() == 1,
            "{what}: exit {:?}, stderr {err:?}",
            out.status.code()
        );
        assert!(
            err.starts_with(prefix) && err.contains(needle),
            "{what}: {needle:?} not in {err:?}"
        );
    }
}

#[test]
fn c_recv_reads_a_record_of_the_expected_lap() {
    // The control for the stale-lap case above: the same record written with
    // lap 1 is delivered; then the producer (generation 1, role free) is gone.
    let cap = 64;
    let name = TempName::for_test("cpeer-lap");
    let mut bytes = segment_bytes(cap, 2, cap, cap + 16);
    put_record(&mut bytes, cap, cap, 3, RECORD_MESSAGE ^ 1);
    bytes[384 + 8..384 + 11].copy_from_slice(b"abc");
    name.create_file(&bytes)
        .expect("create a test segment file");
    let out = run_with(consumer(Peer::C, &name, cap), b"");
    assert_eq!(out.stdout, b"abc");
    assert_error_line(&out, 3, "rp_recv: ", "producer died");
}

#[test]
fn c_peers_refuse_files_that_are_not_safe_segments() {
    use std::os::unix::fs::PermissionsExt;
    // Open to other users.
    let name = TempName::for_test("cpeer-mode");
    name.create_file(&segment_bytes(64, 2, 0, 0))
        .expect("create a test segment file");
    std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_with(consumer(Peer::C, &name, 64), b"");
    assert_error_line(&out, 2, "rp_recv: ", "lets other users in");

    // Holes: only the first page of an 8 KiB ring is allocated.
    let name = TempName::for_test("cpeer-holes");
    name.create_file(&segment_bytes(8192, 2, 0, 0)[..384])
        .expect("create a test segment file");
    File::options()
        .write(true)
        .open(name.path())
        .unwrap()
        .set_len(384 + 8192)
        .unwrap();
    let out = run_with(producer(Peer::C, &name, 8192, 8), b"x");
    assert_error_line(&out, 2, "rp_send: ", "not fully allocated");

    // Never initialised, and no process holds a role: given up after 2 s.
    let name = TempName::for_test("cpeer-uninit");
    name.create_file(&[]).expect("create a test segment file");
    let out = run_with(consumer(Peer::C, &name, 64), b"");
    assert_error_line(&out, 2, "rp_recv: ", "never initialised");
}
