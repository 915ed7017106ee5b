//! `inspect`: a segment's kind, header, validation result, positions and
//! roles; for an MPSC segment, each producer slot's lease and generation.

use std::fmt::Write as _;

use ringproof::shm::{Inspection, MpscInspection, RingKind, Segment};
use serde::Serialize;

use crate::cli::InspectArgs;
use crate::exit::CliError;
use crate::size::human;

/// One role, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct RoleReport {
    /// A live process holds the role's lease.
    pub held: bool,
    /// How many times the role was claimed.
    pub generation: u32,
}

/// What `inspect --json` prints.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Normalised name.
    pub name: String,
    /// `spsc`.
    pub kind: &'static str,
    /// Size of the segment file.
    pub file_size: u64,
    /// Whether the header passed validation.
    pub valid: bool,
    /// Why it did not.
    pub error: Option<String>,
    /// Data region bytes (valid segments only).
    pub capacity: Option<u64>,
    /// Largest message.
    pub max_message: Option<u64>,
    /// Released position.
    pub head: Option<u64>,
    /// Committed position.
    pub tail: Option<u64>,
    /// Committed bytes not yet released.
    pub used: Option<u64>,
    /// The producer closed the stream.
    pub closed: Option<bool>,
    /// The producer role.
    pub producer: RoleReport,
    /// The consumer role.
    pub consumer: RoleReport,
    /// No role is held: nobody uses this segment now.
    pub stale: bool,
}

impl From<&Inspection> for Report {
    fn from(i: &Inspection) -> Self {
        // The header decides whether the fields mean anything; the
        // positions, whether `used` does.
        let header_valid = i.error.is_none();
        let valid = i.valid();
        let when_valid = |v: u64| header_valid.then_some(v);
        Report {
            name: i.name.clone(),
            kind: RingKind::Spsc.name(),
            file_size: i.file_size,
            valid,
            error: match (i.error, i.position_error) {
                (Some(e), _) => Some(e.to_string()),
                (None, Some(e)) => Some(ringproof::Error::from(e).to_string()),
                (None, None) => None,
            },
            capacity: when_valid(i.capacity),
            max_message: when_valid(i.max_message),
            head: when_valid(i.head),
            tail: when_valid(i.tail),
            used: valid.then_some(i.used),
            closed: header_valid.then_some(i.closed),
            producer: RoleReport {
                held: i.producer_held,
                generation: i.producer_gen,
            },
            consumer: RoleReport {
                held: i.consumer_held,
                generation: i.consumer_gen,
            },
            stale: i.stale(),
        }
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn role_line(r: &RoleReport) -> String {
    let holder = if r.held {
        "held by a live process"
    } else {
        "free"
    };
    format!("{holder} (generation {})", r.generation)
}

/// The text form.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "segment      {}", r.name);
    let _ = writeln!(s, "kind         SPSC");
    let _ = writeln!(s, "file size    {} bytes", r.file_size);
    match &r.error {
        None => {
            let _ = writeln!(s, "valid        yes");
        }
        Some(e) => {
            let _ = writeln!(s, "valid        no: {e}");
        }
    }
    if let (Some(capacity), Some(max), Some(head), Some(tail), Some(closed)) =
        (r.capacity, r.max_message, r.head, r.tail, r.closed)
    {
        let _ = writeln!(s, "capacity     {} ({capacity} bytes)", human(capacity));
        let _ = writeln!(s, "max message  {max} bytes");
        let _ = writeln!(s, "head         {head}");
        let _ = writeln!(s, "tail         {tail}");
        match r.used {
            Some(used) => {
                let _ = writeln!(s, "used         {used} bytes");
            }
            None => {
                let _ = writeln!(s, "used         unknown (positions invalid)");
            }
        }
        let _ = writeln!(s, "closed       {}", yes_no(closed));
    }
    let _ = writeln!(s, "producer     {}", role_line(&r.producer));
    let _ = writeln!(s, "consumer     {}", role_line(&r.consumer));
    let _ = writeln!(s, "stale        {}", yes_no(r.stale));
    s
}

/// One producer slot of an MPSC segment, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct SlotReport {
    /// The slot.
    pub slot: u8,
    /// A live process holds the slot's lease.
    pub held: bool,
    /// How many times the slot was taken.
    pub generation: u32,
}

/// What `inspect --json` prints for an MPSC segment.
#[derive(Debug, Serialize)]
pub struct MpscReport {
    /// Normalised name.
    pub name: String,
    /// `mpsc`.
    pub kind: &'static str,
    /// Data region bytes.
    pub capacity: u64,
    /// Largest message.
    pub max_message: u64,
    /// Released position.
    pub head: u64,
    /// Claim hint: no record starts past it.
    pub tail: u64,
    /// A producer closed the stream.
    pub closed: bool,
    /// The consumer role.
    pub consumer: RoleReport,
    /// Every producer slot, in order.
    pub slots: Vec<SlotReport>,
    /// No slot and no consumer role is held.
    pub stale: bool,
}

impl From<&MpscInspection> for MpscReport {
    fn from(i: &MpscInspection) -> Self {
        let slots: Vec<SlotReport> = i
            .slots
            .iter()
            .map(|s| SlotReport {
                slot: s.slot,
                held: s.held,
                generation: s.generation,
            })
            .collect();
        MpscReport {
            name: i.name.clone(),
            kind: RingKind::Mpsc.name(),
            capacity: i.capacity,
            max_message: i.max_message,
            head: i.head,
            tail: i.tail,
            closed: i.closed,
            consumer: RoleReport {
                held: i.consumer_held,
                generation: i.consumer_gen,
            },
            stale: !i.consumer_held && slots.iter().all(|s| !s.held),
            slots,
        }
    }
}

/// The text form of an MPSC report: one line per slot.
pub fn mpsc_text(r: &MpscReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "segment      {}", r.name);
    let _ = writeln!(s, "kind         MPSC");
    let _ = writeln!(s, "valid        yes");
    let _ = writeln!(
        s,
        "capacity     {} ({} bytes)",
        human(r.capacity),
        r.capacity
    );
    let _ = writeln!(s, "max message  {} bytes", r.max_message);
    let _ = writeln!(s, "head         {}", r.head);
    let _ = writeln!(s, "tail hint    {}", r.tail);
    let _ = writeln!(s, "closed       {}", yes_no(r.closed));
    let _ = writeln!(s, "consumer     {}", role_line(&r.consumer));
    let held = r.slots.iter().filter(|s| s.held).count();
    let _ = writeln!(s, "slots        {} ({held} held)", r.slots.len());
    for slot in &r.slots {
        let state = if slot.held { "held" } else { "free" };
        let _ = writeln!(
            s,
            "  slot {:<3}   {state} (generation {})",
            slot.slot, slot.generation
        );
    }
    let _ = writeln!(s, "stale        {}", yes_no(r.stale));
    s
}

/// `ringproof inspect` of an MPSC segment.
fn run_mpsc(args: &InspectArgs) -> Result<(), CliError> {
    let inspection = ringproof::shm::mpsc::inspect(&args.name)
        .map_err(|e| CliError::from(e).context(format!("cannot inspect {}", args.name)))?;
    let report = MpscReport::from(&inspection);
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::unexpected(format!("formatting JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", mpsc_text(&report));
    }
    Ok(())
}

/// `ringproof inspect`. A segment that fails validation is described, then
/// reported as an error (exit 2). The kind is read from the header.
pub fn run(args: &InspectArgs) -> Result<(), CliError> {
    if let Ok(Some(RingKind::Mpsc)) = Segment::kind_of(&args.name) {
        return run_mpsc(args);
    }
    let inspection = Segment::inspect(&args.name)
        .map_err(|e| CliError::from(e).context(format!("cannot inspect {}", args.name)))?;
    let report = Report::from(&inspection);
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::unexpected(format!("formatting JSON: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", text(&report));
    }
    match report.error {
        None => Ok(()),
        Some(e) => Err(CliError::invalid(format!(
            "segment {} is invalid: {e}",
            inspection.name
        ))),
    }
}
