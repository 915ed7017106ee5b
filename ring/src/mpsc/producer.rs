//! A producing side: claims a record with one compare-exchange of its
//! header word (owner included), writes the payload in place, commits with
//! one Release store of the same word.

use core::ops::{Deref, DerefMut};
use core::time::Duration;

use super::layout::{Claim, MAX_SLOTS, free_word, gen_low, kind, kind_of, lap_low};
use super::{Corruption, OpenError, PushError, Words, claim_fits, lap};
use crate::bytes::copy_bytes;
use crate::layout::{MAX_POSITION, RECORD_ALIGN, RECORD_HEADER, max_message, record_size};
use crate::sync::{CrashPoint, Ordering, Shared, Word32, Word64};

/// One producer of an MPSC ring, holding one slot.
#[derive(Debug)]
pub struct Producer<S: Shared> {
    shared: S,
    capacity: u64,
    slot: u8,
    /// The low bits of this producer's slot generation, put in its claims.
    gen_low: u32,
    /// Last `head` seen; only grows.
    cached_head: u64,
    poisoned: Option<Corruption>,
    closed: bool,
}

/// What `claim` found: where a claimed message record lies.
#[derive(Clone, Copy, Debug)]
struct Place {
    position: u64,
    claim: Claim,
}

impl<S: Shared> Producer<S> {
    /// Takes producer slot `slot` of `shared`: bumps the slot's generation
    /// and puts it (low bits) in every claim, so that the consumer asks its
    /// [`super::Liveness`] about this producer and not a predecessor.
    pub fn new(shared: S, slot: u8) -> Result<Self, OpenError> {
        if slot as usize >= MAX_SLOTS {
            let max = MAX_SLOTS as u32;
            return Err(OpenError::BadSlot { slot, max });
        }
        // Relaxed: a counter; whoever hands the slot over (a lease, a join)
        // orders a predecessor's accesses before ours.
        let generation = shared.slot_gen(slot).fetch_add(1, Ordering::Relaxed);
        // Relaxed: only where `wait_writable` starts from; `claim` reloads
        // `head` with Acquire before it touches the ring.
        let head = shared.head().load(Ordering::Relaxed);
        if head % RECORD_ALIGN != 0 || head > MAX_POSITION {
            return Err(OpenError::Corrupted(Corruption::Head));
        }
        // Relaxed: a closed stream only makes this producer refuse to push.
        let closed = shared.closed().load(Ordering::Relaxed) != 0;
        Ok(Producer {
            capacity: shared.capacity(),
            shared,
            slot,
            gen_low: gen_low(generation.wrapping_add(1)),
            cached_head: head,
            poisoned: None,
            closed,
        })
    }

    /// The shared state this producer runs over.
    pub fn shared(&self) -> &S {
        &self.shared
    }

    /// This producer's slot.
    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// The low bits of this producer's slot generation (what its claims carry).
    pub fn generation(&self) -> u32 {
        self.gen_low
    }

    /// Largest payload [`reserve`](Self::reserve) accepts.
    pub fn max_message(&self) -> usize {
        max_message(self.capacity) as usize
    }

    fn poison(&mut self, what: Corruption) -> PushError {
        self.poisoned = Some(what);
        PushError::Corrupted(what)
    }

    fn usable(&mut self) -> Result<(), PushError> {
        if let Some(what) = self.poisoned {
            return Err(PushError::Corrupted(what));
        }
        // Relaxed: a closed stream only makes us refuse; we read nothing
        // the closing producer wrote.
        if self.closed || self.shared.closed().load(Ordering::Relaxed) != 0 {
            self.closed = true;
            return Err(PushError::Closed);
        }
        Ok(())
    }

    /// Reloads `head` and checks it: aligned, not behind the last seen, and
    /// within the position limit.
    fn refresh_head(&mut self) -> Result<u64, PushError> {
        // Acquire: pairs with the Release store in `Consumer::release_to`:
        // the consumer's stamps of the released words, and its reads of them,
        // happen before we read or claim them.
        let untrusted_head = self.shared.head().load(Ordering::Acquire);
        if untrusted_head % RECORD_ALIGN != 0
            || untrusted_head < self.cached_head
            || untrusted_head > MAX_POSITION
        {
            return Err(self.poison(Corruption::Head));
        }
        self.cached_head = untrusted_head;
        Ok(untrusted_head)
    }

    /// A word at `position` that is not what it may be given the `head` we
    /// saw. If `head` has passed `position` meanwhile, we were behind: walk
    /// on from `head`. If not: with `corrupt`, the segment is corrupt;
    /// without, the word may belong to a later lap (a consumer that stamped
    /// it but has not published `head` yet, or a claim made after that):
    /// after a few reloads of `head`, full for now. (A scribbled lap is
    /// reported by the consumer, which reads every record's lap.)
    fn behind(&mut self, position: u64, corrupt: Option<Corruption>) -> Result<u64, PushError> {
        let reloads = if corrupt.is_some() { 1 } else { 1 + S::SPINS };
        for _ in 0..reloads {
            let head = self.refresh_head()?;
            if head > position {
                return Ok(head);
            }
            self.shared.spin();
        }
        match corrupt {
            Some(what) => Err(self.poison(what)),
            None => Err(PushError::Full),
        }
    }

    /// Claims a record of `len` payload bytes: walks from `max(tail hint,
    /// head)` over the records claimed in this lap, and claims the first
    /// free place with one compare-exchange of its header word. At the end
    /// of the data region it first claims a padding record to the end.
    fn claim(&mut self, len: usize) -> Result<Place, PushError> {
        self.usable()?;
        let max = self.max_message();
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let record = record_size(len as u64);
        // Relaxed: only a hint. A value past `head + capacity` (possible
        // with the `head` we load below, which may be older than the one its
        // producer saw) is ignored; every position is checked by reading
        // its header word.
        let untrusted_hint = self.shared.tail_hint().load(Ordering::Relaxed);
        let head = self.refresh_head()?;
        if untrusted_hint % RECORD_ALIGN != 0 {
            return Err(self.poison(Corruption::TailHint));
        }
        let hint = if untrusted_hint > head + self.capacity {
            head
        } else {
            untrusted_hint
        };
        let mut position = hint.max(head);
        loop {
            let offset = position & (self.capacity - 1);
            let to_end = self.capacity - offset;
            let padding = record > to_end;
            let size = if padding { to_end } else { record };
            if position + size > self.cached_head + self.capacity {
                let head = self.refresh_head()?;
                position = position.max(head);
                if position + size > head + self.capacity {
                    return Err(PushError::Full);
                }
                continue;
            }
            let this_lap = lap(position, self.capacity);
            let word_ref = self.shared.record_word(position);
            // Relaxed: what we do with the word needs nothing else that its
            // writer wrote. A free word of this lap was stamped before the
            // `head` store we loaded with Acquire; a claim is only skipped
            // by its length (its payload is the consumer's business).
            let word = word_ref.load(Ordering::Relaxed);
            if kind_of(word) == kind::FREE {
                let free = free_word(this_lap);
                if word != free {
                    let older = (word < free).then_some(Corruption::RecordKind);
                    position = self.behind(position, older)?;
                    continue;
                }
                let claim = Claim {
                    kind: if padding {
                        kind::PADDING
                    } else {
                        kind::UNCOMMITTED
                    },
                    slot: self.slot,
                    gen_low: self.gen_low,
                    lap_low: lap_low(this_lap),
                    len: if padding {
                        (to_end - RECORD_HEADER) as u32
                    } else {
                        len as u32
                    },
                };
                // Relaxed (both): as the load above. The claim publishes
                // nothing (the payload is published by the commit's Release
                // store, a padding record carries none), and the consumer's
                // last reads of these bytes happen before the `head` store
                // we loaded with Acquire.
                let won = word_ref.compare_exchange(
                    free,
                    claim.word(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                if won.is_err() {
                    continue; // claimed by another producer: read it
                }
                self.advance_hint(position + size);
                if padding {
                    // A consumer parked at this place may now skip it.
                    self.wake_consumer();
                    position += size;
                    continue;
                }
                self.shared.crash_point(CrashPoint::AfterReserve);
                return Ok(Place { position, claim });
            }
            let found = Claim::from_word(word);
            let what = if found.lap_low != lap_low(this_lap) {
                position = self.behind(position, None)?;
                continue;
            } else if found.kind == kind::END {
                // The consumer ended the stream here: nothing after it is read.
                self.closed = true;
                return Err(PushError::Closed);
            } else if found.kind > kind::END {
                Some(Corruption::RecordKind)
            } else if !claim_fits(found.kind, found.len, to_end, self.capacity) {
                Some(Corruption::RecordLength)
            } else {
                None
            };
            position = match what {
                Some(what) => self.behind(position, Some(what))?,
                None if found.kind == kind::PADDING => position + to_end,
                None => position + record_size(u64::from(found.len)),
            };
        }
    }

    /// Moves the `tail` hint forward to `end` unless it is already past it.
    fn advance_hint(&self, end: u64) {
        let hint = self.shared.tail_hint();
        // Relaxed: only the first guess of the exchange below.
        let mut current = hint.load(Ordering::Relaxed);
        while current < end {
            // Relaxed (both): a hint; `claim` checks what it reads.
            match hint.compare_exchange(current, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
    }

    /// Reserves a `len`-byte message and gives it to write in place;
    /// [`Grant::commit`] sends it, dropping the grant marks it skipped.
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_, S>, PushError> {
        let place = self.claim(len)?;
        let offset = (place.position & (self.capacity - 1)) + RECORD_HEADER;
        // SAFETY: `claim` checked that the record fits before the end of the
        // data region; the claim makes its payload bytes ours until we
        // commit or skip it.
        let (access, ptr) = unsafe { self.shared.data(offset as usize, len, true) };
        Ok(Grant {
            producer: self,
            place,
            ptr,
            len,
            access: Some(access),
        })
    }

    /// Copies `message` into the ring and commits it.
    pub fn push(&mut self, message: &[u8]) -> Result<(), PushError> {
        let mut grant = self.reserve(message.len())?;
        let half = message.len() / 2;
        copy_bytes(&mut grant[..half], &message[..half]);
        grant.producer.shared.crash_point(CrashPoint::MidPayload);
        copy_bytes(&mut grant[half..], &message[half..]);
        grant.commit();
        Ok(())
    }

    /// Pushes the bytes of a value as one message.
    pub fn push_value<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        value: &T,
    ) -> Result<(), PushError> {
        self.push(value.as_bytes())
    }

    /// Closes the stream for every producer: the consumer reads what was
    /// committed before, then [`super::ReadError::Closed`]; pushes fail with
    /// [`PushError::Closed`] once a producer sees the flag or the end record
    /// the consumer puts at the first free place. A push racing with the
    /// close is either delivered before the end or refused, never lost
    /// after it.
    pub fn close(&mut self) -> Result<(), PushError> {
        if let Some(what) = self.poisoned {
            return Err(PushError::Corrupted(what));
        }
        self.shared.crash_point(CrashPoint::BeforeClose);
        // Relaxed: the flag only asks the consumer to end the stream at the
        // first free place; its exchange there (`Consumer::find`), not this
        // store, orders the end after every commit. The SeqCst fence in
        // `wake_consumer` makes a parked consumer see it.
        self.shared.closed().store(1, Ordering::Relaxed);
        self.closed = true;
        self.wake_consumer();
        Ok(())
    }

    fn wake_consumer(&self) {
        // SeqCst fence: orders our commit (or close) before the load of
        // `consumer_wait`; pairs with the fence in `Consumer::wait_readable`
        // between its store of `consumer_wait` and its reload of the word.
        self.shared.fence_seq_cst();
        // Relaxed: ordered by the fence above.
        if self.shared.consumer_wait().load(Ordering::Relaxed) != 0 {
            // Relaxed: the futex call orders it. Cleared before the wake, so
            // that a consumer about to park on it does not sleep past this
            // wake (its futex wait finds the word changed). A clear that
            // lands after the consumer's next announcement only wakes it
            // once too often.
            self.shared.consumer_wait().store(0, Ordering::Relaxed);
            self.shared.wake(self.shared.consumer_wait());
        }
    }

    /// Waits (spin, then park up to `park`) until `head` moves past where it
    /// was when a push found the ring full. `Ok(true)`: it moved (retry).
    ///
    /// With a consumer in another process, pass a bounded `park`.
    pub fn wait_writable(&mut self, park: Option<Duration>) -> Result<bool, PushError> {
        self.usable()?;
        let seen = self.cached_head;
        for _ in 0..S::SPINS {
            if self.refresh_head()? != seen {
                return Ok(true);
            }
            self.shared.spin();
        }
        // Relaxed: ordered by the fence below.
        self.shared.producer_wait().store(1, Ordering::Relaxed);
        // SeqCst fence: orders the store of `producer_wait` before the reload
        // of `head`; pairs with the fence in `Consumer::release_to`.
        self.shared.fence_seq_cst();
        if self.refresh_head()? == seen {
            self.shared.park(self.shared.producer_wait(), 1, park);
        }
        // The word is left as it is: only the consumer clears it (before it
        // wakes us). A producer clearing it could erase the announcement of
        // another producer about to park, which would then never be woken.
        Ok(self.refresh_head()? != seen)
    }
}

/// A claimed record, written in place; [`commit`](Grant::commit) sends it,
/// dropping it marks it skipped (the consumer passes over it).
#[derive(Debug)]
pub struct Grant<'a, S: Shared> {
    producer: &'a mut Producer<S>,
    place: Place,
    ptr: *mut u8,
    len: usize,
    access: Option<S::Access>,
}

impl<S: Shared> Grant<'_, S> {
    /// Makes the message visible to the consumer: one Release store of the
    /// record's header word (the commit point).
    pub fn commit(mut self) {
        self.finish(kind::MESSAGE);
    }

    /// Leaves the claim uncommitted, as a producer killed now would: ends
    /// the borrow of the payload and nothing else (no commit, no skip). The
    /// consumer waits at this record until its [`super::Liveness`] says the
    /// producer is dead; so this producer must not be used again. For crash
    /// tests.
    pub fn abandon(mut self) {
        self.access = None;
        core::mem::forget(self);
    }

    /// The position of the claimed record.
    pub fn position(&self) -> u64 {
        self.place.position
    }

    fn finish(&mut self, kind: u64) {
        // The borrow of the payload ends before the commit point: after it,
        // the bytes are the consumer's.
        if self.access.take().is_none() {
            return;
        }
        let producer = &mut *self.producer;
        producer.shared.crash_point(CrashPoint::BeforeCommit);
        let word = producer.shared.record_word(self.place.position);
        // Release: publishes the payload written above; pairs with the
        // Acquire load of the word in `Consumer::find`.
        word.store(self.place.claim.with_kind(kind).word(), Ordering::Release);
        producer.shared.crash_point(CrashPoint::AfterCommit);
        producer.wake_consumer();
    }
}

impl<S: Shared> Drop for Grant<'_, S> {
    fn drop(&mut self) {
        self.finish(kind::SKIPPED);
    }
}

impl<S: Shared> Deref for Grant<'_, S> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points at the `len` payload bytes of our claim, which
        // only this grant touches until it commits or skips.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<S: Shared> DerefMut for Grant<'_, S> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}
