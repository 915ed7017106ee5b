//! `clean`: remove one segment, or every segment nobody holds.
//!
//! Removing a name (`shm_unlink`) does not disturb processes that have the
//! segment mapped; it only stops new ones from finding it. A segment whose
//! producer or consumer role is held is in use and is kept unless `--force`.

use ringproof::shm::{self, Inspection, Segment, ShmError};

use crate::cli::CleanArgs;
use crate::exit::CliError;

fn holders(i: &Inspection) -> &'static str {
    match (i.producer_held, i.consumer_held) {
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
    let inspection = Segment::inspect(name).map_err(|e| CliError::from(e).context(context()))?;
    if !inspection.stale() && !force {
        return Err(CliError::invalid(format!(
            "segment {} is in use ({}); use --force to remove it anyway",
            inspection.name,
            holders(&inspection)
        )));
    }
    shm::unlink(name).map_err(|e| CliError::from(e).context(context()))?;
    println!("removed {}", inspection.name);
    Ok(())
}

fn clean_stale(prefix: Option<&str>) -> Result<(), CliError> {
    let prefix = prefix.map(|p| p.strip_prefix('/').unwrap_or(p));
    let names = shm::list().map_err(|e| CliError::from(e).context("listing /dev/shm"))?;
    let mut removed = 0usize;
    for name in names {
        let bare = name.strip_prefix('/').unwrap_or(&name);
        if prefix.is_some_and(|p| !bare.starts_with(p)) {
            continue;
        }
        let inspection = match Segment::inspect(&name) {
            Ok(i) => i,
            // Removed meanwhile by its own last user.
            Err(ShmError::NotFound(_)) => continue,
            Err(e) => return Err(CliError::from(e).context(format!("inspecting {name}"))),
        };
        if !inspection.stale() {
            println!("kept {name} (in use: {})", holders(&inspection));
            continue;
        }
        match shm::unlink(&name) {
            Ok(()) => {
                println!("removed {name}");
                removed += 1;
            }
            Err(ShmError::NotFound(_)) => {}
            Err(e) => return Err(CliError::from(e).context(format!("removing {name}"))),
        }
    }
    if removed == 0 {
        println!("no stale segment found");
    }
    Ok(())
}
