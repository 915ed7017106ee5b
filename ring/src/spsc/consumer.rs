//! The consuming side: finds committed records, lends them in place, gives
//! their bytes back with one Release store of `head`.

use core::ops::Deref;
use core::time::Duration;

use super::{
    Corruption, MAX_POSITION, PopIntoError, PopValueError, ReadError, Words, check_positions,
    read_header,
};
use crate::bytes::copy_bytes;
use crate::layout::{
    RECORD_ALIGN, RECORD_HEADER, RECORD_MESSAGE, RECORD_PADDING, lap, max_message, record_size,
};
use crate::sync::{CrashPoint, Ordering, Shared, Word32, Word64};

/// The consuming side of a ring.
#[derive(Debug)]
pub struct Consumer<S: Shared> {
    shared: S,
    capacity: u64,
    /// Released position; equals the segment's `head` unless a scribbler changed it.
    head: u64,
    /// Last `tail` seen; `cached_tail - head <= capacity`.
    cached_tail: u64,
    poisoned: Option<Corruption>,
}

/// A record found at a position: where its payload lies and where the next begins.
#[derive(Clone, Copy, Debug)]
struct Found {
    payload: usize,
    len: usize,
    next: u64,
}

impl<S: Shared> Consumer<S> {
    /// Takes the consuming side of `shared`, resuming from its released `head`:
    /// records a previous consumer read but did not release are read again.
    pub fn new(shared: S) -> Result<Self, Corruption> {
        let capacity = shared.capacity();
        // Relaxed: our own index; the role hand-over orders a previous
        // consumer's stores before this load.
        let head = shared.head().load(Ordering::Relaxed);
        // Acquire: pairs with the Release store in `Producer::publish`.
        let tail = shared.tail().load(Ordering::Acquire);
        check_positions(head, tail, capacity)?;
        Ok(Consumer {
            shared,
            capacity,
            head,
            cached_tail: tail,
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

    /// Committed bytes not yet released, as last seen (refreshes `tail`).
    pub fn used_bytes(&mut self) -> Result<u64, Corruption> {
        self.usable()?;
        self.refresh_tail()?;
        Ok(self.cached_tail - self.head)
    }

    #[inline]
    fn poison(&mut self, what: Corruption) -> Corruption {
        self.poisoned = Some(what);
        what
    }

    #[inline]
    fn usable(&mut self) -> Result<(), Corruption> {
        if let Some(what) = self.poisoned {
            return Err(what);
        }
        // Relaxed: our own index, only compared with the value we stored.
        if self.shared.head().load(Ordering::Relaxed) != self.head {
            return Err(self.poison(Corruption::OwnIndex));
        }
        Ok(())
    }

    /// Reloads `tail` and checks it lies in `[cached_tail, head + capacity]`.
    #[inline]
    fn refresh_tail(&mut self) -> Result<(), Corruption> {
        // Acquire: pairs with the Release store in `Producer::publish`; the
        // records below the new tail are fully written.
        let untrusted_tail = self.shared.tail().load(Ordering::Acquire);
        let advanced = untrusted_tail.wrapping_sub(self.cached_tail);
        let room = self.head + self.capacity - self.cached_tail;
        if untrusted_tail % RECORD_ALIGN != 0 || advanced > room || untrusted_tail > MAX_POSITION {
            return Err(self.poison(Corruption::Tail));
        }
        self.cached_tail = untrusted_tail;
        Ok(())
    }

    /// Finds the message at `from` (skipping a padding record), reloading
    /// `tail` when the cached one says empty. At end of stream: [`ReadError::Closed`].
    #[inline]
    fn find(&mut self, mut from: u64) -> Result<Found, ReadError> {
        loop {
            if from == self.cached_tail {
                self.refresh_tail()?;
                if from == self.cached_tail {
                    // Acquire: pairs with the Release store in `Producer::close`,
                    // which follows the producer's last `tail` store.
                    if self.shared.closed().load(Ordering::Acquire) == 0 {
                        return Err(ReadError::Empty);
                    }
                    self.refresh_tail()?;
                    if from == self.cached_tail {
                        return Err(ReadError::Closed);
                    }
                }
            }
            let available = self.cached_tail - from;
            let offset = from & (self.capacity - 1);
            // SAFETY: offset is 8-aligned and below capacity; `[from, cached_tail)`
            // is committed and ours to read (available >= 8 as both are aligned).
            let (_access, ptr) = unsafe { self.shared.data(offset as usize, 8, false) };
            // SAFETY: `ptr` is valid for the 8 header bytes (see above).
            let bytes = unsafe { read_header(ptr) };
            let untrusted_len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            // A record of another lap (stale bytes under a `tail` pushed
            // ahead by a capacity) gives no known kind back.
            let kind = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]])
                ^ lap(from, self.capacity);
            let to_end = self.capacity - offset;
            match kind {
                RECORD_PADDING => {
                    if u64::from(untrusted_len) + RECORD_HEADER != to_end || to_end > available {
                        return Err(self.poison(Corruption::RecordLength).into());
                    }
                    from += to_end;
                }
                RECORD_MESSAGE => {
                    let len = u64::from(untrusted_len);
                    let record = record_size(len);
                    if len > max_message(self.capacity) || record > available || record > to_end {
                        return Err(self.poison(Corruption::RecordLength).into());
                    }
                    return Ok(Found {
                        payload: (offset + RECORD_HEADER) as usize,
                        len: len as usize,
                        next: from + record,
                    });
                }
                _ => return Err(self.poison(Corruption::RecordKind).into()),
            }
        }
    }

    /// Gives back everything before `to` (one Release store of `head`).
    #[inline]
    fn release_to(&mut self, to: u64) {
        self.shared.crash_point(CrashPoint::BeforeRelease);
        // Release: our reads of the released records happen before the
        // producer reuses their bytes; pairs with the Acquire load of `head`
        // in `Producer::refresh_head`.
        self.shared.head().store(to, Ordering::Release);
        self.head = to;
        self.shared.crash_point(CrashPoint::AfterRelease);
        // SeqCst fence: orders the `head` store before the load of
        // `producer_wait`; pairs with the SeqCst fence in `Producer::wait_writable`.
        self.shared.fence_seq_cst();
        // Relaxed: ordered by the fence above.
        if self.shared.producer_wait().load(Ordering::Relaxed) != 0 {
            // Relaxed: the futex call orders it; the producer re-checks `head`.
            self.shared.producer_wait().store(0, Ordering::Relaxed);
            self.shared.wake(self.shared.producer_wait());
        }
    }

    /// The next message, to read in place; [`Message::release`] consumes it,
    /// dropping the [`Message`] leaves it in the ring.
    pub fn read(&mut self) -> Result<Message<'_, S>, ReadError> {
        self.usable()?;
        let found = self.find(self.head)?;
        // SAFETY: `find` checked that the payload lies inside the data region
        // and inside `[head, tail)`, which the consumer owns.
        let (access, ptr) = unsafe { self.shared.data(found.payload, found.len, false) };
        self.shared.crash_point(CrashPoint::AfterRead);
        Ok(Message {
            consumer: self,
            next: found.next,
            ptr,
            len: found.len,
            _access: access,
        })
    }

    /// Copies the next message into `buf` and releases it; returns its length.
    pub fn pop_into(&mut self, buf: &mut [u8]) -> Result<usize, PopIntoError> {
        let read = self.read()?;
        let len = read.len();
        let Some(dest) = buf.get_mut(..len) else {
            return Err(PopIntoError::BufferTooSmall { needed: len });
        };
        copy_bytes(dest, &read);
        read.release();
        Ok(len)
    }

    /// Removes the next message and returns it.
    #[cfg(feature = "std")]
    pub fn pop(&mut self) -> Result<std::vec::Vec<u8>, ReadError> {
        let read = self.read()?;
        let out = read.to_vec();
        read.release();
        Ok(out)
    }

    /// Reads the next message as a `T`; a message of another size is an
    /// error and stays in the ring.
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
    pub fn read_batch(&mut self) -> ReadBatch<'_, S> {
        let next = self.head;
        ReadBatch {
            consumer: self,
            next,
            count: 0,
            _access: None,
        }
    }

    /// Waits (spin, then park up to `park`) until [`read`](Self::read) would
    /// not return [`ReadError::Empty`], or `park` has passed. `Ok(true)`: ready.
    ///
    /// With a producer in another process, pass a bounded `park`: a producer
    /// that dies between its `tail` store and its wake-up never wakes us.
    pub fn wait_readable(&mut self, park: Option<Duration>) -> Result<bool, Corruption> {
        self.usable()?;
        for _ in 0..S::SPINS {
            if self.readable()? {
                return Ok(true);
            }
            self.shared.spin();
        }
        // Relaxed: ordered by the fence below.
        self.shared.consumer_wait().store(1, Ordering::Relaxed);
        // SeqCst fence: orders the store of `consumer_wait` before the reload
        // of `tail` and `closed`; pairs with the SeqCst fence in
        // `Producer::wake_consumer`.
        self.shared.fence_seq_cst();
        if !self.readable()? {
            self.shared.park(self.shared.consumer_wait(), 1, park);
        }
        // Relaxed: only a hint to the producer; it re-checks with the fence.
        self.shared.consumer_wait().store(0, Ordering::Relaxed);
        self.readable()
    }

    /// Whether a message or the end of stream is there to read.
    #[inline]
    fn readable(&mut self) -> Result<bool, Corruption> {
        if self.head != self.cached_tail {
            return Ok(true);
        }
        self.refresh_tail()?;
        // Relaxed: only decides whether to park; `find` re-loads `closed`
        // with Acquire before it reports the end of stream (the models check it).
        Ok(self.head != self.cached_tail || self.shared.closed().load(Ordering::Relaxed) != 0)
    }
}

/// A message read in place; see [`Consumer::read`].
#[derive(Debug)]
pub struct Message<'a, S: Shared> {
    consumer: &'a mut Consumer<S>,
    next: u64,
    ptr: *const u8,
    len: usize,
    _access: S::Access,
}

impl<S: Shared> Message<'_, S> {
    /// Consumes the message: its bytes go back to the producer.
    pub fn release(self) {
        let next = self.next;
        let Message {
            consumer, _access, ..
        } = self;
        drop(_access);
        consumer.release_to(next);
    }
}

impl<S: Shared> Deref for Message<'_, S> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `find` checked these `len` bytes lie in `[head, tail)`, which
        // the producer does not write until we release them.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Messages read in place and released together; see [`Consumer::read_batch`].
#[derive(Debug)]
pub struct ReadBatch<'a, S: Shared> {
    consumer: &'a mut Consumer<S>,
    next: u64,
    count: usize,
    _access: Option<S::Access>,
}

impl<S: Shared> ReadBatch<'_, S> {
    /// The next message; the slice lives until the next call.
    pub fn read(&mut self) -> Result<&[u8], ReadError> {
        if self.count == 0 {
            self.consumer.usable()?;
        } else if let Some(what) = self.consumer.poisoned {
            // `head` is checked once per batch, at its first read: nothing in
            // the batch stores it before the release. A `find` may still have
            // poisoned this side.
            return Err(ReadError::Corrupted(what));
        }
        self._access = None;
        let found = self.consumer.find(self.next)?;
        // SAFETY: `find` checked that the payload lies inside the data region
        // and inside `[head, tail)`, which the consumer owns.
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

    /// Consumes every message read so far (one Release store of `head`).
    pub fn release(mut self) {
        self._access = None;
        if self.count > 0 {
            self.consumer.release_to(self.next);
        }
    }
}
