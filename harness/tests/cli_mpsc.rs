//! The CLI with MPSC rings: `send --mode mpsc` from several processes into
//! one `recv`, the kind read from the header, the wrong kind refused with
//! exit 2, and `inspect` showing each producer slot.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::thread;

use ringproof::shm::mpsc::inspect;
use ringproof::shm::{OpenMode, ShmMpscConsumer, ShmMpscProducer, TempName};

mod support;
use support::{Proc, assert_error_line, stderr_text, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_ringproof");

fn ringproof(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args);
    command
}

/// Runs to completion with `input` on stdin.
fn run(args: &[&str], input: &[u8]) -> Output {
    let mut child = Proc::spawn(
        ringproof(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdin = child.stdin();
    let input = input.to_vec();
    let feeder = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.finish();
    feeder.join().unwrap();
    out
}

/// Sender `id`'s stream: every byte carries the id in its top two bits and
/// a counter in the rest, so the receiver's output, filtered by id, must be
/// exactly this stream whatever the chunking and the interleaving.
fn stream(id: u8, len: usize) -> Vec<u8> {
    (0..len).map(|k| (id << 6) | (k % 64) as u8).collect()
}

#[test]
fn three_mpsc_senders_into_one_recv_deliver_everything_in_sender_order() {
    let name = TempName::for_test("cli-mpsc");
    let len = 200_000;
    let recv = Proc::spawn(
        ringproof(&[
            "recv",
            "--name",
            name.name(),
            "--mode",
            "mpsc",
            "--size",
            "4KiB",
            "--timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped()),
    );
    wait_until("recv created the ring", || inspect(name.name()).is_ok());
    // Its output is read while the senders run: a full stdout pipe would
    // stop recv, and with it the senders.
    let recv = thread::spawn(move || recv.finish());
    let mut senders: Vec<Proc> = (0..3)
        .map(|_| {
            Proc::spawn(
                ringproof(&[
                    "send",
                    "--name",
                    name.name(),
                    "--mode",
                    "mpsc",
                    "--message-size",
                    "100",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
            )
        })
        .collect();
    // Every sender attached before any reaches the end of its input (the
    // last to finish closes the stream).
    wait_until("three senders hold slots", || {
        inspect(name.name()).is_ok_and(|i| i.slots.iter().filter(|s| s.held).count() == 3)
    });
    let feeders: Vec<_> = senders
        .iter_mut()
        .enumerate()
        .map(|(id, sender)| {
            let mut stdin = sender.stdin();
            thread::spawn(move || stdin.write_all(&stream(id as u8, len)).unwrap())
        })
        .collect();
    for feeder in feeders {
        feeder.join().unwrap();
    }
    for sender in senders {
        let out = sender.finish();
        assert!(out.status.success(), "{}", stderr_text(&out));
    }
    let out = recv.join().unwrap();
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(out.stdout.len(), 3 * len);
    for id in 0..3u8 {
        let got: Vec<u8> = out
            .stdout
            .iter()
            .copied()
            .filter(|b| b >> 6 == id)
            .collect();
        assert!(got == stream(id, len), "sender {id}'s bytes out of order");
    }
    assert!(!name.exists(), "the finished ring was removed");
}

#[test]
fn the_wrong_kind_of_ring_exits_2_with_both_kinds_named() {
    let spsc = TempName::for_test("cli-kind-s");
    let out = run(&["send", "--name", spsc.name()], b"spsc data");
    assert!(out.status.success(), "{}", stderr_text(&out));
    for args in [
        &["send", "--name", spsc.name(), "--mode", "mpsc"][..],
        &["recv", "--name", spsc.name(), "--mode", "mpsc"][..],
    ] {
        let out = run(args, b"x");
        assert_error_line(
            &out,
            2,
            "ringproof: ",
            "holds an SPSC ring, not an MPSC one",
        );
    }

    let mpsc = TempName::for_test("cli-kind-m");
    let out = run(
        &["send", "--name", mpsc.name(), "--mode", "mpsc"],
        b"mpsc data",
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    for args in [
        &["send", "--name", mpsc.name()][..],
        &["send", "--name", mpsc.name(), "--mode", "spsc"][..],
        &["recv", "--name", mpsc.name(), "--mode", "spsc"][..],
    ] {
        let out = run(args, b"x");
        assert_error_line(
            &out,
            2,
            "ringproof: ",
            "holds an MPSC ring, not an SPSC one",
        );
    }
    // Without --mode, recv reads the kind from the header.
    let out = run(&["recv", "--name", mpsc.name()], b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(out.stdout, b"mpsc data");
    let out = run(&["recv", "--name", spsc.name()], b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(out.stdout, b"spsc data");
}

#[test]
fn inspect_shows_the_kind_and_each_producer_slot() {
    let name = TempName::for_test("cli-inspect-mpsc");
    let create = OpenMode::Create { capacity: 4096 };
    let _consumer = ShmMpscConsumer::with_slots(name.name(), create, 3).unwrap();
    let a = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    let _b = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    drop(a);
    let _c = ShmMpscProducer::new(name.name(), OpenMode::Open).unwrap();
    let out = run(&["inspect", "--name", name.name()], b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "kind         MPSC",
        "slots        3 (2 held)",
        "slot 0     held (generation 2)",
        "slot 1     held (generation 1)",
        "slot 2     free (generation 0)",
        "consumer     held by a live process (generation 1)",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    let out = run(&["inspect", "--name", name.name(), "--json"], b"");
    assert!(out.status.success(), "{}", stderr_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "mpsc");
    assert_eq!(v["capacity"], 4096);
    assert_eq!(v["slots"][0]["held"], true);
    assert_eq!(v["slots"][0]["generation"], 2);
    assert_eq!(v["slots"][2]["held"], false);
    assert_eq!(v["stale"], false);
}
