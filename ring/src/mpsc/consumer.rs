//! The consuming side: reads the header word at `head`, delivers committed
//! records in place, skips padding, given-up and dead producers' records,
//! and gives bytes back by stamping their words free for the next lap and
//! one Release store of `head`.

use core::ops::Deref;
use core::time::Duration;

use super::layout::{Claim, free_word, kind, kind_of, lap_low};
use super::{Corruption, Liveness, OpenError, PopValueError, ReadError, Words, claim_fits, lap};
use crate::bytes::copy_bytes;
use crate::layout::{MAX_POSITION, RECORD_ALIGN, RECORD_HEADER, record_size};
use crate::sync::{CrashPoint, Ordering, Shared, Word32, Word64};

/// The consumer of an MPSC ring.
#[derive(Debug)]
pub struct Consumer<S: Shared, L: Liveness> {
    shared: S,
    liveness: L,
    capacity: u64,
    /// Released position; equals the segment's `head` unless a scribbler changed it.
    head: u64,
    poisoned: Option<Corruption>,
}

/// Completes the release of a consumer that died inside
/// [`Consumer::release_to`] after it began stamping (step 3 of the consumer
/// in `docs/LAYOUT.md`), and returns the `head` to resume from.
///
/// Such a consumer first turned every message record of the released
/// bytes into a skipped one, then stamped their words "free in lap + 1"
/// from the end down, and died before its store of `head`. From `head`
/// there are then skipped (or padding) records, whole, then words stamped
/// "free in lap + 1" up to where its release ended. Only a cut release
/// leaves a word at or past the published `head` stamped for its *next*
/// lap (a word there is otherwise free in its own lap or a claim of this
/// lap), so a stamped word found on that walk is the sign, and the first
/// word that is neither stamped nor a skipped or padding record ends it.
/// The release is then done again (the stamps are idempotent). Without a
/// stamped word nothing changes: skipped records are passed by `find` as
/// always, and a message record whose header was not yet turned is
/// delivered again, whole (no stamp reached it).
fn finish_cut_release<S: Shared>(shared: &S, head: u64) -> u64 {
    let capacity = shared.capacity();
    let mut at = head;
    let mut end = head;
    while at < head + capacity {
        let offset = at & (capacity - 1);
        let to_end = capacity - offset;
        let this_lap = lap(at, capacity);
        // Relaxed: the previous consumer's stores are ordered before this
        // load by the role hand-over (as for `head` in `new`); no producer
        // writes at or past `head` before `head` moves, within this lap.
        let word = shared.record_word(at).load(Ordering::Relaxed);
        if word == free_word(this_lap + 1) {
            at += RECORD_ALIGN;
            end = at;
            continue;
        }
        let claim = Claim::from_word(word);
        let passable = matches!(kind_of(word), kind::SKIPPED | kind::PADDING)
            && claim.lap_low == lap_low(this_lap)
            && claim_fits(claim.kind, claim.len, to_end, capacity);
        if !passable {
            break;
        }
        at += if claim.kind == kind::PADDING {
            to_end
        } else {
            record_size(u64::from(claim.len))
        };
    }
    if end == head {
        return head;
    }
    give_back(shared, head, end);
    end
}

/// Gives the bytes `from..to` back to the producers: stamps their words
/// free for the next lap, one Release store of `head`, then wakes producers
/// parked on a full ring. The one place `head` moves, for a release and for
/// the completion of a cut one.
fn give_back<S: Shared>(shared: &S, from: u64, to: u64) {
    stamp_free(shared, from, to);
    shared.crash_point(CrashPoint::BeforeRelease);
    // Release: our reads and stamps of the released bytes happen before a
    // producer claims them; pairs with the Acquire loads of `head` in
    // `Producer::refresh_head` and `Producer::new`.
    shared.head().store(to, Ordering::Release);
    shared.crash_point(CrashPoint::AfterRelease);
    // SeqCst fence: orders the `head` store before the load of
    // `producer_wait`; pairs with the fence in `Producer::wait_writable`.
    shared.fence_seq_cst();
    // Relaxed: ordered by the fence above.
    if shared.producer_wait().load(Ordering::Relaxed) != 0 {
        // Relaxed: the futex call orders it; producers re-check `head`.
        shared.producer_wait().store(0, Ordering::Relaxed);
        shared.wake(shared.producer_wait());
    }
}

/// Stamps every word of `from..to` "free in lap + 1", from the end down:
/// a death part-way leaves the first records' headers whole.
fn stamp_free<S: Shared>(shared: &S, from: u64, to: u64) {
    let capacity = shared.capacity();
    let mut position = to;
    while position > from {
        position -= RECORD_ALIGN;
        let next_lap = lap(position, capacity) + 1;
        // Relaxed: ordered before the caller's `head` store (Release), which
        // a producer loads (Acquire) before it reads this word.
        shared
            .record_word(position)
            .store(free_word(next_lap), Ordering::Relaxed);
    }
}

/// A committed message found at a position.
#[derive(Clone, Copy, Debug)]
struct Found {
    payload: usize,
    len: usize,
    next: u64,
}

impl<S: Shared, L: Liveness> Consumer<S, L> {
    /// Takes the consuming side of `shared`, resuming from its `head`;
    /// `liveness` decides whether a claim's producer is alive.
    pub fn new(shared: S, liveness: L) -> Result<Self, OpenError> {
        // Relaxed: our own index; the role hand-over orders a previous
        // consumer's stores before this load.
        let head = shared.head().load(Ordering::Relaxed);
        if head % RECORD_ALIGN != 0 || head > MAX_POSITION {
            return Err(OpenError::Corrupted(Corruption::Head));
        }
        let head = finish_cut_release(&shared, head);
        Ok(Consumer {
            capacity: shared.capacity(),
            shared,
            liveness,
            head,
            poisoned: None,
        })
    }

    /// The shared state this consumer runs over.
    pub fn shared(&self) -> &S {
        &self.shared
    }

    /// Released position.
    pub fn position(&self) -> u64 {
        self.head
    }

    fn poison(&mut self, what: Corruption) -> ReadError {
        self.poisoned = Some(what);
        ReadError::Corrupted(what)
    }

    fn usable(&mut self) -> Result<(), ReadError> {
        if let Some(what) = self.poisoned {
            return Err(ReadError::Corrupted(what));
        }
        // Relaxed: our own index, only compared with the value we stored.
        if self.shared.head().load(Ordering::Relaxed) != self.head {
            return Err(self.poison(Corruption::OwnIndex));
        }
        Ok(())
    }

    /// Finds the next committed message at or after `*from`, moving `*from`
    /// over padding, given-up records and dead producers' records (which it
    /// marks skipped). On an error `*from` is where it stopped.
    fn find(&mut self, from: &mut u64) -> Result<Found, ReadError> {
        loop {
            if *from > MAX_POSITION {
                return Err(self.poison(Corruption::Head));
            }
            if *from - self.head >= self.capacity {
                // We passed a whole lap: records nobody reads (padding,
                // given up, dead) or a batch's own unreleased messages. The
                // next word is the one at `head`, ours until we release, so
                // nothing more can be there.
                // Relaxed: no message can lie beyond (the ring holds only
                // the records we walked), so nothing the closer wrote before
                // its close is read after this load.
                if self.shared.closed().load(Ordering::Relaxed) == 0 {
                    return Err(ReadError::Empty);
                }
                return Err(ReadError::Closed);
            }
            let offset = *from & (self.capacity - 1);
            let to_end = self.capacity - offset;
            let this_lap = lap(*from, self.capacity);
            let word_ref = self.shared.record_word(*from);
            // Acquire: pairs with the Release store in `Grant::finish` (the
            // payload written before the commit) and with the claim.
            let word = word_ref.load(Ordering::Acquire);
            if kind_of(word) == kind::FREE {
                // We stamped this word free for this lap when we released
                // its bytes one lap ago (or it is a fresh zero word).
                if word != free_word(this_lap) {
                    return Err(self.poison(Corruption::RecordKind));
                }
                // Relaxed: only says whether to try to end the stream here;
                // the exchange below decides, not this load.
                if self.shared.closed().load(Ordering::Relaxed) == 0 {
                    return Err(ReadError::Empty);
                }
                let end = Claim {
                    kind: kind::END,
                    slot: 0,
                    gen_low: 0,
                    lap_low: lap_low(this_lap),
                    len: 0,
                };
                // Relaxed (both): an exchange reads the latest value of the
                // word, so it succeeds only if no producer has claimed this
                // place, and (records being claimed contiguously from
                // `head`) none after it: every message committed before the
                // close was delivered, and every later claim meets the end
                // and is refused. Nothing is read on the strength of it. A
                // failure (a claim came first) is read again with Acquire
                // at the top of the loop.
                if word_ref
                    .compare_exchange(word, end.word(), Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    return Err(ReadError::Closed);
                }
                continue;
            }
            let claim = Claim::from_word(word);
            if claim.lap_low != lap_low(this_lap) {
                return Err(self.poison(Corruption::RecordLap));
            }
            if claim.kind > kind::END {
                return Err(self.poison(Corruption::RecordKind));
            }
            if !claim_fits(claim.kind, claim.len, to_end, self.capacity) {
                return Err(self.poison(Corruption::RecordLength));
            }
            let size = if claim.kind == kind::PADDING {
                to_end
            } else {
                record_size(u64::from(claim.len))
            };
            match claim.kind {
                kind::END => return Err(ReadError::Closed),
                kind::MESSAGE => {
                    return Ok(Found {
                        payload: (offset + RECORD_HEADER) as usize,
                        len: claim.len as usize,
                        next: *from + size,
                    });
                }
                kind::UNCOMMITTED => {
                    if self.liveness.alive(claim.slot, claim.gen_low) {
                        return Err(ReadError::Pending { slot: claim.slot });
                    }
                    let skipped = claim.with_kind(kind::SKIPPED).word();
                    // Relaxed (both): the skip publishes nothing (producers
                    // only pass over the record by its length), and a
                    // failure is read again with Acquire above.
                    let exchanged = word_ref.compare_exchange(
                        word,
                        skipped,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    if exchanged.is_err() {
                        continue;
                    }
                    *from += size;
                }
                _ => *from += size,
            }
        }
    }

    /// Gives back everything before `to`: turns each message record into a
    /// skipped one, stamps every word free for the next lap (from the end
    /// down), then one Release store of `head`. A death before the `head`
    /// store leaves no record a successor would deliver torn (see
    /// [`finish_cut_release`]).
    fn release_to(&mut self, to: u64) {
        let mut position = self.head;
        while position < to {
            let word_ref = self.shared.record_word(position);
            // Relaxed: our own record, read with Acquire in `find`, which
            // checked its lap, kind and length.
            let word = word_ref.load(Ordering::Relaxed);
            let claim = Claim::from_word(word);
            let to_end = self.capacity - (position & (self.capacity - 1));
            let size = match kind_of(word) {
                kind::PADDING => to_end,
                kind::MESSAGE => {
                    // Relaxed: ordered before the `head` store (Release)
                    // like the stamps below; read only by a successor
                    // consumer, after the role hand-over.
                    word_ref.store(claim.with_kind(kind::SKIPPED).word(), Ordering::Relaxed);
                    record_size(u64::from(claim.len))
                }
                _ => record_size(u64::from(claim.len)),
            };
            position += size.max(RECORD_ALIGN);
        }
        give_back(&self.shared, self.head, to);
        self.head = to;
    }

    /// The next message, to read in place; [`Read::release`] consumes it,
    /// dropping the [`Read`] leaves it in the ring. Records skipped on the
    /// way are released even when no message follows.
    pub fn read(&mut self) -> Result<Read<'_, S, L>, ReadError> {
        self.usable()?;
        let mut from = self.head;
        let found = match self.find(&mut from) {
            Ok(found) => found,
            Err(e) => {
                if from != self.head && self.poisoned.is_none() {
                    self.release_to(from);
                }
                return Err(e);
            }
        };
        // SAFETY: `find` checked that the payload lies inside the data region,
        // in a committed record, which is ours until we release it.
        let (access, ptr) = unsafe { self.shared.data(found.payload, found.len, false) };
        self.shared.crash_point(CrashPoint::AfterRead);
        Ok(Read {
            consumer: self,
            next: found.next,
            ptr,
            len: found.len,
            _access: access,
        })
    }

    /// Copies the next message into `buf` and releases it; returns its
    /// length, or `Ok(None)` (and keeps it) when `buf` is too small.
    pub fn pop_into(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ReadError> {
        let read = self.read()?;
        let len = read.len();
        let Some(dest) = buf.get_mut(..len) else {
            return Ok(None);
        };
        copy_bytes(dest, &read);
        read.release();
        Ok(Some(len))
    }

    /// Removes the next message and returns it.
    #[cfg(feature = "std")]
    pub fn pop(&mut self) -> Result<std::vec::Vec<u8>, ReadError> {
        let read = self.read()?;
        let out = read.to_vec();
        read.release();
        Ok(out)
    }

    /// Reads the next message as a `T` and releases it; a message of
    /// another size is an error and stays in the ring.
    pub fn pop_value<T: zerocopy::FromBytes>(&mut self) -> Result<T, PopValueError> {
        let read = self.read()?;
        let Ok(value) = T::read_from_bytes(&read) else {
            return Err(PopValueError::SizeMismatch {
                expected: core::mem::size_of::<T>(),
                actual: read.len(),
            });
        };
        read.release();
        Ok(value)
    }

    /// Starts a batch of reads released together with one `head` store.
    pub fn read_batch(&mut self) -> ReadBatch<'_, S, L> {
        let next = self.head;
        ReadBatch {
            consumer: self,
            next,
            count: 0,
            _access: None,
        }
    }

    /// Waits (spin, then park up to `park`) until [`read`](Self::read) may
    /// find something: a record at `head` other than a live producer's
    /// uncommitted one, or the end of stream. `Ok(true)`: ready.
    ///
    /// A producer that dies while we are parked does not wake us: with
    /// producers in other processes, pass a bounded `park`.
    pub fn wait_readable(&mut self, park: Option<Duration>) -> Result<bool, ReadError> {
        self.usable()?;
        for _ in 0..S::SPINS {
            if self.ready() {
                return Ok(true);
            }
            self.shared.spin();
        }
        // Relaxed: ordered by the fence below.
        self.shared.consumer_wait().store(1, Ordering::Relaxed);
        // SeqCst fence: orders the store of `consumer_wait` before the reload
        // of the word at `head` and `closed`; pairs with the fence in
        // `Producer::wake_consumer`.
        self.shared.fence_seq_cst();
        if !self.ready() {
            self.shared.park(self.shared.consumer_wait(), 1, park);
        }
        // Relaxed: only a hint to producers; they re-check with the fence.
        self.shared.consumer_wait().store(0, Ordering::Relaxed);
        Ok(self.ready())
    }

    /// Whether the word at `head` is anything but free or a live
    /// producer's claim, or the stream is closed.
    fn ready(&self) -> bool {
        // Relaxed: only decides whether to park; `find` re-loads with Acquire.
        let word = self.shared.record_word(self.head).load(Ordering::Relaxed);
        let claim = Claim::from_word(word);
        let waiting = match claim.kind {
            kind::FREE => true,
            kind::UNCOMMITTED => self.liveness.alive(claim.slot, claim.gen_low),
            _ => false,
        };
        // Relaxed: as above.
        !waiting || self.shared.closed().load(Ordering::Relaxed) != 0
    }
}

/// A message read in place; see [`Consumer::read`].
#[derive(Debug)]
pub struct Read<'a, S: Shared, L: Liveness> {
    consumer: &'a mut Consumer<S, L>,
    next: u64,
    ptr: *const u8,
    len: usize,
    _access: S::Access,
}

impl<S: Shared, L: Liveness> Read<'_, S, L> {
    /// Consumes the message (and any record skipped before it).
    pub fn release(self) {
        let Read {
            consumer,
            next,
            _access,
            ..
        } = self;
        drop(_access);
        consumer.release_to(next);
    }
}

impl<S: Shared, L: Liveness> Deref for Read<'_, S, L> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `find` checked these `len` bytes lie in a committed record,
        // which no producer writes until we release it.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Messages read in place and released together; see [`Consumer::read_batch`].
#[derive(Debug)]
pub struct ReadBatch<'a, S: Shared, L: Liveness> {
    consumer: &'a mut Consumer<S, L>,
    next: u64,
    count: usize,
    _access: Option<S::Access>,
}

impl<S: Shared, L: Liveness> ReadBatch<'_, S, L> {
    /// The next message; the slice lives until the next call.
    pub fn read(&mut self) -> Result<&[u8], ReadError> {
        if self.count == 0 {
            self.consumer.usable()?;
        } else if let Some(what) = self.consumer.poisoned {
            return Err(ReadError::Corrupted(what));
        }
        self._access = None;
        let found = self.consumer.find(&mut self.next)?;
        // SAFETY: as in `Consumer::read`.
        let (access, ptr) = unsafe { self.consumer.shared.data(found.payload, found.len, false) };
        self._access = Some(access);
        self.consumer.shared.crash_point(CrashPoint::AfterRead);
        self.next = found.next;
        self.count += 1;
        // SAFETY: as above; the borrow of `self` ends the slice before the
        // next call or the release.
        Ok(unsafe { core::slice::from_raw_parts(ptr, found.len) })
    }

    /// Messages read so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Consumes every message read (and record skipped) so far: one
    /// Release store of `head`.
    pub fn release(mut self) {
        self._access = None;
        if self.next != self.consumer.head && self.consumer.poisoned.is_none() {
            self.consumer.release_to(self.next);
        }
    }
}
