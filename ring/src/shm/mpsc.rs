//! MPSC rings in POSIX shared memory: producers that each hold a slot, one
//! consumer, and the [`Liveness`] oracle over the slots' kernel-held leases.
//!
//! Taking a side, confirming the name and leaving are [`lifecycle`]'s, run
//! over [`PosixMpsc`] exactly as the SPSC sides run them over
//! [`Posix`](super::Posix). Every producer holds two locks of the segment
//! file: a *read* lock on byte 0 (the producer role, shared: "a producer is
//! here", the question the lifecycle asks for both kinds) and a write lock
//! on the byte of its slot ([`slot_lock_byte`](super::slot_lock_byte)),
//! taken with a non-blocking try over slots `0..max_producers`. The
//! consumer holds byte 1, as in SPSC.
//!
//! # Death of a producer
//!
//! The consumer finding an uncommitted claim `(slot, gen)` at `head` asks
//! [`SlotLeases::alive`]. The kernel drops the slot's lock only when the
//! open file description holding it is closed (its process died, or it
//! left), and a producer leaves only after its last access to its claims;
//! so:
//!
//! - slot lock free: the producer of every claim of that slot is gone: dead;
//! - slot lock held and the slot's generation is `gen`: alive (its holder is
//!   the claimer, or a successor that has not bumped the generation yet: we
//!   wait and ask again);
//! - slot lock held and the generation moved on past `gen`: a successor
//!   holds the slot, which it could take only after the claimer's lock was
//!   dropped: dead.
//!
//! Nothing here is a timeout: a producer stopped (`SIGSTOP`) holding a
//! claim keeps its lock and is waited for. The consumer parks for at most
//! [`PARK`] at a time, because a dying producer wakes nobody.

use core::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::vec::Vec;

use super::endpoint::{OpenMode, deadline, park_slice};
use super::lease::Lease;
use super::lifecycle;
use super::segment::{PosixMpsc, Segment};
use super::{Role, ShmError, validate_name};
use crate::layout::max_message;
use crate::mem::MemShared;
use crate::mpsc::layout::{Mpsc, gen_low, kind, kind_of};
use crate::mpsc::{
    Consumer, Grant, Liveness, PopValueError, Producer, PushError, Read, ReadError, Words,
};
use crate::sync::{NoHook, Ordering, Shared};

/// The view of an MPSC segment a side runs over.
pub type MpscView = MemShared<Arc<Segment>, NoHook, Mpsc>;

/// Producer slots of a segment created without saying how many.
pub const DEFAULT_PRODUCERS: u32 = 64;

/// Longest single park in the blocking calls; between parks the consumer
/// asks again whether the producer of a pending claim is alive.
pub const PARK: Duration = Duration::from_millis(10);

/// Whether the stream is closed and every claimed record released: the
/// stream is closed, `head` has reached the claim hint and the word at
/// `head` is free or the end of the stream.
pub(super) fn finished<O>(shared: &MemShared<O, NoHook, Mpsc>) -> bool {
    // Relaxed (all four): a decision about the name only; no record is read
    // on the strength of these values. A stale one makes the caller keep the
    // segment (a later leaver or `clean` removes it) or, for a record
    // claimed at this very moment, remove the name of a closed stream,
    // whose pushes fail anyway.
    let closed = shared.closed().load(Ordering::Relaxed) != 0;
    let hint = shared.tail_hint().load(Ordering::Relaxed);
    let head = shared.head().load(Ordering::Relaxed);
    let word = shared.record_word(head).load(Ordering::Relaxed);
    closed && head >= hint && matches!(kind_of(word), kind::FREE | kind::END)
}

/// Takes `role` of the MPSC segment `name` as `mode` says, creating it with
/// `producers` slots if it creates it.
fn acquire(
    name: &str,
    role: Role,
    mode: OpenMode,
    producers: u32,
) -> Result<(Arc<Segment>, Lease), ShmError> {
    let name = validate_name(name)?;
    let (segment, lease) = lifecycle::acquire(&PosixMpsc { producers }, &name, role, mode)?;
    Ok((Arc::new(segment), lease))
}

/// Lets go of `lease` and removes the name when we leave last and the
/// stream is finished ([`lifecycle::leave`]).
fn leave(segment: &Segment, lease: Lease) {
    let role = lease.role();
    let ns = PosixMpsc { producers: 1 };
    let finished = || {
        segment
            .checked_mpsc_view(())
            .is_ok_and(|(view, _)| finished(&view))
    };
    lifecycle::leave(&ns, segment, segment.name(), role, lease, finished);
}

/// The [`Liveness`] of a shared-memory MPSC ring: the kernel-held lease of
/// each producer slot and the slot's generation (see the module doc).
#[derive(Debug)]
pub struct SlotLeases {
    segment: Arc<Segment>,
    view: MpscView,
}

impl SlotLeases {
    /// Whether the slot's generation (low bits) has moved on past `generation`:
    /// a later holder bumped it. Half the 8-bit range counts as "past"; the
    /// other half as "not yet" (a value older than the claim's), so that a
    /// generation word read late is never taken for a successor's.
    fn moved_on(current: u32, generation: u32) -> bool {
        let ahead = gen_low(current.wrapping_sub(generation));
        (1..=127).contains(&ahead)
    }
}

// `alive` returns `false` only when the lock byte of `slot` is free,
// or is held while the slot's generation has moved on past `generation`.
// Every claim of `slot` is made while its producer holds that lock (taken in
// `ShmMpscProducer::with_slots` before `Producer::new`, released in its
// `Drop` or `finish` after its last access to its claims, or by the kernel
// when its last descriptor closes at its death). A free lock therefore means
// the claimer made its last access to the claim before the lock was dropped,
// which happened before our `F_OFD_GETLK` saw it free. A held lock with a
// generation moved on means a successor took the lock, which it could only
// do after the claimer's lock was dropped: the same argument. An error from
// the kernel counts as alive: the claim is waited for, never skipped.
// SAFETY: by the argument above, `false` comes only after the claimer's last access.
unsafe impl Liveness for SlotLeases {
    fn alive(&self, slot: u8, generation: u32) -> bool {
        match self.segment.slot_held(slot) {
            Ok(false) => false,
            Err(_) => true,
            Ok(true) => {
                // Relaxed: compared only. A successor bumps the generation
                // after it takes the lock we saw held; a value read too
                // early looks "not moved on", and we ask again later.
                let current = self.view.slot_gen(slot).load(Ordering::Relaxed);
                !Self::moved_on(current, generation)
            }
        }
    }
}

/// What keeps a claimed MPSC side's memory and role (see [`claim_slot`]
/// and [`claim_consumer`]): the segment, the role's lease and, for a
/// producer, its slot's lease. Fields drop in order: the slot first, as
/// [`ShmMpscProducer`] lets go of it.
#[derive(Debug)]
pub struct MpscClaim {
    slot_lease: Option<Lease>,
    lease: Lease,
    segment: Arc<Segment>,
}

impl MpscClaim {
    /// The mapped segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The role's lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// A producer's slot lease (`None` for the consumer).
    pub fn slot_lease(&self) -> Option<&Lease> {
        self.slot_lease.as_ref()
    }
}

/// Takes a free producer slot of the MPSC segment `name` as
/// [`ShmMpscProducer::with_slots`] does, and returns the view of the segment
/// and the slot, so that a caller can run [`Producer::new`] over its own
/// [`Shared`] wrapping the view (with a crash hook, say); `Producer::new`
/// bumps the slot's generation. The view owns both leases. Unlike the
/// `ShmMpsc*` types, nothing here closes the stream or removes the name.
pub fn claim_slot(
    name: &str,
    mode: OpenMode,
    producers: u32,
) -> Result<(MemShared<MpscClaim, NoHook, Mpsc>, u8), ShmError> {
    let (segment, lease) = acquire(name, Role::Producer, mode, producers)?;
    let (_, max) = segment.checked_mpsc_view(())?;
    let mut taken = None;
    for slot in 0..max.min(crate::mpsc::layout::MAX_SLOTS as u32) as u8 {
        if let Some(slot_lease) = Lease::try_slot(segment.fd(), slot)? {
            taken = Some((slot, slot_lease));
            break;
        }
    }
    let Some((slot, slot_lease)) = taken else {
        return Err(ShmError::SlotsTaken { max });
    };
    let owner = MpscClaim {
        slot_lease: Some(slot_lease),
        lease,
        segment: Arc::clone(&segment),
    };
    let (view, _) = segment.checked_mpsc_view(owner)?;
    Ok((view, slot))
}

/// Takes the consumer role of the MPSC segment `name` as
/// [`ShmMpscConsumer::with_slots`] does, and returns the view of the
/// segment and the [`SlotLeases`] oracle, for [`Consumer::new`] over the
/// caller's own [`Shared`]. Nothing here removes the name.
pub fn claim_consumer(
    name: &str,
    mode: OpenMode,
    producers: u32,
) -> Result<(MemShared<MpscClaim, NoHook, Mpsc>, SlotLeases), ShmError> {
    let (segment, lease) = acquire(name, Role::Consumer, mode, producers)?;
    let (oracle_view, _) = segment.checked_mpsc_view(Arc::clone(&segment))?;
    let liveness = SlotLeases {
        segment: Arc::clone(&segment),
        view: oracle_view,
    };
    let owner = MpscClaim {
        slot_lease: None,
        lease,
        segment: Arc::clone(&segment),
    };
    let (view, _) = segment.checked_mpsc_view(owner)?;
    Ok((view, liveness))
}

/// One producer of an MPSC ring in shared memory, holding one slot.
#[derive(Debug)]
pub struct ShmMpscProducer {
    inner: Producer<MpscView>,
    segment: Arc<Segment>,
    slot_lease: Option<Lease>,
    presence: Option<Lease>,
}

impl ShmMpscProducer {
    /// Takes a free producer slot of the MPSC segment `name` (see
    /// [`OpenMode`]); a segment this call creates has
    /// [`DEFAULT_PRODUCERS`] slots.
    pub fn new(name: &str, mode: OpenMode) -> Result<Self, ShmError> {
        Self::with_slots(name, mode, DEFAULT_PRODUCERS)
    }

    /// As [`new`](Self::new); a segment this call creates has `producers`
    /// slots (`1..=MAX_SLOTS`). All slots held by live processes is
    /// [`ShmError::SlotsTaken`]; an SPSC segment is [`ShmError::WrongKind`].
    pub fn with_slots(name: &str, mode: OpenMode, producers: u32) -> Result<Self, ShmError> {
        let (segment, presence) = acquire(name, Role::Producer, mode, producers)?;
        match Self::take_slot(&segment) {
            Ok((inner, slot_lease)) => Ok(ShmMpscProducer {
                inner,
                segment,
                slot_lease: Some(slot_lease),
                presence: Some(presence),
            }),
            Err(e) => {
                leave(&segment, presence);
                Err(e)
            }
        }
    }

    /// Takes the first free slot's lease, then its producer (which bumps the
    /// slot's generation).
    fn take_slot(segment: &Arc<Segment>) -> Result<(Producer<MpscView>, Lease), ShmError> {
        let (view, max) = segment.checked_mpsc_view(Arc::clone(segment))?;
        let mut taken = None;
        for slot in 0..max.min(crate::mpsc::layout::MAX_SLOTS as u32) as u8 {
            if let Some(lease) = Lease::try_slot(segment.fd(), slot)? {
                taken = Some((slot, lease));
                break;
            }
        }
        let Some((slot, lease)) = taken else {
            return Err(ShmError::SlotsTaken { max });
        };
        let inner = Producer::new(view, slot).map_err(ShmError::MpscOpen)?;
        // Relaxed: a closed stream only makes us refuse to join it.
        if inner.shared().closed().load(Ordering::Relaxed) != 0 {
            return Err(ShmError::MpscPush(PushError::Closed));
        }
        Ok((inner, lease))
    }

    /// The mapped segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The slot this producer holds.
    pub fn slot(&self) -> u8 {
        self.inner.slot()
    }

    /// The low bits of this producer's slot generation.
    pub fn generation(&self) -> u32 {
        self.inner.generation()
    }

    /// The [`Producer`] itself. Leaving stays with this endpoint.
    pub fn as_producer_mut(&mut self) -> &mut Producer<MpscView> {
        &mut self.inner
    }

    /// [`Producer::reserve`].
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_, MpscView>, PushError> {
        self.inner.reserve(len)
    }

    /// [`Producer::push`].
    pub fn push(&mut self, message: &[u8]) -> Result<(), PushError> {
        self.inner.push(message)
    }

    /// [`Producer::push_value`].
    pub fn push_value<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        value: &T,
    ) -> Result<(), PushError> {
        self.inner.push_value(value)
    }

    /// Copies `message` into the ring, waiting for room up to `timeout`
    /// (`None`: forever): spin, then park on the futex word for at most
    /// [`PARK`] at a time.
    pub fn push_blocking(
        &mut self,
        message: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(), ShmError> {
        let deadline = deadline(timeout);
        loop {
            match self.inner.push(message) {
                Err(PushError::Full) => {}
                other => return other.map_err(ShmError::MpscPush),
            }
            let park = park_slice(deadline)?.min(PARK);
            self.inner
                .wait_writable(Some(park))
                .map_err(ShmError::MpscPush)?;
        }
    }

    /// Closes the stream for every producer ([`Producer::close`]).
    pub fn close(&mut self) -> Result<(), ShmError> {
        self.inner.close().map_err(ShmError::MpscPush)
    }

    /// Leaves, closing the stream if no other producer is attached: the
    /// slot and the producer role are let go first, then the role is asked
    /// for, so that of producers finishing together at least the last one
    /// closes. Returns whether this call closed the stream. (A producer
    /// attaching just then finds the stream closed.)
    pub fn finish(mut self) -> Result<bool, ShmError> {
        drop(self.slot_lease.take());
        let Some(presence) = self.presence.take() else {
            return Ok(false);
        };
        drop(presence);
        let last = !self.segment.role_held(Role::Producer)?;
        if last {
            self.inner.close().map_err(ShmError::MpscPush)?;
        }
        let ns = PosixMpsc { producers: 1 };
        let segment = &*self.segment;
        lifecycle::remove_name_unless(&ns, segment, segment.name(), |f| {
            let finished = f
                .checked_mpsc_view(())
                .is_ok_and(|(view, _)| finished(&view));
            Ok(!finished || !f.ever_claimed(Role::Consumer) || f.role_held(Role::Consumer)?)
        })?;
        Ok(last)
    }

    /// Size of the data region in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.shared().capacity()
    }

    /// [`Producer::max_message`].
    pub fn max_message(&self) -> usize {
        self.inner.max_message()
    }
}

impl Drop for ShmMpscProducer {
    fn drop(&mut self) {
        // The slot first: our claims are not touched after this point.
        drop(self.slot_lease.take());
        if let Some(presence) = self.presence.take() {
            leave(&self.segment, presence);
        }
    }
}

/// The consumer of an MPSC ring in shared memory.
#[derive(Debug)]
pub struct ShmMpscConsumer {
    inner: Consumer<MpscView, SlotLeases>,
    segment: Arc<Segment>,
    lease: Option<Lease>,
    producers_came: Cell<bool>,
}

impl ShmMpscConsumer {
    /// Takes the consumer role of the MPSC segment `name` (see
    /// [`OpenMode`]); a segment this call creates has [`DEFAULT_PRODUCERS`]
    /// slots.
    pub fn new(name: &str, mode: OpenMode) -> Result<Self, ShmError> {
        Self::with_slots(name, mode, DEFAULT_PRODUCERS)
    }

    /// As [`new`](Self::new); a segment this call creates has `producers`
    /// slots.
    pub fn with_slots(name: &str, mode: OpenMode, producers: u32) -> Result<Self, ShmError> {
        let (segment, lease) = acquire(name, Role::Consumer, mode, producers)?;
        let made = (|| {
            let (view, _) = segment.checked_mpsc_view(Arc::clone(&segment))?;
            let (oracle_view, _) = segment.checked_mpsc_view(Arc::clone(&segment))?;
            let liveness = SlotLeases {
                segment: Arc::clone(&segment),
                view: oracle_view,
            };
            Consumer::new(view, liveness).map_err(ShmError::MpscOpen)
        })();
        match made {
            Ok(inner) => Ok(ShmMpscConsumer {
                inner,
                segment,
                lease: Some(lease),
                producers_came: Cell::new(false),
            }),
            Err(e) => {
                leave(&segment, lease);
                Err(e)
            }
        }
    }

    /// The mapped segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The [`Consumer`] itself. Leaving stays with this endpoint.
    pub fn as_consumer_mut(&mut self) -> &mut Consumer<MpscView, SlotLeases> {
        &mut self.inner
    }

    /// [`Consumer::read`]: a dead producer's claim at `head` is skipped, a
    /// live one's is `Pending`.
    pub fn read(&mut self) -> Result<Read<'_, MpscView, SlotLeases>, ReadError> {
        self.inner.read()
    }

    /// [`Consumer::pop`].
    pub fn pop(&mut self) -> Result<Vec<u8>, ReadError> {
        self.inner.pop()
    }

    /// [`Consumer::pop_value`].
    pub fn pop_value<T: zerocopy::FromBytes>(&mut self) -> Result<T, PopValueError> {
        self.inner.pop_value()
    }

    /// Whether a producer has ever attached and none is attached now.
    pub fn producers_gone(&self) -> Result<bool, ShmError> {
        // The generations first: a producer bumps its slot's generation
        // after it takes the role, and keeps the role until it leaves, so a
        // generation seen before the role is found free belongs to one that
        // has left. (The other order takes a producer attaching between the
        // two looks for one gone.)
        let claimed = self.segment.ever_claimed(Role::Producer);
        if self.segment.role_held(Role::Producer)? {
            self.producers_came.set(true);
            return Ok(false);
        }
        if claimed {
            self.producers_came.set(true);
        }
        Ok(self.producers_came.get())
    }

    /// Waits up to `timeout` (`None`: forever) until [`read`](Self::read)
    /// may find something: a record at `head` that is not a live producer's
    /// claim, or the end of stream. Parks for at most [`PARK`] at a time and
    /// asks the slots' leases again after each. Every producer gone without
    /// closing is `Err(PeerDied)` once every committed message was read.
    pub fn wait_message(&mut self, timeout: Option<Duration>) -> Result<(), ShmError> {
        self.wait_until(deadline(timeout))
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<(), ShmError> {
        loop {
            let park = park_slice(deadline)?.min(PARK);
            if self
                .inner
                .wait_readable(Some(park))
                .map_err(ShmError::MpscRead)?
            {
                return Ok(());
            }
            // A producer's last commit happens before its role is let go,
            // so look for a record again after finding them all gone.
            if self.producers_gone()?
                && !self
                    .inner
                    .wait_readable(Some(Duration::ZERO))
                    .map_err(ShmError::MpscRead)?
            {
                return Err(ShmError::PeerDied(Role::Producer));
            }
        }
    }

    /// Waits up to `timeout` (`None`: forever) for the next message and
    /// reads it in place. End of stream is `Err(MpscRead(Closed))`.
    pub fn read_blocking(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Read<'_, MpscView, SlotLeases>, ShmError> {
        let deadline = deadline(timeout);
        loop {
            self.wait_until(deadline)?;
            // Ready may mean a dead producer's claim, which `read` skips;
            // the next record may then not be there yet.
            match self.inner.read() {
                Err(ReadError::Empty | ReadError::Pending { .. }) => continue,
                _ => break,
            }
        }
        self.inner.read().map_err(ShmError::MpscRead)
    }

    /// [`read_blocking`](Self::read_blocking), copied out and released.
    pub fn pop_blocking(&mut self, timeout: Option<Duration>) -> Result<Vec<u8>, ShmError> {
        let read = self.read_blocking(timeout)?;
        let out = read.to_vec();
        read.release();
        Ok(out)
    }

    /// Size of the data region in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.shared().capacity()
    }

    /// Largest message.
    pub fn max_message(&self) -> u64 {
        max_message(self.capacity())
    }

    /// [`Consumer::position`].
    pub fn position(&self) -> u64 {
        self.inner.position()
    }
}

impl Drop for ShmMpscConsumer {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            leave(&self.segment, lease);
        }
    }
}

/// One producer slot as [`inspect`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotState {
    /// The slot.
    pub slot: u8,
    /// Whether a live process holds its lease.
    pub held: bool,
    /// Its generation (bumped by each producer taking it).
    pub generation: u32,
}

/// What [`inspect`] reads from a live MPSC segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpscInspection {
    /// Normalised name.
    pub name: std::string::String,
    /// Data region size.
    pub capacity: u64,
    /// Largest message.
    pub max_message: u64,
    /// Producer slots.
    pub max_producers: u32,
    /// Released position.
    pub head: u64,
    /// Claim hint.
    pub tail: u64,
    /// End-of-stream flag.
    pub closed: bool,
    /// Consumer generation.
    pub consumer_gen: u32,
    /// Whether a live process holds the consumer role.
    pub consumer_held: bool,
    /// Every slot, in order.
    pub slots: Vec<SlotState>,
}

/// Reads the header, the slot table and every lease of the MPSC segment
/// `name` (waiting, as an opener does, for a creator still at work). An SPSC
/// segment is [`ShmError::WrongKind`].
pub fn inspect(name: &str) -> Result<MpscInspection, ShmError> {
    let name = validate_name(name)?;
    let segment = lifecycle::open(&PosixMpsc { producers: 1 }, &name)?;
    let (view, max_producers) = segment.checked_mpsc_view(())?;
    let mut slots = Vec::with_capacity(max_producers as usize);
    for slot in 0..max_producers.min(crate::mpsc::layout::MAX_SLOTS as u32) as u8 {
        slots.push(SlotState {
            slot,
            held: segment.slot_held(slot)?,
            // Relaxed: a snapshot for display.
            generation: view.slot_gen(slot).load(Ordering::Relaxed),
        });
    }
    let capacity = view.capacity();
    // Relaxed (all loads below): a snapshot for display; no other memory is
    // read on the strength of these values.
    let consumer_gen = view
        .word32(crate::mpsc::layout::CONSUMER_GEN_OFFSET)
        .load(Ordering::Relaxed);
    Ok(MpscInspection {
        name,
        capacity,
        max_message: max_message(capacity),
        max_producers,
        head: view.head().load(Ordering::Relaxed),
        tail: view.tail_hint().load(Ordering::Relaxed),
        closed: view.closed().load(Ordering::Relaxed) != 0,
        consumer_gen,
        consumer_held: segment.role_held(Role::Consumer)?,
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_moved_on_is_one_ahead_never_one_behind() {
        assert!(!SlotLeases::moved_on(5, 5));
        assert!(SlotLeases::moved_on(6, 5));
        assert!(SlotLeases::moved_on(0, 255), "wraps at 8 bits");
        assert!(
            !SlotLeases::moved_on(4, 5),
            "a stale read is not a successor"
        );
        assert!(!SlotLeases::moved_on(5 + 128, 5));
    }
}
