//! The MPSC children: producers that send their numbered stream, a closer
//! that closes the stream once every producer is done, and a consumer that
//! checks and records each delivery. All run over [`CrashMpsc`], the
//! shipped view with the crash hook, and record on the side page what the
//! driver needs after their end.

use std::sync::atomic::{AtomicU64, Ordering};

use ringproof::mpsc::{Consumer, Producer, PushError, ReadError};
use ringproof::shm::OpenMode;
use ringproof::shm::mpsc::{claim_consumer, claim_slot};
use ringproof::sync::CrashPoint;

use super::super::hook::{CrashMpsc, KillAt, await_before_death, monotonic_ns, stamp_death_into};
use super::super::message::{decode, encode, message_len, read_plan, splitmix};
use super::super::{
    EXIT_CLAIM, EXIT_CLOSED, EXIT_CORRUPTED, EXIT_LOG_FULL, EXIT_OK, EXIT_RING, PARK,
};
use super::check::ABANDONED;
use super::side::{DELIVERIES, MpscSide, ProducerLog, UNBLOCKS};

/// A soak producer that abandoned a claim and left (as a crashed one
/// would, but by its own hand): the driver restarts it.
pub(super) const EXIT_ABANDONED: i32 = 27;

/// What a child needs to know.
#[derive(Clone, Debug)]
pub(super) struct Spec {
    pub(super) name: String,
    pub(super) capacity: u64,
    pub(super) slots: u32,
    /// Crash point and crossing to die at.
    pub(super) arm: Option<(CrashPoint, u64)>,
    /// Producer: sequence number to stop at; `u64::MAX`: until `finish`.
    pub(super) end: u64,
    /// Soak: a producer may abandon a claim and leave.
    pub(super) soak: bool,
    /// Index of this incarnation (consumer) or of the start (producer).
    pub(super) incarnation: u64,
}

fn mode(spec: &Spec) -> OpenMode {
    OpenMode::CreateOrOpen {
        capacity: spec.capacity,
    }
}

fn store(word: &AtomicU64, value: u64) {
    // Relaxed: each word has one writer at a time; the driver reads it after
    // `waitpid` (see `side.rs`).
    word.store(value, Ordering::Relaxed);
}

fn load(word: &AtomicU64) -> u64 {
    // Relaxed: as in `store`.
    word.load(Ordering::Relaxed)
}

fn record_crossings(words: &[AtomicU64], hook: &KillAt) {
    for (i, c) in words.iter().enumerate() {
        store(c, hook.crossings(CrashPoint::ALL[i]));
    }
}

fn push_exit(e: PushError) -> i32 {
    match e {
        PushError::Closed => EXIT_CLOSED,
        _ => EXIT_RING,
    }
}

/// Producer `id`: sends `log.next..spec.end`, recording each commit in its log.
pub(super) fn producer(id: u64, spec: &Spec, log: &ProducerLog, side: &MpscSide) -> i32 {
    let Ok((view, slot)) = claim_slot(&spec.name, mode(spec), spec.slots) else {
        return EXIT_CLAIM;
    };
    stamp_death_into(&log.died_ns);
    let shared: CrashMpsc = view.with_hook(KillAt::new(spec.arm));
    let mut p = match Producer::new(shared, slot) {
        Ok(p) => p,
        Err(_) => return EXIT_RING,
    };
    // Recorded once the slot's generation is bumped (by `Producer::new`).
    store(&log.slot, u64::from(slot) + 1);
    if let Some((CrashPoint::AfterReserve | CrashPoint::MidPayload | CrashPoint::BeforeCommit, _)) =
        spec.arm
    {
        // Dying with a claim open: first let the consumer reach it.
        await_before_death(&side.consumer.blocked, u64::from(slot) + 1);
    }
    let code = produce(&mut p, id, spec, log, side)
        .err()
        .unwrap_or(EXIT_OK);
    record_crossings(&log.crossings, p.shared().hook());
    code
}

fn produce(
    p: &mut Producer<CrashMpsc>,
    id: u64,
    spec: &Spec,
    log: &ProducerLog,
    side: &MpscSide,
) -> Result<(), i32> {
    let mut seq = load(&log.next);
    let mut buf = vec![0u8; message_len(0, spec.capacity).max(24 + spec.capacity as usize / 16)];
    while seq < spec.end && load(&side.finish) == 0 {
        let len = message_len(seq, spec.capacity);
        let plan = splitmix(seq ^ (id << 40) ^ 0xA11CE) % 8;
        if plan == 7 {
            // A claim written with a marked copy and dropped (skipped): its
            // payload must never be delivered.
            with_grant(p, len, |mut grant| {
                encode(seq, id | ABANDONED, &mut grant);
                drop(grant);
            })?;
            store(&log.abandoned, load(&log.abandoned) + 1);
        }
        if spec.soak && splitmix(seq ^ id ^ (spec.incarnation << 20)) % 97 == 0 {
            // A claim left open by a producer that then leaves: the
            // consumer must pass it once the slot's lease is gone.
            with_grant(p, len, |mut grant| {
                encode(seq, id | ABANDONED, &mut grant);
                grant.abandon();
            })?;
            store(&log.abandoned, load(&log.abandoned) + 1);
            return Err(EXIT_ABANDONED);
        }
        encode(seq, id, &mut buf[..len]);
        // The record of a commit in doubt, before the reserve.
        store(&log.pending_start, seq);
        store(&log.pending_end, seq + 1);
        store(&log.pending, 1);
        if plan < 4 {
            loop {
                match p.push(&buf[..len]) {
                    Ok(()) => break,
                    Err(PushError::Full) => wait(p)?,
                    Err(e) => return Err(push_exit(e)),
                }
            }
        } else {
            with_grant(p, len, |mut grant| {
                grant.copy_from_slice(&buf[..len]);
                grant.commit();
            })?;
        }
        // The commit is done: recorded.
        store(&log.next, seq + 1);
        store(&log.pending, 0);
        seq += 1;
    }
    Ok(())
}

fn wait(p: &mut Producer<CrashMpsc>) -> Result<(), i32> {
    p.wait_writable(Some(PARK)).map(|_| ()).map_err(push_exit)
}

/// Reserves `len` bytes, waiting for room, and hands the grant to `f`
/// (which commits or drops it).
fn with_grant(
    p: &mut Producer<CrashMpsc>,
    len: usize,
    f: impl FnOnce(ringproof::mpsc::Grant<'_, CrashMpsc>),
) -> Result<(), i32> {
    let mut f = Some(f);
    loop {
        match p.reserve(len) {
            Ok(grant) => {
                if let Some(f) = f.take() {
                    f(grant);
                }
                return Ok(());
            }
            Err(PushError::Full) => {}
            Err(e) => return Err(push_exit(e)),
        }
        wait(p)?;
    }
}

/// The closer: takes a slot and closes the stream (crossing BeforeClose).
pub(super) fn closer(spec: &Spec, log: &ProducerLog) -> i32 {
    let Ok((view, slot)) = claim_slot(&spec.name, mode(spec), spec.slots) else {
        return EXIT_CLAIM;
    };
    stamp_death_into(&log.died_ns);
    let mut p = match Producer::new(view.with_hook(KillAt::new(spec.arm)), slot) {
        Ok(p) => p,
        Err(_) => return EXIT_RING,
    };
    store(&log.slot, u64::from(slot) + 1);
    let code = match p.close() {
        Ok(()) | Err(PushError::Closed) => EXIT_OK,
        Err(e) => push_exit(e),
    };
    record_crossings(&log.crossings, p.shared().hook());
    code
}

/// The consumer: reads until the end of stream, recording each delivery
/// (in the delivery log) and each release (`released`).
pub(super) fn consumer(spec: &Spec, side: &MpscSide) -> i32 {
    let Ok((view, liveness)) = claim_consumer(&spec.name, mode(spec), spec.slots) else {
        return EXIT_CLAIM;
    };
    stamp_death_into(&side.consumer.died_ns);
    let mut c = match Consumer::new(view.with_hook(KillAt::new(spec.arm)), liveness) {
        Ok(c) => c,
        Err(_) => return EXIT_RING,
    };
    let mut state = Reader {
        side,
        spec,
        blocked: None,
    };
    let code = state.consume(&mut c).err().unwrap_or(EXIT_OK);
    record_crossings(&side.consumer.crossings, c.shared().hook());
    code
}

type MpscConsumer = Consumer<CrashMpsc, ringproof::shm::SlotLeases>;

struct Reader<'a> {
    side: &'a MpscSide,
    spec: &'a Spec,
    /// The slot whose live claim the consumer is waiting on, and since when.
    blocked: Option<(u8, u64)>,
}

impl Reader<'_> {
    fn deliver(&self, bytes: &[u8]) -> Result<(), i32> {
        let side = self.side;
        let at = load(&side.deliveries_len) as usize;
        let Some(entry) = side.deliveries.get(at).filter(|_| at < DELIVERIES) else {
            return Err(EXIT_LOG_FULL);
        };
        match decode(bytes, self.spec.capacity) {
            Some((seq, producer)) => {
                store(&entry.producer, producer);
                store(&entry.seq, seq);
                store(&entry.state, 1);
            }
            None => store(&entry.state, 2),
        }
        store(&entry.consumer, self.spec.incarnation);
        // The delivery is recorded once `len` covers it.
        store(&side.deliveries_len, at as u64 + 1);
        Ok(())
    }

    fn released(&self) {
        let side = self.side;
        store(&side.consumer.released, load(&side.deliveries_len));
    }

    /// A read found a live producer's claim at `head`.
    fn pending(&mut self, slot: u8) {
        if self.blocked.is_none_or(|(s, _)| s != slot) {
            self.blocked = Some((slot, monotonic_ns()));
            store(&self.side.consumer.blocked, u64::from(slot) + 1);
        }
    }

    /// A read got past whatever blocked it.
    fn passed(&mut self) {
        let Some((slot, since)) = self.blocked.take() else {
            return;
        };
        let side = self.side;
        store(&side.consumer.blocked, 0);
        let at = load(&side.unblocks_len) as usize;
        if let Some(u) = side.unblocks.get(at).filter(|_| at < UNBLOCKS) {
            store(&u.slot, u64::from(slot));
            store(&u.since_ns, since);
            store(&u.passed_ns, monotonic_ns());
            store(&side.unblocks_len, at as u64 + 1);
        }
    }

    fn consume(&mut self, c: &mut MpscConsumer) -> Result<(), i32> {
        let mut reads = 0u64;
        loop {
            let take = read_plan(reads);
            reads += 1;
            if take == 1 {
                match c.read() {
                    Ok(message) => {
                        self.passed();
                        self.deliver(&message)?;
                        message.release();
                        self.released();
                        continue;
                    }
                    Err(e) => self.idle(c, e)?,
                }
            } else {
                let mut batch = c.read_batch();
                let mut stop = None;
                while (batch.len() as u64) < take {
                    match batch.read() {
                        Ok(message) => {
                            self.passed();
                            self.deliver(message)?;
                        }
                        Err(e) => {
                            stop = Some(e);
                            break;
                        }
                    }
                }
                let read_some = !batch.is_empty();
                if read_some {
                    batch.release();
                    self.released();
                }
                match stop {
                    Some(e) if !read_some => self.idle(c, e)?,
                    Some(ReadError::Closed) => self.idle(c, ReadError::Closed)?,
                    _ => {}
                }
            }
            if load(&self.side.consumer.done) == 1 {
                return Ok(());
            }
        }
    }

    /// Nothing to read: wait, or finish at the end of stream.
    fn idle(&mut self, c: &mut MpscConsumer, e: ReadError) -> Result<(), i32> {
        match e {
            ReadError::Closed => {
                self.passed();
                store(&self.side.consumer.done, 1);
                Ok(())
            }
            ReadError::Pending { slot } => {
                self.pending(slot);
                c.wait_readable(Some(PARK))
                    .map(|_| ())
                    .map_err(|_| EXIT_RING)
            }
            ReadError::Empty => {
                // A dead claim skipped, or nothing yet.
                c.wait_readable(Some(PARK))
                    .map(|_| ())
                    .map_err(|_| EXIT_RING)
            }
            ReadError::Corrupted(_) => Err(EXIT_CORRUPTED),
            _ => Err(EXIT_RING),
        }
    }
}
