//! The `ringproof` command-line tool; see `ringproof --help`.

use clap::Parser;
use ringproof_harness::cli::Cli;
use ringproof_harness::exit::{self, ExitCode};

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => match exit::from_clap(&err) {
            Some(e) => return fail(&e.line().unwrap_or_default(), e.code),
            None => {
                // --help and --version: clap prints them (exit 0).
                let _ = err.print();
                return std::process::ExitCode::from(err.exit_code().clamp(0, 255) as u8);
            }
        },
    };
    match ringproof_harness::run(cli) {
        Ok(()) => ExitCode::Ok.into(),
        Err(e) => fail(&e.line().unwrap_or_default(), e.code),
    }
}

fn fail(line: &str, code: ExitCode) -> std::process::ExitCode {
    if !line.is_empty() {
        eprintln!("{line}");
    }
    code.into()
}
