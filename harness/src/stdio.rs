//! Raw standard input and output for binary streams.
//!
//! `std::io::Stdout` is line-buffered (it scans every write for newlines) and
//! `Stdin` adds its own buffer; for byte streams we take our own descriptors
//! of fd 0 and fd 1 and wrap them in `File`s.

use std::fs::File;
use std::os::fd::AsFd;

use crate::exit::CliError;

/// A `File` on a duplicate of standard input.
pub fn stdin_file() -> Result<File, CliError> {
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| CliError::unexpected(format!("cannot use standard input: {e}")))?;
    Ok(File::from(fd))
}

/// A `File` on a duplicate of standard output.
pub fn stdout_file() -> Result<File, CliError> {
    let fd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| CliError::unexpected(format!("cannot use standard output: {e}")))?;
    Ok(File::from(fd))
}

/// Whether an I/O error means the reader of our output went away.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}
