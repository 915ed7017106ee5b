//! The `ringproof` binary, driven as a user would: real processes, real
//! segments in `/dev/shm`, exit codes and stderr lines checked.
//!
//! Every segment name comes from a `TempName` (pid + counter) that removes it
//! on drop, and every spawned process is killed on drop, also when a test fails.
//!
//! One file (~800 lines): one test per flag, exit code and message the README
//! names, all over the same few helpers (run the binary, start a peer, check
//! an exit code and its one stderr line); split by subcommand, each part
//! would be a short list of tests importing the same helpers.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ringproof::shm::Segment;
use ringproof::testing::{TempName, scribble_segment};

mod support;
use support::{
    Proc, assert_error_line, env_count, producer_held, random_bytes, read_all, stderr_text,
    wait_until,
};

const BIN: &str = env!("CARGO_BIN_EXE_ringproof");

fn ringproof(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    command
}

/// Runs to completion with `input` on stdin.
fn run(args: &[&str], input: &[u8]) -> Output {
    let mut child = ringproof(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// Exit `code` and exactly one stderr line, `ringproof: …` containing `needle`.
#[track_caller]
fn assert_error(out: &Output, code: i32, needle: &str) {
    assert_error_line(out, code, "ringproof: ", needle);
}

/// A segment made by `send` alone: closed, holding `data`, no role held.
fn stale_segment(name: &TempName, size: &str, data: &[u8]) {
    let out = run(&["send", "--name", name.name(), "--size", size], data);
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(name.exists());
}

// ---------------------------------------------------------------------------
// Two processes, many messages.

#[test]
fn golden_demo_checks_a_million_messages_between_two_processes() {
    let messages = env_count("RINGPROOF_MESSAGES", 1_000_000);
    let mut child = ringproof(&[
        "demo",
        "--mode",
        "golden",
        "--messages",
        &messages.to_string(),
        "--verbose",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let err = thread::spawn(move || read_all(stderr));
    let out = read_all(stdout);
    let status = child.wait().unwrap();
    let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    assert!(status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out),
        "OK: golden scenario completed\n"
    );
    assert!(err.contains(&format!("{messages} messages")), "{err}");
    let leftover = std::fs::read_dir("/dev/shm").unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with(&format!("ringproof-demo-{pid}-"))
    });
    assert!(!leftover, "the demo left its segment behind");
}

// ---------------------------------------------------------------------------
// send | recv, byte-exact, both start orders.

fn send_recv_roundtrip(size: &str, recv_first: bool) {
    let len = env_count("RINGPROOF_STREAM_BYTES", 50 << 20) as usize;
    let data = Arc::new(random_bytes(len, 0x5EED ^ len as u64));
    let name = TempName::for_test("stream");
    let recv_cmd = || {
        let mut c = ringproof(&["recv", "--name", name.name(), "--size", size]);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let mut send_cmd = ringproof(&["send", "--name", name.name(), "--size", size]);
    send_cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());

    let (recv, mut send) = if recv_first {
        let recv = Proc::spawn(&mut recv_cmd());
        wait_until("recv created the segment", || name.exists());
        (recv, Proc::spawn(&mut send_cmd))
    } else {
        let send = Proc::spawn(&mut send_cmd);
        wait_until("send created the segment", || producer_held(&name));
        (Proc::spawn(&mut recv_cmd()), send)
    };
    let mut stdin = send.stdin();
    let feed = Arc::clone(&data);
    let feeder = thread::spawn(move || stdin.write_all(&feed));
    let received = recv.finish();
    feeder.join().unwrap().unwrap();
    let sent = send.finish();
    assert!(sent.status.success(), "send: {}", stderr_text(&sent));
    assert!(
        received.status.success(),
        "recv: {}",
        stderr_text(&received)
    );
    assert_eq!(received.stdout.len(), data.len(), "byte count");
    if let Some(i) = received
        .stdout
        .iter()
        .zip(data.iter())
        .position(|(a, b)| a != b)
    {
        panic!("first difference at byte {i}");
    }
    assert!(
        !name.exists(),
        "the last side to leave removes a finished segment"
    );
}

#[test]
fn send_recv_is_byte_exact_recv_first_small_ring() {
    send_recv_roundtrip("64KiB", true);
}

#[test]
fn send_recv_is_byte_exact_send_first_small_ring() {
    send_recv_roundtrip("64KiB", false);
}

#[test]
fn send_recv_is_byte_exact_recv_first_large_ring() {
    send_recv_roundtrip("16MiB", true);
}

#[test]
fn send_recv_is_byte_exact_send_first_large_ring() {
    send_recv_roundtrip("16MiB", false);
}

#[test]
fn recv_reads_a_finished_stream_after_send_has_exited() {
    let name = TempName::for_test("late");
    let data = random_bytes(100_000, 9);
    stale_segment(&name, "1MiB", &data);
    let out = run(&["recv", "--name", name.name()], b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(out.stdout == data);
    assert!(!name.exists());
}

#[test]
fn send_rate_limit_paces_the_stream() {
    let name = TempName::for_test("rate");
    let data = random_bytes(60_000, 5);
    let started = Instant::now();
    let out = run(
        &[
            "send",
            "--name",
            name.name(),
            "--rate-limit",
            "200KB",
            "--message-size",
            "10000",
        ],
        &data,
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    // 60 kB at 200 kB/s: at least 0.3 s.
    assert!(started.elapsed() >= Duration::from_millis(290));
    let out = run(&["recv", "--name", name.name()], b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(out.stdout == data);
}

// ---------------------------------------------------------------------------
// Peer death, timeouts, closed stdout.

#[test]
fn recv_delivers_everything_then_exits_3_when_the_producer_is_killed() {
    let name = TempName::for_test("kill");
    let recv = Proc::spawn(
        ringproof(&["recv", "--name", name.name(), "--size", "64KiB"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    wait_until("recv created the segment", || name.exists());
    // Read recv's output all along, so that it never blocks on stdout.
    let recv = thread::spawn(move || recv.finish());
    let mut send = Proc::spawn(
        ringproof(&["send", "--name", name.name(), "--message-size", "1000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut stdin = send.stdin();
    let data = random_bytes(300_000, 77);
    stdin.write_all(&data).unwrap();
    // Wait until the consumer has released most of it, then kill the
    // producer with its stdin still open: it never closes the ring.
    wait_until("recv consumed most of the data", || {
        Segment::inspect(name.name()).is_ok_and(|i| i.head >= 200_000)
    });
    send.0.kill().unwrap();
    let _ = send.0.wait();
    let out = recv.join().unwrap();
    drop(stdin);
    assert_error(&out, 3, "producer died");
    assert!(out.stdout.len() >= 150_000, "{} bytes", out.stdout.len());
    assert!(
        data.starts_with(&out.stdout),
        "recv's output is not a prefix of the input"
    );
}

#[test]
fn a_new_recv_continues_with_no_gap_after_recv_is_killed() {
    let name = TempName::for_test("killrecv");
    let data = Arc::new(random_bytes(4 << 20, 91));
    let mut send = Proc::spawn(
        ringproof(&[
            "send",
            "--name",
            name.name(),
            "--size",
            "64KiB",
            "--message-size",
            "4000",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped()),
    );
    let mut stdin = send.stdin();
    let feed = Arc::clone(&data);
    let feeder = thread::spawn(move || stdin.write_all(&feed));
    let recv_cmd = |rate: Option<&str>| {
        let mut c = ringproof(&["recv", "--name", name.name()]);
        if let Some(rate) = rate {
            c.args(["--rate-limit", rate]);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let mut first = Proc::spawn(&mut recv_cmd(Some("4MB")));
    let first_out = first.0.stdout.take();
    let first_reader = thread::spawn(move || read_all(first_out));
    wait_until("the first recv released a megabyte", || {
        Segment::inspect(name.name()).is_ok_and(|i| i.head >= 1 << 20)
    });
    first.0.kill().unwrap();
    let _ = first.0.wait();
    let before = first_reader.join().unwrap();
    let after = Proc::spawn(&mut recv_cmd(None)).finish();
    feeder.join().unwrap().unwrap();
    let sent = send.finish();
    assert!(sent.status.success(), "send: {}", stderr_text(&sent));
    assert!(after.status.success(), "recv: {}", stderr_text(&after));
    assert!(data.starts_with(&before), "the killed recv wrote a prefix");
    assert!(data.ends_with(&after.stdout), "the new recv wrote a suffix");
    let resumed_at = data.len() - after.stdout.len();
    assert!(
        resumed_at <= before.len(),
        "gap: the new recv resumed at byte {resumed_at}, the killed one wrote {}",
        before.len()
    );
    // Written twice: at most the killed recv's unreleased batch (256 KiB of
    // flushed output plus the message that crossed it).
    assert!(
        before.len() - resumed_at <= (256 << 10) + 4000,
        "{} bytes delivered twice",
        before.len() - resumed_at
    );
    assert!(!name.exists(), "the finished segment is removed");
}

#[test]
fn recv_timeout_is_exit_3() {
    let name = TempName::for_test("timeout");
    let started = Instant::now();
    let out = run(&["recv", "--name", name.name(), "--timeout", "300ms"], b"");
    assert_error(&out, 3, "no message within 300ms");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn recv_stops_quietly_when_stdout_is_closed() {
    let name = TempName::for_test("epipe");
    // More than recv buffers before its first write to stdout.
    stale_segment(&name, "4MiB", &random_bytes(3_000_000, 3));
    let mut recv = ringproof(&["recv", "--name", name.name()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(recv.stdout.take()); // the reader goes away at once
    let out = recv.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_text(&out));
    assert!(out.stderr.is_empty(), "{}", stderr_text(&out));
    // What recv had not read yet stays in the ring for the next consumer.
    let info = Segment::inspect(name.name()).unwrap();
    assert!(info.used > 0);
}

// ---------------------------------------------------------------------------
// Error paths: one line on stderr, exit 2.

#[test]
fn bad_names_are_exit_2() {
    for args in [
        &["inspect", "--name", "a/b"][..],
        &["send", "--name", "a/b"],
        &["recv", "--name", "a/b"],
        &["clean", "--name", ""],
    ] {
        let out = run(args, b"");
        assert_error(&out, 2, "invalid segment name");
    }
}

#[test]
fn missing_segment_is_exit_2() {
    let name = TempName::for_test("missing");
    let out = run(&["inspect", "--name", name.name()], b"");
    assert_error(&out, 2, "no shared-memory segment named");
    let out = run(&["clean", "--name", name.name()], b"");
    assert_error(&out, 2, "no shared-memory segment named");
    let out = run(&["demo", "--mode", "failure"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_text(&out),
        "ERROR: invalid input or unavailable IPC resource\n"
    );
}

#[test]
fn second_producer_is_exit_2() {
    let name = TempName::for_test("second");
    let mut first = Proc::spawn(
        ringproof(&["send", "--name", name.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stdin = first.stdin();
    wait_until("the first producer holds its role", || producer_held(&name));
    let out = run(&["send", "--name", name.name()], b"more");
    assert_error(&out, 2, "producer role is held");
    drop(stdin);
    let first = first.finish();
    assert!(first.status.success(), "{}", stderr_text(&first));
}

#[test]
fn corrupt_header_is_exit_2() {
    let name = TempName::for_test("corrupt");
    stale_segment(&name, "64KiB", b"hello");
    scribble_segment(&name, 0, b"NOTARING");
    let out = run(&["inspect", "--name", name.name()], b"");
    assert_error(&out, 2, "bad magic");
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid        no"));
    let out = run(&["recv", "--name", name.name()], b"");
    assert_error(&out, 2, "bad magic");
    let out = run(&["send", "--name", name.name()], b"x");
    assert_error(&out, 2, "bad magic");
}

#[test]
fn too_small_segment_is_exit_2() {
    let name = TempName::for_test("small");
    name.create_file(&[0x5Au8; 10])
        .expect("create a test segment file");
    for args in [
        &["inspect", "--name", name.name()][..],
        &["recv", "--name", name.name()],
        &["send", "--name", name.name()],
    ] {
        let out = run(args, b"x");
        assert_error(&out, 2, "too small");
    }
}

#[test]
fn bad_arguments_are_one_line_and_exit_2() {
    let out = run(&["send", "--name", "x", "--size", "1000"], b"");
    assert_error(&out, 2, "power of two");
    let out = run(&["send", "--name", "x", "--message-size", "lots"], b"");
    assert_error(&out, 2, "not a size");
    let out = run(&["recv", "--name", "x", "--timeout", "soon"], b"");
    assert_error(&out, 2, "not a duration");
    let out = run(&["send"], b"");
    assert_error(&out, 2, "--name");
    let out = run(&["frobnicate"], b"");
    assert_error(&out, 2, "frobnicate");
    let out = run(&["clean"], b"");
    assert_error(&out, 2, "--stale");
}

#[test]
fn help_documents_the_exit_codes() {
    let out = run(&["--help"], b"");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "0  success",
        "1  unexpected failure",
        "2  invalid input",
        "3  peer died",
    ] {
        assert!(help.contains(line), "{line:?} missing from --help");
    }
}

// ---------------------------------------------------------------------------
// inspect and clean.

#[test]
fn inspect_json_shows_capacity_and_state() {
    let name = TempName::for_test("inspect");
    stale_segment(&name, "64KiB", b"hello world");
    let out = run(&["inspect", "--name", name.name(), "--json"], b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["capacity"], 65536);
    assert_eq!(v["valid"], true);
    assert_eq!(v["closed"], true);
    assert_eq!(v["used"], 24); // one 8-byte record header + 11 bytes padded to 16
    assert_eq!(v["producer"]["held"], false);
    assert_eq!(v["producer"]["generation"], 1);
    assert_eq!(v["consumer"]["generation"], 0);
    assert_eq!(v["stale"], true);
}

#[test]
fn clean_stale_removes_only_segments_nobody_holds() {
    let stale = TempName::for_test("clean");
    let busy = TempName::for_test("clean");
    stale_segment(&stale, "64KiB", b"left behind");
    let mut sender = Proc::spawn(
        ringproof(&["send", "--name", busy.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let stdin = sender.stdin();
    wait_until("the busy segment has a producer", || producer_held(&busy));

    let prefix = format!("ringproof-test-clean-{}-", std::process::id());
    let out = run(&["clean", "--stale", "--prefix", &prefix], b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("removed {}", stale.name())),
        "{text}"
    );
    assert!(text.contains(&format!("kept {}", busy.name())), "{text}");
    assert!(!stale.exists());
    assert!(busy.exists());

    let out = run(&["clean", "--name", busy.name()], b"");
    assert_error(&out, 2, "in use");
    assert!(busy.exists());
    let out = run(&["clean", "--name", busy.name(), "--force"], b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert!(!busy.exists());
    drop(stdin);
    let _ = sender.finish();
}

/// Runs to completion, failing the test if it takes more than a minute
/// (a `clean` that blocks on a FIFO never ends).
fn run_bounded(args: &[&str]) -> Output {
    let mut child = Proc::spawn(
        ringproof(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{args:?} did not finish");
        thread::sleep(Duration::from_millis(10));
    }
    child.finish()
}

#[test]
fn clean_stale_skips_what_is_not_ours_without_blocking() {
    let fifo = TempName::for_test("odd");
    let link = TempName::for_test("odd");
    let stale = TempName::for_test("odd");
    nix::unistd::mkfifo(&fifo.path(), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::os::unix::fs::symlink("/dev/null", link.path()).unwrap();
    stale_segment(&stale, "4KiB", b"left behind");
    // A FIFO elsewhere in /dev/shm must not block a clean for another prefix.
    let out = run_bounded(&[
        "clean",
        "--stale",
        "--prefix",
        "ringproof-test-nothing-here",
    ]);
    assert!(out.status.success(), "{}", stderr_text(&out));
    let prefix = format!("ringproof-test-odd-{}-", std::process::id());
    let out = run_bounded(&["clean", "--stale", "--prefix", &prefix]);
    assert!(out.status.success(), "{}", stderr_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("skipped {} (a FIFO)", fifo.name())),
        "{text}"
    );
    assert!(
        text.contains(&format!("skipped {} (a symbolic link)", link.name())),
        "{text}"
    );
    assert!(
        text.contains(&format!("removed {}", stale.name())),
        "{text}"
    );
    assert!(fifo.path().exists() && link.path().symlink_metadata().is_ok());
    assert!(!stale.exists());
}

#[test]
fn symlink_or_directory_at_the_name_is_exit_2_saying_what_it_is() {
    let link = TempName::for_test("link");
    std::os::unix::fs::symlink("/dev/null", link.path()).unwrap();
    let out = run(&["recv", "--name", link.name()], b"");
    assert_error(&out, 2, "is a symbolic link");
    let dir = TempName::for_test("dir");
    std::fs::create_dir(dir.path()).unwrap();
    let out = run(&["send", "--name", dir.name()], b"x");
    let _ = std::fs::remove_dir(dir.path());
    assert_error(&out, 2, "is a directory");
}

#[test]
fn recv_timeout_too_long_to_represent_waits_instead_of_panicking() {
    let name = TempName::for_test("longwait");
    stale_segment(&name, "4KiB", b"one\ntwo\n");
    let out = run(
        &[
            "recv",
            "--name",
            name.name(),
            "--timeout",
            "10000000000000000000s",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(out.stdout, b"one\ntwo\n");
}

#[test]
fn inspect_runs_the_attach_position_checks() {
    let name = TempName::for_test("positions");
    stale_segment(&name, "4KiB", b"hello\n");
    let info = Segment::inspect(name.name()).unwrap();
    // head past tail: every count derived from them would be nonsense.
    let head = info.tail + 4096;
    scribble_segment(&name, ringproof::layout::HEAD_OFFSET, &head.to_ne_bytes());
    let out = run(&["inspect", "--name", name.name()], b"");
    assert_error(&out, 2, "tail index out of range");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("valid        no: ring is corrupted"),
        "{text}"
    );
    assert!(text.contains("used         unknown"), "{text}");
    assert!(!text.contains("18446744"), "{text}");
    let out = run(&["recv", "--name", name.name()], b"");
    assert_error(&out, 2, "tail index out of range");
}

// ---------------------------------------------------------------------------
// bench.

/// Checks every field of `bench --json` that the documentation promises.
fn check_bench_json(v: &serde_json::Value, message_size: u64, messages: u64) {
    assert_eq!(v["message_size"], message_size, "{v}");
    assert_eq!(v["messages"], messages, "{v}");
    let positive = |x: &serde_json::Value| x.as_f64().filter(|r| r.is_finite() && *r > 0.0);
    let rates = [
        &v["messages_per_sec"],
        &v["bytes_per_sec"],
        &v["seconds"],
        &v["ratio_vs_pipe"],
        &v["ratio_vs_unix_socket"],
    ];
    for rate in rates {
        assert!(positive(rate).is_some(), "{v}");
    }
    for transfer in [&v["peers"]["pipe"], &v["peers"]["unix_socket"]] {
        let mps = positive(&transfer["messages_per_sec"]).expect("messages_per_sec");
        let bps = positive(&transfer["bytes_per_sec"]).expect("bytes_per_sec");
        assert!((bps / mps - message_size as f64).abs() < 1e-6, "{v}");
        let ratio = v["messages_per_sec"].as_f64().unwrap() / mps;
        assert!(ratio.is_finite() && ratio > 0.0, "{v}");
    }
    let pipe_ratio = v["messages_per_sec"].as_f64().unwrap()
        / v["peers"]["pipe"]["messages_per_sec"].as_f64().unwrap();
    assert!((v["ratio_vs_pipe"].as_f64().unwrap() / pipe_ratio - 1.0).abs() < 1e-9);
    let mps = v["messages_per_sec"].as_f64().unwrap();
    let bps = v["bytes_per_sec"].as_f64().unwrap();
    assert!((bps / mps - message_size as f64).abs() < 1e-6, "{v}");
    let seconds = v["seconds"].as_f64().unwrap();
    assert!((mps * seconds / messages as f64 - 1.0).abs() < 1e-6, "{v}");
    // The cache-line floor needs two CPUs (then both sides are pinned).
    let pinned = v["cpus"].as_array().is_some_and(|c| c.len() == 2);
    let mut latencies = vec![&v["latency_ns"]];
    if pinned {
        latencies.push(&v["cache_line_ns"]);
        assert!(positive(&v["latency_p50_vs_cache_line"]).is_some(), "{v}");
    } else {
        assert!(v["cache_line_ns"].is_null(), "{v}");
    }
    for latency in latencies {
        let field = |name: &str| {
            latency[name]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: {v}"))
        };
        let (p50, p99, p999, max) = (field("p50"), field("p99"), field("p999"), field("max"));
        assert!(0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max, "{v}");
        let avg = positive(&latency["avg"]).expect("avg");
        assert!(avg <= max as f64, "{v}");
        assert!(field("samples") > 0, "{v}");
    }
    assert!(
        v["buffer_size"]
            .as_u64()
            .is_some_and(|b| b.is_power_of_two())
    );
    assert!(v["batch"].as_u64().is_some_and(|b| b >= 1));
}

#[test]
fn bench_json_reports_ring_peers_and_latency() {
    let out = run(
        &[
            "bench",
            "--iterations",
            "20000",
            "--buffer-size",
            "64KiB",
            "--json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    check_bench_json(&v, 64, 20000);
    assert_eq!(v["buffer_size"], 64 * 1024);
    assert_eq!(v["batch"], 1);
}

#[test]
fn bench_prints_every_figure() {
    let out = run(&["bench", "--iterations", "5000"], b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "msg/s",
        "GB/s",
        "pipe",
        "unix socket",
        "avg",
        "p50",
        "p99.9",
        "max",
        "cache-line",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    // No progress bar when stderr is not a terminal.
    assert!(out.stderr.is_empty(), "{}", stderr_text(&out));
}

#[test]
fn bench_refuses_bad_counts_and_sizes() {
    let out = run(&["bench", "--iterations", "0"], b"");
    assert_error(&out, 2, "at least 1");
    let out = run(&["bench", "--buffer-size", "1000"], b"");
    assert_error(&out, 2, "power of two");
    let out = run(&["bench", "--batch", "0"], b"");
    assert_error(&out, 2, "--batch");
}

#[test]
fn bench_refuses_a_message_larger_than_the_ring_allows() {
    let out = run(
        &["bench", "--buffer-size", "64KiB", "--message-size", "40KiB"],
        b"",
    );
    assert_error(&out, 2, "largest message");
}

#[test]
fn batched_bench_transfers_every_message() {
    let out = run(
        &[
            "bench",
            "--iterations",
            "10001",
            "--batch",
            "64",
            "--message-size",
            "24",
            "--json",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    check_bench_json(&v, 24, 10001);
    assert_eq!(v["batch"], 64);
}

#[test]
fn crash_json_reports_a_passed_experiment() {
    for (role, mode) in [("producer", "points"), ("both", "random")] {
        let out = run(
            &[
                "crash", "--role", role, "--mode", mode, "--kills", "30", "--json",
            ],
            b"",
        );
        assert!(out.status.success(), "crash: {}", stderr_text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["role"], role);
        assert_eq!(report["mode"], mode);
        assert_eq!(report["passed"], true);
        assert!(report["kills"].as_u64().unwrap() > 0);
        for zero in [
            "lost",
            "torn",
            "duplicates_outside_batch",
            "leaked_segments",
        ] {
            assert_eq!(report[zero], 0, "{zero}");
        }
        assert_eq!(report["committed"], report["delivered"]);
        let points = report["crash_points"].as_array().unwrap();
        if mode == "points" {
            assert_eq!(points.len(), 6, "every producer crash point: {points:?}");
        }
    }
}
