//! The MPSC checker: from what the producers recorded of their commits and
//! what the consumers recorded of their deliveries and releases (the
//! [`Evidence`]), the [`Verdict`]. A pure function, so that a doctored log
//! shows it able to fail (`tests.rs`).
//!
//! Owns the rules; knows nothing of processes or the segment.

use std::collections::HashMap;
use std::ops::Range;

/// Bit set in the producer field of a message a producer wrote into a claim
/// it then abandoned: such a payload must never be delivered.
pub const ABANDONED: u64 = 1 << 31;

/// What one producer id (over all its incarnations) recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerFacts {
    /// Every sequence number below this was decided: committed, unless it
    /// lies in `maybe` or `never`.
    pub next: u64,
    /// Sequence numbers whose commit was in doubt (the producer died between
    /// the record before its reserve and the record after its commit):
    /// delivered at most once, or not at all.
    pub maybe: Vec<Range<u64>>,
    /// Sequence numbers known never committed (the producer died at a crash
    /// point before its commit store): never delivered.
    pub never: Vec<Range<u64>>,
}

/// One delivery, in the order the consumers made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// The producer field of the message (with [`ABANDONED`] if so marked).
    pub producer: u64,
    /// Its sequence number.
    pub seq: u64,
    /// Whether length, payload and checksum were whole.
    pub whole: bool,
}

/// Everything the checker needs.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Indexed by producer id.
    pub producers: Vec<ProducerFacts>,
    /// Every delivery of every consumer incarnation, in order.
    pub deliveries: Vec<Delivered>,
    /// Index ranges of `deliveries` that a consumer made and had not surely
    /// released when it died: only these may be delivered again.
    pub unreleased: Vec<Range<usize>>,
    /// Longest read or batch a consumer makes (the most one death may repeat).
    pub max_batch: usize,
}

/// What the checker found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Messages surely committed.
    pub committed: u64,
    /// Distinct messages delivered.
    pub delivered: u64,
    /// Messages whose commit was in doubt.
    pub in_doubt: u64,
    /// Surely committed messages never delivered.
    pub lost: u64,
    /// Deliveries whose length, payload or checksum was wrong.
    pub torn: u64,
    /// Deliveries of a message delivered before.
    pub duplicates: u64,
    /// Of which not explained by a dead consumer's unreleased batch.
    pub duplicates_outside_batch: u64,
    /// A producer's messages delivered out of its order.
    pub order_violations: u64,
    /// Deliveries of a message never committed: abandoned, killed before
    /// its commit, past the producer's record, or of an unknown producer.
    pub uncommitted_delivered: u64,
    /// The first violations, in words.
    pub violations: Vec<String>,
}

impl Verdict {
    fn violation(&mut self, text: String) {
        if self.violations.len() < 20 {
            self.violations.push(text);
        }
    }

    /// Every check held.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.torn == 0
            && self.duplicates_outside_batch == 0
            && self.order_violations == 0
            && self.uncommitted_delivered == 0
            && self.violations.is_empty()
    }
}

fn within(ranges: &[Range<u64>], seq: u64) -> bool {
    ranges.iter().any(|r| r.contains(&seq))
}

/// Checks `e`: nothing surely committed lost, nothing torn, nothing
/// uncommitted delivered, each producer's messages in its order, and a
/// message delivered twice only when its first delivery lies in a dead
/// consumer's unreleased batch (each such batch at most `max_batch` long,
/// repeated at most once).
pub fn check(e: &Evidence) -> Verdict {
    let mut v = Verdict::default();
    for window in &e.unreleased {
        if window.len() > e.max_batch {
            v.violation(format!(
                "a dead consumer left {} deliveries unreleased (at most {} expected)",
                window.len(),
                e.max_batch
            ));
        }
    }
    let window_of = |i: usize| e.unreleased.iter().position(|w| w.contains(&i));
    // First delivery index of each (producer, seq); highest seq per producer.
    let mut first: HashMap<(u64, u64), usize> = HashMap::new();
    let mut repeated: HashMap<(u64, u64), u64> = HashMap::new();
    let mut last: HashMap<u64, u64> = HashMap::new();
    for (i, d) in e.deliveries.iter().enumerate() {
        if !d.whole {
            v.torn += 1;
            v.violation(format!("delivery {i} is torn"));
            continue;
        }
        let key = (d.producer, d.seq);
        if let Some(&at) = first.get(&key) {
            v.duplicates += 1;
            let times = repeated.entry(key).or_insert(0);
            *times += 1;
            // A repeat is explained only by a dead consumer's unreleased
            // batch holding the first delivery, repeated once by its successor.
            let explained = window_of(at).is_some_and(|w| i >= e.unreleased[w].end) && *times == 1;
            if !explained {
                v.duplicates_outside_batch += 1;
                v.violation(format!(
                    "producer {} message {} delivered again at {i} (first at {at})",
                    d.producer, d.seq
                ));
            }
            continue;
        }
        first.insert(key, i);
        let facts = usize::try_from(d.producer)
            .ok()
            .and_then(|p| e.producers.get(p));
        let committed = d.producer & ABANDONED == 0
            && facts.is_some_and(|f| d.seq < f.next && !within(&f.never, d.seq));
        if !committed {
            v.uncommitted_delivered += 1;
            v.violation(format!(
                "producer {:#x} message {} delivered but never committed",
                d.producer, d.seq
            ));
            continue;
        }
        match last.get(&d.producer) {
            Some(&prev) if d.seq <= prev => {
                v.order_violations += 1;
                v.violation(format!(
                    "producer {} message {} delivered after its message {prev}",
                    d.producer, d.seq
                ));
            }
            _ => {
                last.insert(d.producer, d.seq);
            }
        }
    }
    for (p, f) in e.producers.iter().enumerate() {
        for seq in 0..f.next {
            if within(&f.never, seq) {
                continue;
            }
            if within(&f.maybe, seq) {
                v.in_doubt += 1;
                continue;
            }
            v.committed += 1;
            if !first.contains_key(&(p as u64, seq)) {
                v.lost += 1;
                v.violation(format!("producer {p} message {seq} committed but lost"));
            }
        }
    }
    v.delivered = first.len() as u64;
    v
}
