//! One run: a segment, a stream, its producers and consumers, as the driver
//! sees them. The driver spawns, waits for and kills the children of each
//! role, settles after each end what the child committed (producer) or
//! delivered and released (consumer), and checks the stream and the segment
//! at the end. Both roles go through the same code, over [`Role`]; where
//! they differ it says so in a `match`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nix::unistd::Pid;

use ringproof::shm::{self, OpenMode, Role, Segment};
use ringproof::sync::CrashPoint;

use super::child::{self, ChildSpec};
use super::process::{self, End, describe, kill_and_reap, wait_until};
use super::side::{Side, SidePage};
use super::{CrashError, CrashReport, EXIT_OK, LOG_ENTRIES, MAX_BATCH, PointRow, RUN_DEADLINE};

/// One producer's or consumer's life in a run, as settled after its end.
#[derive(Clone, Debug)]
pub(super) struct Life {
    /// Position (as a sequence number) it took over at: the committed count
    /// (producer) or the released position (consumer) its predecessor left.
    pub(super) start: u64,
    /// Position it left: messages committed (producer) or released position
    /// (consumer).
    pub(super) end: u64,
    /// Generation it saw after its claim (0: died before).
    pub(super) generation: u64,
    /// Consumer only: what it delivered (all zero for a producer).
    pub(super) deliveries: Deliveries,
}

/// What a consumer delivered.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Deliveries {
    /// Sequence number after its last delivery (0: none).
    pub(super) last: u64,
    pub(super) delivered: u64,
    pub(super) torn: u64,
    pub(super) order: u64,
}

/// One role's part of a run.
#[derive(Clone, Debug, Default)]
pub(super) struct RoleState {
    /// The live child of the role, if any.
    pub(super) pid: Option<Pid>,
    /// Every child of the role so far, in order; the last one is (or was
    /// last) `pid`.
    pub(super) lives: Vec<Life>,
    /// Children of the role killed.
    pub(super) kills: u64,
}

/// Counts of one run.
#[derive(Clone, Debug, Default)]
pub(super) struct RunStats {
    pub(super) committed: u64,
    pub(super) delivered: u64,
    pub(super) lost: u64,
    pub(super) torn: u64,
    pub(super) duplicates: u64,
    pub(super) in_doubt: u64,
    pub(super) before_attach: u64,
}

/// A run in progress, owned by the driver.
pub(super) struct Run<'a> {
    pub(super) page: &'a SidePage,
    pub(super) name: String,
    pub(super) capacity: u64,
    pub(super) end: u64,
    pub(super) deadline: Instant,
    pub(super) producer: RoleState,
    pub(super) consumer: RoleState,
    pub(super) stats: RunStats,
    pub(super) report: &'a mut CrashReport,
}

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Prefix of this process's segment names.
pub(super) fn name_prefix() -> String {
    format!("ringproof-crash-{}-", std::process::id())
}

impl<'a> Run<'a> {
    pub(super) fn start(
        page: &'a SidePage,
        capacity: u64,
        end: u64,
        report: &'a mut CrashReport,
    ) -> Result<Self, CrashError> {
        // Relaxed: a counter for unique names, one thread.
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}{n}", name_prefix());
        // The driver creates the segment and lets go of it at once: the
        // children claim their roles. No descriptor of it stays open here.
        drop(shm::claim(
            &name,
            Role::Consumer,
            OpenMode::Create { capacity },
        )?);
        page.side().reset_all();
        report.runs += 1;
        Ok(Run {
            page,
            name,
            capacity,
            end,
            deadline: Instant::now() + RUN_DEADLINE,
            producer: RoleState::default(),
            consumer: RoleState::default(),
            stats: RunStats::default(),
            report,
        })
    }

    pub(super) fn side(&self) -> &'a Side {
        self.page.side()
    }

    fn role(&self, role: Role) -> &RoleState {
        match role {
            Role::Producer => &self.producer,
            Role::Consumer => &self.consumer,
        }
    }

    fn role_mut(&mut self, role: Role) -> &mut RoleState {
        match role {
            Role::Producer => &mut self.producer,
            Role::Consumer => &mut self.consumer,
        }
    }

    /// Starts the next child of `role`, armed with `arm`.
    pub(super) fn spawn(
        &mut self,
        role: Role,
        arm: Option<(CrashPoint, u64)>,
    ) -> Result<(), CrashError> {
        let spec = self.next(role, arm);
        let side = self.side();
        let pid = process::spawn(move || child::child(role, &spec, side))?;
        self.role_mut(role).pid = Some(pid);
        Ok(())
    }

    /// Prepares the side page and the record for the next child of `role`,
    /// which takes over at its predecessor's committed count (producer) or
    /// released position (consumer).
    pub(super) fn next(&mut self, role: Role, arm: Option<(CrashPoint, u64)>) -> ChildSpec {
        let start = self.role(role).lives.last().map_or(0, |l| l.end);
        self.side().reset(role, start);
        let spec = ChildSpec {
            name: self.name.clone(),
            capacity: self.capacity,
            incarnation: self.role(role).lives.len() as u64,
            arm,
            end: self.end,
        };
        self.role_mut(role).lives.push(Life {
            start,
            end: start,
            generation: 0,
            deliveries: Deliveries::default(),
        });
        spec
    }

    /// Reads `head` and `tail`, and whether each role is held now.
    fn inspect(&mut self) -> Option<shm::Inspection> {
        match Segment::inspect(&self.name) {
            Ok(i) => Some(i),
            Err(e) => {
                let text = format!("{}: inspect failed: {e}", self.name);
                self.report.violation(text);
                self.report.child_failures += 1;
                None
            }
        }
    }

    /// Settles what the child of `role` that just ended committed
    /// (producer), or delivered and released (consumer).
    fn settle(&mut self, role: Role, end: End, expect_kill: bool) {
        let inspection = self.inspect();
        self.settle_inspected(role, end, expect_kill, inspection);
    }

    /// [`Run::settle`] given the segment as the child left it.
    pub(super) fn settle_inspected(
        &mut self,
        role: Role,
        end: End,
        expect_kill: bool,
        inspection: Option<shm::Inspection>,
    ) {
        let side = self.side();
        let record = side.record(role);
        // Relaxed: the child is reaped; `waitpid` ordered its writes.
        let recorded = record.position.load(Ordering::Relaxed);
        let mut position = recorded;
        if record.pending.load(Ordering::Relaxed) == 1 {
            let pre_index = record.pre_index.load(Ordering::Relaxed);
            let pending_end = record.pending_end.load(Ordering::Relaxed);
            // Only the commit (release) store in doubt moves `tail` (`head`):
            // if it moved, the store was done.
            let index = |i: &shm::Inspection| match role {
                Role::Producer => i.tail,
                Role::Consumer => i.head,
            };
            if inspection.as_ref().is_some_and(|i| index(i) != pre_index) {
                if pending_end != recorded {
                    self.stats.in_doubt += 1;
                }
                position = pending_end;
            }
        }
        let generation = record.generation.load(Ordering::Relaxed);
        let previous = self
            .role(role)
            .lives
            .iter()
            .rev()
            .skip(1)
            .map(|l| l.generation)
            .find(|g| *g != 0);
        // Only a consumer delivers: its record of what it delivered is
        // completed here; a producer has nothing of the kind.
        let deliveries = match role {
            Role::Producer => Deliveries::default(),
            Role::Consumer => consumer_deliveries(side),
        };
        if let Some(life) = self.role_mut(role).lives.last_mut() {
            life.end = position;
            life.generation = generation;
            life.deliveries = deliveries;
        }
        if let Some(prev) = previous.filter(|prev| generation != 0 && generation <= *prev) {
            self.report.generations_not_bumped += 1;
            let text = format!("{}: {role} generation {generation} after {prev}", self.name);
            self.report.violation(text);
        }
        self.check_end(role, end, expect_kill);
        if end == End::Killed {
            self.role_mut(role).kills += 1;
            self.stats.before_attach += u64::from(generation == 0);
            let held = |i: shm::Inspection| match role {
                Role::Producer => i.producer_held,
                Role::Consumer => i.consumer_held,
            };
            if inspection.is_some_and(held) {
                self.report.leases_not_released += 1;
                let text = format!("{}: a dead {role}'s role is still held", self.name);
                self.report.violation(text);
            }
        }
        self.role_mut(role).pid = None;
    }

    fn check_end(&mut self, who: Role, end: End, expect_kill: bool) {
        let ok = match end {
            End::Exited(EXIT_OK) => true,
            End::Killed => expect_kill,
            _ => false,
        };
        if !ok {
            self.report.child_failures += 1;
            let text = format!("{}: a {who} {}", self.name, describe(end));
            self.report.violation(text);
        }
    }

    /// Waits for the child of `role` to end and settles it.
    pub(super) fn wait(&mut self, role: Role, expect_kill: bool) -> End {
        let deadline = self.deadline;
        let end = self
            .role_mut(role)
            .pid
            .take()
            .map_or(End::Hung, |pid| wait_until(pid, deadline));
        self.settle(role, end, expect_kill);
        end
    }

    /// Kills the live child of `role` from outside and settles it.
    pub(super) fn kill(&mut self, role: Role) {
        if let Some(pid) = self.role_mut(role).pid.take() {
            let end = kill_and_reap(pid).unwrap_or(End::Hung);
            self.settle(role, end, true);
        }
    }

    /// Checks the stream and the segment, removes the segment, and adds the
    /// run's counts to `row`.
    pub(super) fn finish(mut self, row: &mut PointRow) {
        for pid in [self.producer.pid.take(), self.consumer.pid.take()]
            .into_iter()
            .flatten()
        {
            let _ = kill_and_reap(pid);
            self.report.child_failures += 1;
        }
        self.check_stream();
        if let Some(i) = self.inspect() {
            let drained = i.closed && i.head == i.tail;
            if !i.stale() || !drained {
                self.report.stale_not_detected += 1;
                let text = format!(
                    "{}: at the end: stale {}, closed {}, head {}, tail {}",
                    self.name,
                    i.stale(),
                    i.closed,
                    i.head,
                    i.tail
                );
                self.report.violation(text);
            }
        }
        let _ = shm::unlink(&self.name);
        let s = &self.stats;
        let (producer_kills, consumer_kills) = (self.producer.kills, self.consumer.kills);
        row.runs += 1;
        row.kills += producer_kills + consumer_kills;
        row.committed += s.committed;
        row.delivered += s.delivered;
        row.lost += s.lost;
        row.torn += s.torn;
        row.duplicates += s.duplicates;
        row.in_doubt += s.in_doubt;
        row.before_attach += s.before_attach;
        let r = &mut *self.report;
        r.producer_kills += producer_kills;
        r.consumer_kills += consumer_kills;
        r.committed += s.committed;
        r.delivered += s.delivered;
        r.lost += s.lost;
        r.torn += s.torn;
        r.duplicates += s.duplicates;
    }

    /// The invariants over the producers' commits and the consumers' deliveries.
    pub(super) fn check_stream(&mut self) {
        let side = self.side();
        let name = self.name.clone();
        let committed = self.producer.lives.last().map_or(0, |p| p.end);
        self.stats.committed = committed;
        // Producer of each committed sequence number, by first number.
        let owners: BTreeMap<u64, u64> = self
            .producer
            .lives
            .iter()
            .enumerate()
            .filter(|(_, p)| p.end > p.start)
            .map(|(i, p)| (p.start, i as u64))
            .collect();
        let owner = |seq: u64| -> Option<u64> {
            if seq >= committed {
                return None;
            }
            owners.range(..=seq).next_back().map(|(_, i)| *i)
        };
        // Relaxed: every child is reaped.
        let log_len = (side.log_len.load(Ordering::Relaxed) as usize).min(LOG_ENTRIES);
        let log: Vec<(u64, u64, u64)> = side.log[..log_len]
            .iter()
            .map(|e| {
                (
                    e.seq.load(Ordering::Relaxed),
                    e.producer.load(Ordering::Relaxed),
                    e.consumer.load(Ordering::Relaxed),
                )
            })
            .collect();
        let mut violations = Vec::new();
        // Delivered sequence numbers, as disjoint sorted ranges.
        let mut seen: Vec<(u64, u64)> = Vec::new();
        let mut duplicates = 0u64;
        let mut outside = 0u64;
        let mut order = 0u64;
        let mut uncommitted = 0u64;
        let mut torn = 0u64;
        for (j, life) in self.consumer.lives.iter().enumerate() {
            // A consumer's life: where it started, what it released, what it
            // delivered.
            let Life {
                start,
                end: released,
                deliveries:
                    Deliveries {
                        last,
                        delivered,
                        torn: life_torn,
                        order: life_order,
                    },
                ..
            } = *life;
            torn += life_torn;
            order += life_order;
            if life_order != 0 {
                violations.push(format!(
                    "{name}: consumer {j} delivered {life_order} messages out of order"
                ));
            }
            if released < start || (last != 0 && released > last) {
                order += 1;
                violations.push(format!(
                    "{name}: consumer {j} released up to {released} from {start} having delivered up to {last}"
                ));
            }
            if last == 0 {
                continue; // delivered nothing
            }
            let entries: Vec<(u64, u64)> = log
                .iter()
                .filter(|e| e.2 == j as u64 && e.0 < last)
                .map(|e| (e.0, e.1))
                .collect();
            let Some(&(first, _)) = entries.first() else {
                order += 1;
                violations.push(format!("{name}: consumer {j} delivered but logged nothing"));
                continue;
            };
            // Resumes exactly at its predecessor's released position.
            if first > start {
                order += 1;
                violations.push(format!(
                    "{name}: consumer {j} started at {first}, past the released {start}"
                ));
            } else if first < start {
                outside += start - first;
                violations.push(format!(
                    "{name}: consumer {j} started at {first}, before the released {start}"
                ));
            }
            if delivered != last - first && life_order == 0 {
                order += 1;
                violations.push(format!(
                    "{name}: consumer {j} delivered {delivered} messages for {first}..{last}"
                ));
            }
            // Every delivered message is committed, by the producer that
            // committed it: the producer changes exactly where the owners do.
            let mut expected = vec![(first, owner(first))];
            for (&owned_from, &i) in owners.range(first + 1..last) {
                expected.push((owned_from, Some(i)));
            }
            let actual: Vec<(u64, Option<u64>)> =
                entries.iter().map(|&(s, p)| (s, Some(p))).collect();
            if last > committed || actual != expected {
                uncommitted += 1;
                violations.push(format!(
                    "{name}: consumer {j} delivered producers {actual:?}, committed {expected:?} (committed count {committed})"
                ));
            }
            // Duplicates: what it delivered again of what others delivered.
            let again = overlap(&seen, first, last);
            add_range(&mut seen, first, last);
            duplicates += again;
            if again > MAX_BATCH {
                outside += again - MAX_BATCH;
                violations.push(format!(
                    "{name}: consumer {j} delivered {again} messages again (most a batch: {MAX_BATCH})"
                ));
            }
        }
        let distinct = overlap(&seen, 0, committed);
        let lost = committed - distinct;
        if lost != 0 {
            violations.push(format!(
                "{name}: {lost} of {committed} committed messages never delivered"
            ));
        }
        if torn != 0 {
            violations.push(format!("{name}: {torn} torn messages"));
        }
        let last_done = side.c_done.load(Ordering::Relaxed) == 1;
        let last_released = self.consumer.lives.last().map_or(0, |c| c.end);
        if !last_done || last_released != committed {
            order += 1;
            violations.push(format!(
                "{name}: the last consumer saw end of stream {last_done}, released {last_released} of {committed}"
            ));
        }
        self.stats.delivered = distinct;
        self.stats.lost = lost;
        self.stats.torn = torn;
        self.stats.duplicates = duplicates;
        let r = &mut *self.report;
        r.duplicates_outside_batch += outside;
        r.order_violations += order;
        r.uncommitted_delivered += uncommitted;
        for v in violations {
            r.violation(v);
        }
    }
}

impl Drop for Run<'_> {
    /// A run abandoned on an error leaves no child behind (its segment is
    /// removed by [`run_experiment`](super::run_experiment)'s sweep).
    fn drop(&mut self) {
        for pid in [self.producer.pid.take(), self.consumer.pid.take()]
            .into_iter()
            .flatten()
        {
            let _ = kill_and_reap(pid);
        }
    }
}

/// What the consumer that just ended delivered, its open delivery record
/// completed.
fn consumer_deliveries(side: &Side) -> Deliveries {
    // Relaxed: the consumer is reaped; `waitpid` ordered its writes.
    let last = side.c_last.load(Ordering::Relaxed);
    let mut delivered = side.c_delivered.load(Ordering::Relaxed);
    let recording = side.c_recording.load(Ordering::Relaxed);
    if recording != 0 && last == recording {
        // Died with a delivery recorded (`c_last`) but perhaps not yet
        // counted: the count it was writing.
        delivered = side.c_recording_delivered.load(Ordering::Relaxed);
    }
    Deliveries {
        last,
        delivered,
        torn: side.c_torn.load(Ordering::Relaxed),
        order: side.c_order.load(Ordering::Relaxed),
    }
}

/// How many numbers of `start..end` the sorted disjoint `ranges` hold.
fn overlap(ranges: &[(u64, u64)], start: u64, end: u64) -> u64 {
    ranges
        .iter()
        .map(|&(a, b)| b.min(end).saturating_sub(a.max(start)))
        .sum()
}

/// Adds `start..end` to the sorted disjoint `ranges`, merging.
fn add_range(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    ranges.push((start, end));
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    *ranges = merged;
}
