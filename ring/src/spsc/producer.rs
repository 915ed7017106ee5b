//! The producing side: claims free space, writes records in place, commits
//! them with one Release store of `tail`.

use core::ops::{Deref, DerefMut};
use core::time::Duration;

use super::{Corruption, MAX_POSITION, PushError, Words, check_positions};
use crate::bytes::copy_bytes;
use crate::layout::{
    RECORD_ALIGN, RECORD_HEADER, RECORD_MESSAGE, RECORD_PADDING, max_message, record_size,
    record_tag,
};
use crate::sync::{CrashPoint, Ordering, Shared, Word32, Word64};

/// The producing side of a ring.
#[derive(Debug)]
pub struct Producer<S: Shared> {
    shared: S,
    capacity: u64,
    /// Committed position; equals the segment's `tail` unless a scribbler changed it.
    tail: u64,
    /// Last `head` seen; `tail - cached_head <= capacity`.
    cached_head: u64,
    poisoned: Option<Corruption>,
    closed: bool,
}

impl<S: Shared> Producer<S> {
    /// Takes the producing side of `shared`, resuming from its committed `tail`.
    ///
    /// Anything a previous producer wrote past `tail` (an open reservation, a
    /// batch it did not commit) is free space again and will be overwritten.
    pub fn new(shared: S) -> Result<Self, Corruption> {
        let capacity = shared.capacity();
        // Acquire: pairs with the Release store in `Consumer::release_to`, so
        // that the consumer's reads of released bytes happen before our writes.
        let head = shared.head().load(Ordering::Acquire);
        // Relaxed: our own index; a previous producer's stores to it are
        // ordered before our role claim by the lock that hands the role over.
        let tail = shared.tail().load(Ordering::Relaxed);
        check_positions(head, tail, capacity)?;
        // Relaxed: a closed ring only makes this producer refuse to push; it
        // reads nothing the closing producer wrote (the models check it).
        let closed = shared.closed().load(Ordering::Relaxed) != 0;
        Ok(Producer {
            shared,
            capacity,
            tail,
            cached_head: head,
            poisoned: None,
            closed,
        })
    }

    /// The shared state this producer runs over.
    pub fn shared(&self) -> &S {
        &self.shared
    }

    /// Largest payload [`reserve`](Self::reserve) accepts.
    pub fn max_message(&self) -> usize {
        max_message(self.capacity) as usize
    }

    /// Committed position (bytes ever committed, padding included).
    pub fn position(&self) -> u64 {
        self.tail
    }

    /// Whether this producer closed the ring (or found it closed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Free bytes as last seen (refreshes `head`).
    pub fn free_bytes(&mut self) -> Result<u64, PushError> {
        self.usable()?;
        self.refresh_head()?;
        Ok(self.capacity - (self.tail - self.cached_head))
    }

    #[inline]
    fn poison(&mut self, what: Corruption) -> Corruption {
        self.poisoned = Some(what);
        what
    }

    /// Fails when poisoned or closed, and checks that nobody rewrote `tail`.
    #[inline]
    fn usable(&mut self) -> Result<(), PushError> {
        if let Some(what) = self.poisoned {
            return Err(PushError::Corrupted(what));
        }
        if self.closed {
            return Err(PushError::Closed);
        }
        self.own_tail()?;
        Ok(())
    }

    /// Checks that nobody rewrote `tail`.
    #[inline]
    fn own_tail(&mut self) -> Result<(), Corruption> {
        // Relaxed: our own index, only compared with the value we stored.
        if self.shared.tail().load(Ordering::Relaxed) != self.tail {
            return Err(self.poison(Corruption::OwnIndex));
        }
        Ok(())
    }

    /// Reloads `head` and checks it lies in `[cached_head, tail]`.
    #[inline]
    fn refresh_head(&mut self) -> Result<(), Corruption> {
        // Acquire: pairs with the Release store in `Consumer::release_to`;
        // the consumer's reads of the bytes it released happen before we
        // overwrite them.
        let untrusted_head = self.shared.head().load(Ordering::Acquire);
        let advanced = untrusted_head.wrapping_sub(self.cached_head);
        if untrusted_head % RECORD_ALIGN != 0 || advanced > self.tail - self.cached_head {
            return Err(self.poison(Corruption::Head));
        }
        self.cached_head = untrusted_head;
        Ok(())
    }

    /// Finds room for a record of `len` payload bytes starting at `from`
    /// (`tail`, or the end of a batch): writes a padding record if it must
    /// wrap and the record header, and returns the record's payload offset
    /// and the position just past it.
    #[inline]
    fn claim(&mut self, from: u64, len: usize) -> Result<(usize, u64), PushError> {
        let max = self.max_message();
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let record = record_size(len as u64);
        let offset = from & (self.capacity - 1);
        let to_end = self.capacity - offset;
        // Fast path: the record fits before the end of the data region, the
        // cached `head` leaves room for it, and `end` stays below the limit
        // (the same checks as below, with no padding record to write).
        let end = from + record;
        if record <= to_end && end - self.cached_head <= self.capacity && end <= MAX_POSITION {
            self.write_record_header(from, len as u32, RECORD_MESSAGE);
            self.shared.crash_point(CrashPoint::AfterReserve);
            return Ok((offset as usize + RECORD_HEADER as usize, end));
        }
        let padding = if record <= to_end { 0 } else { to_end };
        let end = from + padding + record;
        if end > MAX_POSITION {
            return Err(self.poison(Corruption::Tail).into());
        }
        if end - self.cached_head > self.capacity {
            self.refresh_head()?;
            if end - self.cached_head > self.capacity {
                return Err(PushError::Full);
            }
        }
        if padding != 0 {
            self.write_record_header(from, (padding - RECORD_HEADER) as u32, RECORD_PADDING);
        }
        let start = (offset + padding) & (self.capacity - 1);
        self.write_record_header(from + padding, len as u32, RECORD_MESSAGE);
        self.shared.crash_point(CrashPoint::AfterReserve);
        Ok((start as usize + RECORD_HEADER as usize, end))
    }

    /// Writes the header of a record of `kind` that starts at `position`.
    #[inline]
    fn write_record_header(&self, position: u64, len: u32, kind: u32) {
        let offset = position & (self.capacity - 1);
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&len.to_ne_bytes());
        bytes[4..].copy_from_slice(&record_tag(kind, position, self.capacity).to_ne_bytes());
        // SAFETY: offset is 8-aligned and below capacity, so 8 bytes fit; the
        // bytes lie in our free space (`claim` checked `end - head <= capacity`).
        let (_access, ptr) = unsafe { self.shared.data(offset as usize, 8, true) };
        // SAFETY: `ptr` is valid for 8 bytes (see above); nobody else accesses them.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, 8) };
    }

    /// Makes everything up to `end` visible: the commit point.
    #[inline]
    fn publish(&mut self, end: u64) {
        self.shared.crash_point(CrashPoint::BeforeCommit);
        // Release: publishes the record headers and payloads written above;
        // pairs with the Acquire load of `tail` in `Consumer::refresh_tail`.
        self.shared.tail().store(end, Ordering::Release);
        self.tail = end;
        self.shared.crash_point(CrashPoint::AfterCommit);
        self.wake_consumer();
    }

    #[inline]
    fn wake_consumer(&self) {
        // SeqCst fence: orders our `tail`/`closed` store before the load of
        // `consumer_wait` below; pairs with the SeqCst fence in
        // `Consumer::wait_readable` between its store of `consumer_wait` and
        // its reload of `tail`. One of the two sides sees the other's store,
        // so a consumer never parks on a message it missed.
        self.shared.fence_seq_cst();
        // Relaxed: ordered by the fence above.
        if self.shared.consumer_wait().load(Ordering::Relaxed) != 0 {
            // Relaxed: the futex call orders it; the consumer re-checks `tail`.
            self.shared.consumer_wait().store(0, Ordering::Relaxed);
            self.shared.wake(self.shared.consumer_wait());
        }
    }

    /// Reserves room for a `len`-byte message and gives it to write in place.
    ///
    /// The message is sent by [`Grant::commit`]; dropping the grant sends nothing.
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_, S>, PushError> {
        self.usable()?;
        let (payload, end) = self.claim(self.tail, len)?;
        // SAFETY: `claim` placed the payload inside the data region
        // (record <= to_end), in our free space.
        let (access, ptr) = unsafe { self.shared.data(payload, len, true) };
        Ok(Grant {
            producer: self,
            end,
            ptr,
            len,
            _access: access,
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

    /// Starts a batch: records reserved in it become visible together, with
    /// one `tail` store, at [`Batch::commit`]. Dropping the batch sends none.
    pub fn batch(&mut self) -> Batch<'_, S> {
        let end = self.tail;
        Batch {
            producer: self,
            end,
            count: 0,
            _access: None,
        }
    }

    /// Closes the ring: the consumer reads every committed message, then
    /// [`ReadError::Closed`](super::ReadError::Closed). Later pushes fail
    /// with [`PushError::Closed`]. Closing a closed ring does nothing.
    pub fn close(&mut self) -> Result<(), Corruption> {
        if self.closed {
            return Ok(());
        }
        if let Some(what) = self.poisoned {
            return Err(what);
        }
        self.own_tail()?;
        self.shared.crash_point(CrashPoint::BeforeClose);
        // Release: orders every `tail` store before it; pairs with the Acquire
        // load of `closed` in `Consumer::find`, which then reloads the final tail.
        self.shared.closed().store(1, Ordering::Release);
        self.closed = true;
        self.wake_consumer();
        Ok(())
    }

    /// Waits (spin, then park up to `park`) until a `len`-byte message fits
    /// or `park` has passed. Returns `Ok(true)` when it fits.
    ///
    /// With a consumer in another process, pass a bounded `park`: a consumer
    /// that dies between its `head` store and its wake-up never wakes us.
    pub fn wait_writable(&mut self, len: usize, park: Option<Duration>) -> Result<bool, PushError> {
        self.usable()?;
        let max = self.max_message();
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let record = record_size(len as u64);
        let offset = self.tail & (self.capacity - 1);
        let to_end = self.capacity - offset;
        let need = if record <= to_end {
            record
        } else {
            to_end + record
        };
        for _ in 0..S::SPINS {
            self.refresh_head()?;
            if self.tail + need - self.cached_head <= self.capacity {
                return Ok(true);
            }
            self.shared.spin();
        }
        // Relaxed: ordered by the fence below.
        self.shared.producer_wait().store(1, Ordering::Relaxed);
        // SeqCst fence: orders the store of `producer_wait` before the reload
        // of `head`; pairs with the SeqCst fence in `Consumer::release_to`.
        self.shared.fence_seq_cst();
        self.refresh_head()?;
        if self.tail + need - self.cached_head > self.capacity {
            self.shared.park(self.shared.producer_wait(), 1, park);
            self.refresh_head()?;
        }
        // Relaxed: only a hint to the consumer; it re-checks with the fence.
        self.shared.producer_wait().store(0, Ordering::Relaxed);
        Ok(self.tail + need - self.cached_head <= self.capacity)
    }
}

/// Room for one message, written in place; [`commit`](Grant::commit) sends it.
#[derive(Debug)]
pub struct Grant<'a, S: Shared> {
    producer: &'a mut Producer<S>,
    end: u64,
    ptr: *mut u8,
    len: usize,
    _access: S::Access,
}

impl<S: Shared> Grant<'_, S> {
    /// Makes the message visible to the consumer (one Release store of `tail`).
    pub fn commit(self) {
        let Grant {
            producer,
            end,
            _access,
            ..
        } = self;
        // The borrow of the payload ends before the commit point: after it,
        // the bytes are the consumer's.
        drop(_access);
        producer.publish(end);
    }
}

impl<S: Shared> Deref for Grant<'_, S> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points at `len` bytes of our free space, which only
        // this grant writes until it is committed or dropped.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<S: Shared> DerefMut for Grant<'_, S> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Records staged for one commit; see [`Producer::batch`].
#[derive(Debug)]
pub struct Batch<'a, S: Shared> {
    producer: &'a mut Producer<S>,
    end: u64,
    count: usize,
    _access: Option<S::Access>,
}

impl<S: Shared> Batch<'_, S> {
    /// Adds a `len`-byte record to the batch and gives it to write in place;
    /// the slice lives until the next call.
    pub fn reserve(&mut self, len: usize) -> Result<&mut [u8], PushError> {
        if self.count == 0 {
            self.producer.usable()?;
        } else {
            // `tail` is checked once per batch, at its first record: nothing
            // in the batch stores it before the commit, and `closed` cannot
            // change while the batch borrows the producer. A `claim` below
            // may still have poisoned this side.
            if let Some(what) = self.producer.poisoned {
                return Err(PushError::Corrupted(what));
            }
            self.producer.shared.crash_point(CrashPoint::MidBatch);
        }
        let (payload, end) = self.producer.claim(self.end, len)?;
        self._access = None;
        // SAFETY: `claim` placed the payload inside the data region, in our
        // free space past the batch's previous records.
        let (access, ptr) = unsafe { self.producer.shared.data(payload, len, true) };
        self._access = Some(access);
        self.end = end;
        self.count += 1;
        // SAFETY: `ptr` is valid for `len` bytes that only this batch writes;
        // the borrow of `self` keeps the slice from outliving the next call.
        Ok(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
    }

    /// Copies `message` into the batch.
    pub fn push(&mut self, message: &[u8]) -> Result<(), PushError> {
        copy_bytes(self.reserve(message.len())?, message);
        Ok(())
    }

    /// Records staged so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no record is staged.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Makes every staged record visible at once (one Release store of `tail`).
    pub fn commit(mut self) {
        self._access = None;
        if self.count > 0 {
            self.producer.publish(self.end);
        }
    }
}
