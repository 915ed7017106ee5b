//! `clean`: remove one segment, or every segment nobody holds.
//!
//! Removing a name (`shm_unlink`) does not disturb processes that have the
//! segment mapped; it only stops new ones from finding it. A segment whose
//! producer or consumer role is held is in use and is kept unless `--force`.

use ringproof::shm::{self, Entry, Removal, ShmError};

use crate::cli::CleanArgs;
use crate::exit::CliError;

fn holders(producer_held: bool, consumer_held: bool) -> &'static str {
    match (producer_held, consumer_held) {
        (true, true) => "producer and consumer roles held",
        (true, false) => "producer role held",
        (false, true) => "consumer role held",
        (false, false) => "no role held",
    }
}

/// `ringproof clean`.
pub fn run(args: &CleanArgs) -> Result<(), CliError> {
    match &args.name {
        Some(name) => clean_one(name, args.force),
        None => clean_stale(args.prefix.as_deref()),
    }
}

fn clean_one(name: &str, force: bool) -> Result<(), CliError> {
    let context = || format!("cannot remove {name}");
    let normalised = shm::validate_name(name).map_err(|e| CliError::from(e).context(context()))?;
    if force {
        shm::unlink(name).map_err(|e| CliError::from(e).context(context()))?;
    } else {
        match shm::remove_stale(name).map_err(|e| CliError::from(e).context(context()))? {
            Removal::Removed => {}
            Removal::InUse {
                producer_held,
                consumer_held,
            } => {
                return Err(CliError::invalid(format!(
                    "segment {normalised} is in use ({}); use --force to remove it anyway",
                    holders(producer_held, consumer_held)
                )));
            }
        }
    }
    println!("removed {normalised}");
    Ok(())
}

fn clean_stale(prefix: Option<&str>) -> Result<(), CliError> {
    let prefix = prefix.map(|p| p.strip_prefix('/').unwrap_or(p));
    let entries = shm::scan().map_err(|e| CliError::from(e).context("listing /dev/shm"))?;
    let mut removed = 0usize;
    for entry in entries {
        let name = match &entry {
            Entry::Segment(name) | Entry::Skipped { name, .. } => name,
        };
        let bare = name.strip_prefix('/').unwrap_or(name);
        if prefix.is_some_and(|p| !bare.starts_with(p)) {
            continue;
        }
        let name = match entry {
            Entry::Segment(name) => name,
            Entry::Skipped { name, reason } => {
                println!("skipped {name} ({reason})");
                continue;
            }
        };
        match shm::remove_stale(&name) {
            Ok(Removal::Removed) => {
                println!("removed {name}");
                removed += 1;
            }
            Ok(Removal::InUse {
                producer_held,
                consumer_held,
            }) => println!(
                "kept {name} (in use: {})",
                holders(producer_held, consumer_held)
            ),
            // Removed meanwhile by its own last user.
            Err(ShmError::NotFound(_)) => {}
            // Not ours, or no longer a segment: say so and go on.
            Err(e @ (ShmError::NotASegment { .. } | ShmError::Untrusted { .. })) => {
                println!("skipped {name} ({e})");
            }
            Err(e) => return Err(CliError::from(e).context(format!("removing {name}"))),
        }
    }
    if removed == 0 {
        println!("no stale segment found");
    }
    Ok(())
}
