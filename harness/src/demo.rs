//! `demo`: the golden scenario (two processes, checked messages) and the
//! failure scenario (attaching to an invalid segment).
//!
//! A golden message is `seq: u64 LE`, `checksum: u64 LE`, then a payload
//! whose length and bytes are derived from `(seed, seq)`:
//!
//! ```text
//! 0        8          16                      16 + len
//! +--------+----------+-----------------------+
//! |  seq   | checksum |   payload (len bytes) |
//! +--------+----------+-----------------------+
//! ```
//!
//! The consumer checks that the sequence numbers run 0, 1, 2, … without a
//! gap, that each message has the length its sequence number implies, and
//! that the checksum of `(seq, payload)` matches.

use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use ringproof::shm::{OpenMode, ShmConsumer, ShmProducer, TempName};
use ringproof::{PushError, ReadError};

use crate::cli::{DemoArgs, DemoChildArgs, DemoMode};
use crate::exit::{CliError, ExitCode};
use crate::peer::{self, OnConsumerDeath, Waited};
use crate::size::human;

/// Bytes before the payload: sequence number and checksum.
pub const MESSAGE_HEADER: usize = 16;
/// The line the golden scenario prints on success.
pub const GOLDEN_OK: &str = "OK: golden scenario completed";
/// The line the failure scenario prints on stderr.
pub const FAILURE_LINE: &str = "ERROR: invalid input or unavailable IPC resource";
/// How long the consumer waits for the next message before giving up.
const STALL: Duration = Duration::from_secs(30);

/// The splitmix64 finaliser: a well-mixed 64-bit hash of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Payload length of message `seq`, at most `max_payload`: mostly up to
/// 128 bytes, one in 32 up to 2 KiB, one in 512 up to `max_payload`.
pub fn payload_len(seed: u64, seq: u64, max_payload: usize) -> usize {
    let r = mix(seed ^ mix(seq));
    let bound = match r % 512 {
        0 => max_payload,
        1..=16 => 2048,
        _ => 128,
    };
    let len = (r >> 16) % (bound as u64 + 1);
    (len as usize).min(max_payload)
}

/// Fills `payload` with the bytes of message `seq`.
pub fn fill_payload(seed: u64, seq: u64, payload: &mut [u8]) {
    let mut state = mix(seed.rotate_left(17) ^ seq);
    let mut words = payload.chunks_exact_mut(8);
    for word in &mut words {
        state = mix(state);
        word.copy_from_slice(&state.to_le_bytes());
    }
    let tail = words.into_remainder();
    let last = mix(state).to_le_bytes();
    tail.copy_from_slice(&last[..tail.len()]);
}

/// Checksum of a message: its sequence number and payload, 8 bytes at a time.
pub fn checksum(seq: u64, payload: &[u8]) -> u64 {
    let mut h = mix(seq ^ payload.len() as u64);
    let mut words = payload.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h ^ u64::from_le_bytes(w))
            .wrapping_mul(0x0000_0100_0000_01B3)
            .rotate_left(23);
    }
    let mut w = [0u8; 8];
    let tail = words.remainder();
    w[..tail.len()].copy_from_slice(tail);
    mix(h ^ u64::from_le_bytes(w))
}

/// Writes message `seq` into `buf` (exactly `MESSAGE_HEADER + payload_len` bytes).
pub fn encode(seed: u64, seq: u64, buf: &mut [u8]) {
    if buf.len() < MESSAGE_HEADER {
        return;
    }
    let (header, payload) = buf.split_at_mut(MESSAGE_HEADER);
    fill_payload(seed, seq, payload);
    header[..8].copy_from_slice(&seq.to_le_bytes());
    header[8..].copy_from_slice(&checksum(seq, payload).to_le_bytes());
}

/// Checks that `message` is message `expected`, as [`encode`] wrote it.
pub fn verify(seed: u64, expected: u64, max_payload: usize, message: &[u8]) -> Result<(), String> {
    if message.len() < MESSAGE_HEADER {
        return Err(format!(
            "message {expected}: {} bytes, shorter than its header",
            message.len()
        ));
    }
    let (header, payload) = message.split_at(MESSAGE_HEADER);
    let mut word = [0u8; 8];
    word.copy_from_slice(&header[..8]);
    let seq = u64::from_le_bytes(word);
    if seq != expected {
        return Err(format!(
            "expected message {expected}, got sequence number {seq}"
        ));
    }
    let len = payload_len(seed, seq, max_payload);
    if payload.len() != len {
        return Err(format!(
            "message {seq}: payload of {} bytes, expected {len}",
            payload.len()
        ));
    }
    word.copy_from_slice(&header[8..]);
    if u64::from_le_bytes(word) != checksum(seq, payload) {
        return Err(format!("message {seq}: checksum mismatch"));
    }
    Ok(())
}

/// `ringproof demo`.
pub fn run(args: &DemoArgs) -> Result<(), CliError> {
    match args.mode {
        DemoMode::Golden => golden(args),
        DemoMode::Failure => failure(),
    }
}

fn golden(args: &DemoArgs) -> Result<(), CliError> {
    let guard = TempName::new("demo");
    let name = guard.name();
    let exe = std::env::current_exe()
        .map_err(|e| CliError::unexpected(format!("cannot find this executable: {e}")))?;
    let start = Instant::now();
    let mut child = Process::new(exe)
        .arg("demo-child")
        .args(["--name", name])
        .args(["--size", &args.size.to_string()])
        .args(["--messages", &args.messages.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| CliError::unexpected(format!("cannot start the producer process: {e}")))?;
    let consumed = consume(name, args);
    let status = child.wait();
    let (count, bytes) = match consumed {
        Ok(totals) => totals,
        Err(e) => {
            let _ = child.kill();
            return Err(e.context("golden scenario failed"));
        }
    };
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            return Err(CliError::unexpected(format!(
                "golden scenario failed: the producer process ended with {s}"
            )));
        }
        Err(e) => {
            return Err(CliError::unexpected(format!(
                "waiting for the producer: {e}"
            )));
        }
    }
    println!("{GOLDEN_OK}");
    if args.verbose {
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "golden: {count} messages ({}) checked through a {} ring in {secs:.2} s ({:.2} M msg/s)",
            human(bytes),
            human(args.size),
            count as f64 / secs / 1e6
        );
    }
    Ok(())
}

/// The consumer side of the golden scenario: returns messages and bytes read.
fn consume(name: &str, args: &DemoArgs) -> Result<(u64, u64), CliError> {
    let mut consumer = ShmConsumer::new(
        name,
        OpenMode::CreateOrOpen {
            capacity: args.size,
        },
    )?;
    let max_payload = consumer_max_payload(consumer.capacity())?;
    let mut expected = 0u64;
    let mut bytes = 0u64;
    loop {
        match consumer.read() {
            Ok(message) => {
                verify(args.seed, expected, max_payload, &message).map_err(CliError::unexpected)?;
                bytes += message.len() as u64;
                message.release();
                expected += 1;
            }
            Err(ReadError::Empty) => match peer::wait_message(&mut consumer, Some(STALL))? {
                Waited::Ready => {}
                Waited::TimedOut => {
                    return Err(CliError::unexpected(format!(
                        "no message within {} after message {expected}",
                        crate::size::human_duration(STALL)
                    )));
                }
            },
            Err(ReadError::Closed) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if expected != args.messages {
        return Err(CliError::unexpected(format!(
            "the stream ended after {expected} of {} messages",
            args.messages
        )));
    }
    Ok((expected, bytes))
}

fn consumer_max_payload(capacity: u64) -> Result<usize, CliError> {
    let max = ringproof::layout::max_message(capacity) as usize;
    max.checked_sub(MESSAGE_HEADER).ok_or_else(|| {
        CliError::invalid(format!(
            "a {} ring is too small for the golden scenario (use 64KiB or more)",
            human(capacity)
        ))
    })
}

/// `ringproof demo-child`: the golden scenario's producer.
pub fn child(args: &DemoChildArgs) -> Result<(), CliError> {
    let mut producer = ShmProducer::new(
        &args.name,
        OpenMode::CreateOrOpen {
            capacity: args.size,
        },
    )?;
    let max_payload = consumer_max_payload(producer.capacity())?;
    for seq in 0..args.messages {
        let len = MESSAGE_HEADER + payload_len(args.seed, seq, max_payload);
        loop {
            match producer.reserve(len) {
                Ok(mut grant) => {
                    encode(args.seed, seq, &mut grant);
                    grant.commit();
                    break;
                }
                Err(PushError::Full) => {
                    peer::wait_room(&mut producer, len, OnConsumerDeath::Fail)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    producer.close()?;
    Ok(())
}

/// Attaches to a 10-byte file that is not a ring: exit 2.
fn failure() -> Result<(), CliError> {
    let guard = TempName::new("demo-failure");
    let name = guard.name();
    let what = match guard.create_file(&[0x5A; 10]) {
        Ok(()) => format!("{name}, a 10-byte segment that is not a ring"),
        Err(_) => format!("{name}, a segment that does not exist"),
    };
    match ShmConsumer::new(name, OpenMode::Open) {
        Ok(_) => Err(CliError::unexpected(format!(
            "failure scenario: attaching to {what} unexpectedly succeeded"
        ))),
        Err(e) => {
            println!("failure scenario: attaching to {what}: {e}");
            eprintln!("{FAILURE_LINE}");
            Err(CliError::reported(ExitCode::Invalid))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_messages_verify_and_damage_is_caught() {
        for seq in 0..200 {
            let len = MESSAGE_HEADER + payload_len(7, seq, 1000);
            let mut buf = vec![0u8; len];
            encode(7, seq, &mut buf);
            assert_eq!(verify(7, seq, 1000, &buf), Ok(()));
            assert!(verify(7, seq + 1, 1000, &buf).is_err());
            if len > MESSAGE_HEADER {
                buf[len - 1] ^= 1;
                assert!(verify(7, seq, 1000, &buf).is_err());
            }
        }
    }

    #[test]
    fn lengths_vary_and_respect_the_maximum() {
        let lens: Vec<usize> = (0..10_000).map(|s| payload_len(1, s, 4000)).collect();
        assert!(lens.iter().all(|&l| l <= 4000));
        assert!(lens.iter().any(|&l| l > 2048), "some large messages");
        assert!(lens.contains(&0), "some empty payloads");
    }
}
