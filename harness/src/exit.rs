//! Exit codes and the one-line error every failure prints.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | unexpected failure |
//! | 2 | invalid input or unavailable IPC resource |
//! | 3 | the peer died (or, for `recv --timeout`, went silent) |
//!
//! This module uses no other module of this crate (only `ringproof` and
//! `clap`), so other targets may compile it in by path.

use std::fmt;

use ringproof::Error as RingError;
use ringproof::shm::{Role, ShmError};

/// The exit-code table, as `--help` shows it.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (recv: end of stream reached)
  1  unexpected failure
  2  invalid input or unavailable IPC resource: bad argument, bad name,
     missing or corrupt segment, permission denied, role taken, /dev/shm full
  3  peer died: recv delivered every committed message, then found the
     producer gone without closing; or no message came within --timeout

Errors are one line on stderr, starting with \"ringproof: \".";

/// The documented process exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: success.
    Ok = 0,
    /// 1: something that should not happen (I/O error, bug, OS failure).
    Unexpected = 1,
    /// 2: bad argument, bad name, missing/corrupt segment, permission, role
    /// taken, no space.
    Invalid = 2,
    /// 3: the peer died, or went silent past `--timeout`.
    PeerDied = 3,
}

impl ExitCode {
    /// The numeric status.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

/// A failure: the exit code and the line printed on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// How the process exits.
    pub code: ExitCode,
    /// What went wrong, one line, without the `ringproof: ` prefix.
    pub message: String,
}

impl CliError {
    /// Exit 2: invalid input or unavailable IPC resource.
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError {
            code: ExitCode::Invalid,
            message: message.into(),
        }
    }

    /// Exit 1: unexpected failure.
    pub fn unexpected(message: impl Into<String>) -> Self {
        CliError {
            code: ExitCode::Unexpected,
            message: message.into(),
        }
    }

    /// Exit 3: the peer died or went silent.
    pub fn peer_died(message: impl Into<String>) -> Self {
        CliError {
            code: ExitCode::PeerDied,
            message: message.into(),
        }
    }

    /// A failure whose line was printed already (the `demo --mode failure`
    /// line); nothing more is printed.
    pub fn reported(code: ExitCode) -> Self {
        CliError {
            code,
            message: String::new(),
        }
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The line printed on stderr: `ringproof: ` and the message on one
    /// line; `None` when it was [`reported`](Self::reported) already.
    pub fn line(&self) -> Option<String> {
        let words: Vec<&str> = self.message.split_whitespace().collect();
        (!words.is_empty()).then(|| format!("ringproof: {}", words.join(" ")))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The exit code for a ring error.
fn ring_code(e: &RingError) -> ExitCode {
    match e {
        // A segment that breaks the protocol is a corrupt segment.
        RingError::Corrupted(_) => ExitCode::Invalid,
        // A closed ring for a new producer: the name holds a finished stream.
        RingError::Closed => ExitCode::Invalid,
        _ => ExitCode::Unexpected,
    }
}

impl From<ShmError> for CliError {
    fn from(e: ShmError) -> Self {
        let code = match &e {
            ShmError::PeerDied(_) => ExitCode::PeerDied,
            ShmError::Ring(ring) => ring_code(ring),
            ShmError::TimedOut => ExitCode::PeerDied,
            ShmError::Os(..) => ExitCode::Unexpected,
            // Bad name or size, missing or corrupt segment, permission, role
            // taken, no space, and whatever later variants describe a
            // resource we cannot use.
            _ => ExitCode::Invalid,
        };
        let message = match &e {
            ShmError::RoleTaken(Role::Producer) => {
                "the producer role is held by another live process (one producer at a time)"
                    .to_string()
            }
            ShmError::RoleTaken(Role::Consumer) => {
                "the consumer role is held by another live process (one consumer at a time)"
                    .to_string()
            }
            _ => e.to_string(),
        };
        CliError { code, message }
    }
}

impl From<RingError> for CliError {
    fn from(e: RingError) -> Self {
        CliError {
            code: ring_code(&e),
            message: e.to_string(),
        }
    }
}

ringproof::from_ring_errors!(CliError);

/// Turns a clap error into the one-line form (exit 2), or `None` for
/// `--help` and `--version`, which clap prints itself (exit 0).
pub fn from_clap(err: &clap::Error) -> Option<CliError> {
    use clap::error::ErrorKind;
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => return None,
        _ => {}
    }
    let rendered = err.render().to_string();
    let mut words = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        words.extend(line.split_whitespace());
    }
    let mut message = words.join(" ");
    if let Some(rest) = message.strip_prefix("error: ") {
        message = rest.to_string();
    }
    if message.is_empty() {
        message = "invalid command line".to_string();
    }
    Some(CliError::invalid(format!("{message} (see --help)")))
}
