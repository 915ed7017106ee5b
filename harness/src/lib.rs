//! The `ringproof` command-line tool as a library: argument definitions and
//! the subcommands.
//!
//! `main.rs` only parses the command line and calls [`run`]. Each subcommand
//! lives in its own module; the exit-code contract lives in [`exit`].

pub mod bench;
pub mod clean;
pub mod cli;
pub mod crash;
pub mod demo;
pub mod exit;
pub mod inspect;
pub mod peer;
pub mod size;
pub mod stdio;
pub mod stream;

use cli::{Cli, Command};
pub use exit::{CliError, ExitCode};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        None => bench::run(&bench::quick_args(), bench::Output::Summary),
        Some(Command::Send(args)) => stream::send(&args),
        Some(Command::Recv(args)) => stream::recv(&args),
        Some(Command::Inspect(args)) => inspect::run(&args),
        Some(Command::Clean(args)) => clean::run(&args),
        Some(Command::Demo(args)) => demo::run(&args),
        Some(Command::Bench(args)) => {
            let output = if args.json {
                bench::Output::Json
            } else {
                bench::Output::Full
            };
            bench::run(&args, output)
        }
        Some(Command::Crash(args)) => crash::run(&args),
        Some(Command::DemoChild(args)) => demo::child(&args),
    }
}
