//! Helpers shared by the tests that drive real processes (`cli.rs`,
//! `c_peer.rs`, and the forked children of `hostile.rs` and
//! `state_machine.rs`): spawned and forked processes killed on drop, polling
//! a condition with a deadline, deterministic data, and the role state of a
//! segment.
//!
//! Each test binary uses a subset of these, hence `allow(dead_code)`.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, ChildStdin, Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use ringproof::shm::Segment;
use ringproof::testing::TempName;

/// A forked child (`Some` until reaped), killed and reaped if the parent
/// fails first.
pub struct ForkedChild(pub Option<nix::unistd::Pid>);

impl Drop for ForkedChild {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// A count from the environment, or `default`.
pub fn env_count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A spawned process, killed and reaped on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn spawn(command: &mut Command) -> Proc {
        Proc(command.spawn().unwrap())
    }
    pub fn stdin(&mut self) -> ChildStdin {
        self.0.stdin.take().unwrap()
    }
    /// Waits for the exit, collecting stdout and stderr if they were piped.
    pub fn finish(mut self) -> Output {
        let stdout = self.0.stdout.take();
        let stderr = self.0.stderr.take();
        let out = thread::spawn(move || read_all(stdout));
        let err = thread::spawn(move || read_all(stderr));
        let status = self.0.wait().unwrap();
        Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }
}

impl Proc {
    /// [`finish`](Self::finish), but a process still running after `limit`
    /// is killed and the test fails: a hang is a failure, not a stuck run.
    #[track_caller]
    pub fn finish_within(mut self, limit: Duration, what: &str) -> Output {
        let stdout = self.0.stdout.take();
        let stderr = self.0.stderr.take();
        let out = thread::spawn(move || read_all(stdout));
        let err = thread::spawn(move || read_all(stderr));
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                let err = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
                panic!("{what} was still running after {limit:?}; killed it (stderr: {err:?})");
            }
            thread::sleep(Duration::from_millis(2));
        };
        Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn read_all(pipe: Option<impl Read>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut buf);
    }
    buf
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Polls `condition` until it holds; fails the test after 20 s.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a live process holds the producer role of `name`.
pub fn producer_held(name: &TempName) -> bool {
    Segment::inspect(name.name()).is_ok_and(|i| i.producer_held)
}

/// Whether a live process holds the consumer role of `name`.
pub fn consumer_held(name: &TempName) -> bool {
    Segment::inspect(name.name()).is_ok_and(|i| i.consumer_held)
}

pub fn stderr_text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit `code` and exactly one stderr line, starting with `prefix` and
/// containing `needle` (case-insensitive).
#[track_caller]
pub fn assert_error_line(out: &Output, code: i32, prefix: &str, needle: &str) {
    let err = stderr_text(out);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one stderr line expected: {err:?}");
    assert!(lines[0].starts_with(prefix), "{err:?}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "{needle:?} not in {err:?}"
    );
}
