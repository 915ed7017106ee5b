//! The children: a producer that sends the stream and a consumer that checks
//! and records each delivery, both over the crash hook, both recording on
//! the side page what the driver needs to settle them after their end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ringproof::shm::{self, OpenMode, Role};
use ringproof::spsc::{Consumer, Error as RingError, Producer, PushError, ReadError, Words};
use ringproof::sync::CrashPoint;

use super::hook::{CrashShared, KillAt};
use super::message::{SendOp, batch_need, decode, encode, message_len, read_plan, send_plan};
use super::side::{RoleRecord, Side};
use super::{
    EXIT_BATCH_FULL, EXIT_CLAIM, EXIT_CLOSED, EXIT_LOG_FULL, EXIT_OK, EXIT_RING, EXIT_STORES_SPENT,
    MESSAGE_HEADER, PARK,
};

/// What a child needs to know.
#[derive(Clone, Debug)]
pub(super) struct ChildSpec {
    pub(super) name: String,
    pub(super) capacity: u64,
    /// Index of this producer or consumer in the run (0, 1, …).
    pub(super) incarnation: u64,
    /// Crash point and crossing to die at.
    pub(super) arm: Option<(CrashPoint, u64)>,
    /// Producer: sequence number to stop at (then close); `u64::MAX`: until `finish`.
    pub(super) end: u64,
}

/// The body of a child of `role`; returns its exit code.
pub(super) fn child(role: Role, spec: &ChildSpec, side: &Side) -> i32 {
    let Some(shared) = claim(role, spec, side) else {
        return EXIT_CLAIM;
    };
    match role {
        Role::Producer => producer_child(shared, spec, side),
        Role::Consumer => consumer_child(shared, spec, side),
    }
}

/// Claims `role` in the segment, records the generation the claim bumped,
/// and wraps the view in the crash hook armed as `spec` says.
fn claim(role: Role, spec: &ChildSpec, side: &Side) -> Option<CrashShared> {
    let shared = shm::claim(&spec.name, role, OpenMode::Open).ok()?;
    // Relaxed: our own claim bumped it, earlier in this thread.
    let generation = shared
        .generation(role == Role::Producer)
        .load(Ordering::Relaxed);
    // Relaxed: read by the driver after `waitpid`.
    side.record(role)
        .generation
        .store(u64::from(generation), Ordering::Relaxed);
    Some(shared.with_hook(KillAt::new(spec.arm)))
}

/// Records the crossings `shared` counted, for the driver's census.
fn record_crossings(record: &RoleRecord, shared: &CrashShared) {
    for (i, c) in record.crossings.iter().enumerate() {
        // Relaxed: read by the driver after `waitpid`.
        c.store(
            shared.hook().crossings(CrashPoint::ALL[i]),
            Ordering::Relaxed,
        );
    }
}

fn ring_exit(e: impl Into<RingError>) -> i32 {
    match e.into() {
        RingError::Closed => EXIT_CLOSED,
        _ => EXIT_RING,
    }
}

fn producer_child(shared: CrashShared, spec: &ChildSpec, side: &Side) -> i32 {
    let mut producer = match Producer::new(shared) {
        Ok(p) => p,
        Err(e) => return ring_exit(e),
    };
    let code = produce(&mut producer, spec, side).err().unwrap_or(EXIT_OK);
    record_crossings(&side.producer, producer.shared());
    code
}

/// Records a commit in doubt (before the commit store).
fn pending_commit(side: &Side, pre_tail: u64, end: u64) {
    // Relaxed: the driver reads these only after `waitpid`.
    side.producer.pre_index.store(pre_tail, Ordering::Relaxed);
    side.producer.pending_end.store(end, Ordering::Relaxed);
    side.producer.pending.store(1, Ordering::Relaxed);
}

/// Records a commit done (after the commit store).
fn committed(side: &Side, end: u64) {
    // Relaxed: as above.
    side.producer.position.store(end, Ordering::Relaxed);
    side.producer.pending.store(0, Ordering::Relaxed);
}

fn produce(p: &mut Producer<CrashShared>, spec: &ChildSpec, side: &Side) -> Result<(), i32> {
    // Relaxed: set by the driver before `fork`.
    let mut seq = side.producer.position.load(Ordering::Relaxed);
    let capacity = spec.capacity;
    if p.is_closed() {
        // A predecessor closed the ring after its last commit.
        return if seq >= spec.end {
            Ok(())
        } else {
            Err(EXIT_CLOSED)
        };
    }
    let mut buf = vec![0u8; message_len(0, capacity).max(MESSAGE_HEADER + capacity as usize / 16)];
    // Relaxed: a flag from the driver; a late sighting costs one more message.
    while seq < spec.end && side.finish.load(Ordering::Relaxed) == 0 {
        match send_plan(seq) {
            SendOp::Push => {
                let len = message_len(seq, capacity);
                encode(seq, spec.incarnation, &mut buf[..len]);
                pending_commit(side, p.position(), seq + 1);
                loop {
                    match p.push(&buf[..len]) {
                        Ok(()) => break,
                        Err(PushError::Full) => {
                            p.wait_writable(len, Some(PARK)).map_err(ring_exit)?;
                        }
                        Err(e) => return Err(ring_exit(e)),
                    }
                }
                committed(side, seq + 1);
                seq += 1;
            }
            SendOp::Grant => {
                let len = message_len(seq, capacity);
                pending_commit(side, p.position(), seq + 1);
                loop {
                    match p.reserve(len) {
                        Ok(mut grant) => {
                            encode(seq, spec.incarnation, &mut grant);
                            grant.commit();
                            break;
                        }
                        Err(PushError::Full) => {
                            p.wait_writable(len, Some(PARK)).map_err(ring_exit)?;
                        }
                        Err(e) => return Err(ring_exit(e)),
                    }
                }
                committed(side, seq + 1);
                seq += 1;
            }
            SendOp::Batch(n) => {
                let n = n.min(spec.end - seq);
                let lens = || (seq..seq + n).map(|s| message_len(s, capacity));
                // Wait for room for the whole batch, so that no record of it
                // meets a full ring: the crossings stay the same in every run.
                loop {
                    let need = batch_need(p.position(), capacity, lens());
                    if p.free_bytes().map_err(ring_exit)? >= need {
                        break;
                    }
                    p.wait_writable(message_len(seq, capacity), Some(PARK))
                        .map_err(ring_exit)?;
                    std::thread::yield_now();
                }
                pending_commit(side, p.position(), seq + n);
                let mut batch = p.batch();
                for s in seq..seq + n {
                    let len = message_len(s, capacity);
                    match batch.reserve(len) {
                        Ok(slot) => encode(s, spec.incarnation, slot),
                        Err(PushError::Full) => return Err(EXIT_BATCH_FULL),
                        Err(e) => return Err(ring_exit(e)),
                    }
                }
                batch.commit();
                committed(side, seq + n);
                seq += n;
            }
        }
    }
    p.close().map_err(ring_exit)?;
    // Relaxed: read by the driver after `waitpid`.
    side.p_closed.store(1, Ordering::Relaxed);
    Ok(())
}

fn consumer_child(shared: CrashShared, spec: &ChildSpec, side: &Side) -> i32 {
    let mut consumer = match Consumer::new(shared) {
        Ok(c) => c,
        Err(e) => return ring_exit(e),
    };
    let mut state = Delivery {
        side,
        capacity: spec.capacity,
        incarnation: spec.incarnation,
        producer: None,
        stores_left: None,
    };
    let code = consume(&mut consumer, &mut state).err().unwrap_or(EXIT_OK);
    record_crossings(&side.consumer, consumer.shared());
    code
}

/// The consumer's record of what it delivered.
pub(super) struct Delivery<'a> {
    pub(super) side: &'a Side,
    pub(super) capacity: u64,
    pub(super) incarnation: u64,
    /// Producer of the last message delivered by this consumer.
    pub(super) producer: Option<u64>,
    /// Side-page stores this consumer may still make (`None`: no bound).
    /// Unit tests bound it to stop a consumer between any two of its stores,
    /// which is what a `SIGKILL` can do; children run unbounded.
    pub(super) stores_left: Option<u64>,
}

impl Delivery<'_> {
    /// Stores `value` into `word` of the side page, unless the store bound is
    /// spent ([`EXIT_STORES_SPENT`]).
    pub(super) fn put(&mut self, word: &AtomicU64, value: u64) -> Result<(), i32> {
        if let Some(left) = self.stores_left.as_mut() {
            if *left == 0 {
                return Err(EXIT_STORES_SPENT);
            }
            *left -= 1;
        }
        // Relaxed: this child is the only writer; the driver reads after
        // `waitpid`, which orders every store the child made before it.
        word.store(value, Ordering::Relaxed);
        Ok(())
    }

    /// Checks and records one message (the application "uses" it here).
    pub(super) fn deliver(&mut self, bytes: &[u8]) -> Result<(), i32> {
        let side = self.side;
        let Some((seq, producer)) = decode(bytes, self.capacity) else {
            // Relaxed: as in `put` (the child is the only writer).
            let torn = side.c_torn.load(Ordering::Relaxed);
            return self.put(&side.c_torn, torn + 1);
        };
        // Relaxed: as above.
        let last = side.c_last.load(Ordering::Relaxed);
        if last != 0 && seq != last {
            // Relaxed: as above.
            let order = side.c_order.load(Ordering::Relaxed);
            self.put(&side.c_order, order + 1)?;
        }
        if last == 0 || self.producer != Some(producer) {
            // Relaxed: as above.
            let at = side.log_len.load(Ordering::Relaxed) as usize;
            let Some(entry) = side.log.get(at) else {
                return Err(EXIT_LOG_FULL);
            };
            self.put(&entry.seq, seq)?;
            self.put(&entry.producer, producer)?;
            self.put(&entry.consumer, self.incarnation)?;
            self.put(&side.log_len, at as u64 + 1)?;
            self.producer = Some(producer);
        }
        // `c_last` is the delivery record: a message is delivered once it is
        // stored. `c_delivered` follows it, so the pair is opened first (the
        // opening store is `c_recording`) and closed after: a death in between
        // leaves what the driver needs to complete it.
        // Relaxed: as above.
        let delivered = side.c_delivered.load(Ordering::Relaxed) + 1;
        self.put(&side.c_recording_delivered, delivered)?;
        self.put(&side.c_recording, seq + 1)?;
        self.put(&side.c_last, seq + 1)?;
        self.put(&side.c_delivered, delivered)?;
        self.put(&side.c_recording, 0)
    }

    /// Records a release in doubt (before the release store).
    pub(super) fn pending_release(&mut self, pre_head: u64) -> Result<(), i32> {
        let side = self.side;
        self.put(&side.consumer.pre_index, pre_head)?;
        // Relaxed: as in `put`.
        let last = side.c_last.load(Ordering::Relaxed);
        self.put(&side.consumer.pending_end, last)?;
        self.put(&side.consumer.pending, 1)
    }

    /// Records a release done (after the release store).
    pub(super) fn released(&mut self) -> Result<(), i32> {
        let side = self.side;
        // Relaxed: as in `put`.
        let last = side.c_last.load(Ordering::Relaxed);
        self.put(&side.consumer.position, last)?;
        self.put(&side.consumer.pending, 0)
    }
}

fn consume(c: &mut Consumer<CrashShared>, d: &mut Delivery<'_>) -> Result<(), i32> {
    let mut reads = 0u64;
    loop {
        let take = read_plan(reads);
        reads += 1;
        let pre_head = c.position();
        if take == 1 {
            match c.read() {
                Ok(message) => {
                    d.deliver(&message)?;
                    d.pending_release(pre_head)?;
                    message.release();
                    d.released()?;
                }
                Err(ReadError::Empty) => {
                    reads -= 1;
                    c.wait_readable(Some(PARK)).map_err(ring_exit)?;
                }
                Err(ReadError::Closed) => break,
                Err(e) => return Err(ring_exit(e)),
            }
            continue;
        }
        // Start a batch only once a message is there, then wait in it for the
        // rest, so that each batch reads exactly `take` messages (or up to
        // the end of stream): the crossings stay the same in every run.
        if !c.wait_readable(Some(PARK)).map_err(ring_exit)? {
            reads -= 1;
            continue;
        }
        let mut batch = c.read_batch();
        let mut closed = false;
        let mut spins = 0u32;
        while (batch.len() as u64) < take {
            match batch.read() {
                Ok(message) => d.deliver(message)?,
                Err(ReadError::Empty) => {
                    spins += 1;
                    if spins < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
                Err(ReadError::Closed) => {
                    closed = true;
                    break;
                }
                Err(e) => return Err(ring_exit(e)),
            }
        }
        if !batch.is_empty() {
            d.pending_release(pre_head)?;
            batch.release();
            d.released()?;
        }
        if closed {
            break;
        }
    }
    // Relaxed: read by the driver after `waitpid`.
    d.side.c_done.store(1, Ordering::Relaxed);
    Ok(())
}
