//! The single-producer / single-consumer protocol, written once over [`Shared`].
//!
//! # Ownership of the bytes
//!
//! Positions only grow. At any moment the data region is split by the two
//! published positions:
//!
//! - `[head, tail)` holds committed records. They belong to the consumer: the
//!   producer never writes there.
//! - `[tail, head + capacity)` is free space. It belongs to the producer: the
//!   consumer never reads there.
//!
//! The producer writes a record in its free space, then makes it the
//! consumer's with **one Release store of `tail`** (the commit point). The
//! consumer reads records, then gives their bytes back with one Release store
//! of `head`. Each store is paired with an Acquire load on the other side, so
//! the bytes written before a store are visible after the matching load.
//!
//! # Untrusted values
//!
//! Everything read from the segment (the other side's index, the record
//! headers, our own index, which only we should write) is read once into a
//! local and checked before use. A value that breaks an invariant poisons
//! this side: the call returns [`Error::Corrupted`], and so does every later
//! call, without touching the segment again.
//!
//! # Caching
//!
//! Each side caches the other's index and reloads it only when the cached
//! value says the ring is full (producer) or empty (consumer).

use core::fmt;
use core::ops::{Deref, DerefMut};
use core::time::Duration;

use crate::layout::{
    RECORD_ALIGN, RECORD_HEADER, RECORD_MESSAGE, RECORD_PADDING, lap, max_message, record_size,
    record_tag,
};
use crate::sync::{CrashPoint, Ordering, Shared, Word32, Word64};

/// What was found wrong in the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// `head` is unaligned, behind the last value seen, or past `tail`.
    Head,
    /// `tail` is unaligned, behind the last value seen, or more than a capacity ahead of `head`.
    Tail,
    /// A record header has an unknown kind.
    RecordKind,
    /// A record's length does not fit where it lies.
    RecordLength,
    /// Our own index was changed by somebody else (a second producer or consumer, or a scribbler).
    OwnIndex,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Corruption::Head => "head index out of range",
            Corruption::Tail => "tail index out of range",
            Corruption::RecordKind => "unknown record kind",
            Corruption::RecordLength => "record length out of range",
            Corruption::OwnIndex => "own index overwritten by another writer",
        })
    }
}

/// Result of a ring operation that did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No room for the record now; retry after the consumer releases.
    Full,
    /// No message now; retry after the producer commits.
    Empty,
    /// The message can never fit this ring.
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// Largest payload this ring accepts ([`max_message`]).
        max: usize,
    },
    /// The producer closed the ring: no more pushes; for the consumer, every
    /// message has been read (end of stream).
    Closed,
    /// The segment breaks an invariant; this side is poisoned.
    Corrupted(Corruption),
    /// The caller's buffer cannot hold the message (it stays in the ring).
    BufferTooSmall {
        /// The message's length.
        needed: usize,
    },
    /// A typed read found a message of another size (it stays in the ring).
    SizeMismatch {
        /// `size_of` the requested type.
        expected: usize,
        /// The message's length.
        actual: usize,
    },
    /// A blocking call waited its whole timeout.
    TimedOut,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Full => f.write_str("ring is full"),
            Error::Empty => f.write_str("ring is empty"),
            Error::TooLarge { len, max } => {
                write!(
                    f,
                    "message of {len} bytes exceeds this ring's maximum of {max} bytes"
                )
            }
            Error::Closed => f.write_str("ring is closed"),
            Error::Corrupted(what) => write!(f, "ring is corrupted: {what}"),
            Error::BufferTooSmall { needed } => {
                write!(f, "buffer too small: the message has {needed} bytes")
            }
            Error::SizeMismatch { expected, actual } => {
                write!(f, "message has {actual} bytes, expected {expected}")
            }
            Error::TimedOut => f.write_str("timed out"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Positions beyond this are corrupt: 2^62 bytes is 14 years at 10 GB/s, and
/// keeping positions below it keeps `position + capacity` from overflowing.
pub const MAX_POSITION: u64 = 1 << 62;

/// Checks the two published positions as a fresh side finds them.
fn check_positions(head: u64, tail: u64, capacity: u64) -> Result<(), Error> {
    // `head <= MAX_POSITION` too: with both below it, `tail - head` cannot
    // wrap into a small value (a head near 2^64 would pass the check below).
    if head % RECORD_ALIGN != 0 || head > MAX_POSITION {
        return Err(Error::Corrupted(Corruption::Head));
    }
    if tail % RECORD_ALIGN != 0 || tail > MAX_POSITION || tail.wrapping_sub(head) > capacity {
        return Err(Error::Corrupted(Corruption::Tail));
    }
    Ok(())
}

/// Reads the 8 bytes of a record header exactly once (volatile), as they lie
/// in memory (split them with `from_ne_bytes`).
///
/// The data region of every shipped segment is 8-aligned, so this is one
/// aligned 8-byte load; a [`Shared`] whose region is not falls back to bytes.
///
/// # Safety
///
/// `ptr` is valid for reads of 8 bytes that the protocol lets the caller read.
#[inline(always)]
unsafe fn read_header(ptr: *const u8) -> [u8; 8] {
    let word = ptr.cast::<u64>();
    if word.is_aligned() {
        // SAFETY: the caller guarantees 8 readable bytes at `ptr`, and `word`
        // is aligned (checked). Volatile: the header is read exactly once,
        // into this local.
        unsafe { word.read_volatile() }.to_ne_bytes()
    } else {
        let mut bytes = [0u8; 8];
        for (i, byte) in bytes.iter_mut().enumerate() {
            // SAFETY: i < 8 bytes inside the record header; volatile: the
            // header is read exactly once, into this local.
            *byte = unsafe { ptr.add(i).read_volatile() };
        }
        bytes
    }
}

/// `dst.copy_from_slice(src)`, with copies of up to 16 bytes done inline by
/// two overlapping fixed-size moves instead of a call to `memcpy`.
#[inline(always)]
fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    let dst = &mut dst[..n];
    if n > 16 {
        dst.copy_from_slice(src);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else if n >= 2 {
        dst[..2].copy_from_slice(&src[..2]);
        dst[n - 2..].copy_from_slice(&src[n - 2..]);
    } else if n == 1 {
        dst[0] = src[0];
    }
}

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
    pub fn new(shared: S) -> Result<Self, Error> {
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
    pub fn free_bytes(&mut self) -> Result<u64, Error> {
        self.usable()?;
        self.refresh_head()?;
        Ok(self.capacity - (self.tail - self.cached_head))
    }

    #[inline]
    fn poison(&mut self, what: Corruption) -> Error {
        self.poisoned = Some(what);
        Error::Corrupted(what)
    }

    /// Fails when poisoned or closed, and checks that nobody rewrote `tail`.
    #[inline]
    fn usable(&mut self) -> Result<(), Error> {
        if let Some(what) = self.poisoned {
            return Err(Error::Corrupted(what));
        }
        if self.closed {
            return Err(Error::Closed);
        }
        // Relaxed: our own index, only compared with the value we stored.
        if self.shared.tail().load(Ordering::Relaxed) != self.tail {
            return Err(self.poison(Corruption::OwnIndex));
        }
        Ok(())
    }

    /// Reloads `head` and checks it lies in `[cached_head, tail]`.
    #[inline]
    fn refresh_head(&mut self) -> Result<(), Error> {
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
    fn claim(&mut self, from: u64, len: usize) -> Result<(usize, u64), Error> {
        let max = self.max_message();
        if len > max {
            return Err(Error::TooLarge { len, max });
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
            return Err(self.poison(Corruption::Tail));
        }
        if end - self.cached_head > self.capacity {
            self.refresh_head()?;
            if end - self.cached_head > self.capacity {
                return Err(Error::Full);
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
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_, S>, Error> {
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
    pub fn push(&mut self, message: &[u8]) -> Result<(), Error> {
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
    ) -> Result<(), Error> {
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
    /// [`Error::Closed`]. Later pushes fail with [`Error::Closed`].
    pub fn close(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.usable()?;
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
    pub fn wait_writable(&mut self, len: usize, park: Option<Duration>) -> Result<bool, Error> {
        self.usable()?;
        let max = self.max_message();
        if len > max {
            return Err(Error::TooLarge { len, max });
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
    pub fn reserve(&mut self, len: usize) -> Result<&mut [u8], Error> {
        if self.count == 0 {
            self.producer.usable()?;
        } else {
            // `tail` is checked once per batch, at its first record: nothing
            // in the batch stores it before the commit, and `closed` cannot
            // change while the batch borrows the producer. A `claim` below
            // may still have poisoned this side.
            if let Some(what) = self.producer.poisoned {
                return Err(Error::Corrupted(what));
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
    pub fn push(&mut self, message: &[u8]) -> Result<(), Error> {
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
    pub fn new(shared: S) -> Result<Self, Error> {
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
    pub fn used_bytes(&mut self) -> Result<u64, Error> {
        self.usable()?;
        self.refresh_tail()?;
        Ok(self.cached_tail - self.head)
    }

    #[inline]
    fn poison(&mut self, what: Corruption) -> Error {
        self.poisoned = Some(what);
        Error::Corrupted(what)
    }

    #[inline]
    fn usable(&mut self) -> Result<(), Error> {
        if let Some(what) = self.poisoned {
            return Err(Error::Corrupted(what));
        }
        // Relaxed: our own index, only compared with the value we stored.
        if self.shared.head().load(Ordering::Relaxed) != self.head {
            return Err(self.poison(Corruption::OwnIndex));
        }
        Ok(())
    }

    /// Reloads `tail` and checks it lies in `[cached_tail, head + capacity]`.
    #[inline]
    fn refresh_tail(&mut self) -> Result<(), Error> {
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
    /// `tail` when the cached one says empty. At end of stream: [`Error::Closed`].
    #[inline]
    fn find(&mut self, mut from: u64) -> Result<Found, Error> {
        loop {
            if from == self.cached_tail {
                self.refresh_tail()?;
                if from == self.cached_tail {
                    // Acquire: pairs with the Release store in `Producer::close`,
                    // which follows the producer's last `tail` store.
                    if self.shared.closed().load(Ordering::Acquire) == 0 {
                        return Err(Error::Empty);
                    }
                    self.refresh_tail()?;
                    if from == self.cached_tail {
                        return Err(Error::Closed);
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
                        return Err(self.poison(Corruption::RecordLength));
                    }
                    from += to_end;
                }
                RECORD_MESSAGE => {
                    let len = u64::from(untrusted_len);
                    let record = record_size(len);
                    if len > max_message(self.capacity) || record > available || record > to_end {
                        return Err(self.poison(Corruption::RecordLength));
                    }
                    return Ok(Found {
                        payload: (offset + RECORD_HEADER) as usize,
                        len: len as usize,
                        next: from + record,
                    });
                }
                _ => return Err(self.poison(Corruption::RecordKind)),
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

    /// The next message, to read in place; [`Read::release`] consumes it,
    /// dropping the [`Read`] leaves it in the ring.
    pub fn read(&mut self) -> Result<Read<'_, S>, Error> {
        self.usable()?;
        let found = self.find(self.head)?;
        // SAFETY: `find` checked that the payload lies inside the data region
        // and inside `[head, tail)`, which the consumer owns.
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

    /// Copies the next message into `buf` and releases it; returns its length.
    pub fn pop_into(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let read = self.read()?;
        let len = read.len();
        let Some(dest) = buf.get_mut(..len) else {
            return Err(Error::BufferTooSmall { needed: len });
        };
        copy_bytes(dest, &read);
        read.release();
        Ok(len)
    }

    /// Removes the next message and returns it.
    #[cfg(feature = "std")]
    pub fn pop(&mut self) -> Result<std::vec::Vec<u8>, Error> {
        let read = self.read()?;
        let out = read.to_vec();
        read.release();
        Ok(out)
    }

    /// Reads the next message as a `T`; a message of another size is an
    /// error and stays in the ring.
    pub fn pop_value<T: zerocopy::FromBytes>(&mut self) -> Result<T, Error> {
        let read = self.read()?;
        let Ok(value) = T::read_from_bytes(&read) else {
            return Err(Error::SizeMismatch {
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
    /// not return [`Error::Empty`], or `park` has passed. `Ok(true)`: ready.
    ///
    /// With a producer in another process, pass a bounded `park`: a producer
    /// that dies between its `tail` store and its wake-up never wakes us.
    pub fn wait_readable(&mut self, park: Option<Duration>) -> Result<bool, Error> {
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
    fn readable(&mut self) -> Result<bool, Error> {
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
pub struct Read<'a, S: Shared> {
    consumer: &'a mut Consumer<S>,
    next: u64,
    ptr: *const u8,
    len: usize,
    _access: S::Access,
}

impl<S: Shared> Read<'_, S> {
    /// Consumes the message: its bytes go back to the producer.
    pub fn release(self) {
        let next = self.next;
        let Read {
            consumer, _access, ..
        } = self;
        drop(_access);
        consumer.release_to(next);
    }
}

impl<S: Shared> Deref for Read<'_, S> {
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
    pub fn read(&mut self) -> Result<&[u8], Error> {
        if self.count == 0 {
            self.consumer.usable()?;
        } else if let Some(what) = self.consumer.poisoned {
            // `head` is checked once per batch, at its first read: nothing in
            // the batch stores it before the release. A `find` may still have
            // poisoned this side.
            return Err(Error::Corrupted(what));
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

#[cfg(test)]
mod tests {
    use super::{copy_bytes, read_header};

    #[test]
    fn copy_bytes_copies_every_length_exactly() {
        let src: [u8; 40] = core::array::from_fn(|i| i as u8 + 1);
        for n in 0..=src.len() {
            let mut dst = [0xEEu8; 48];
            copy_bytes(&mut dst[..n], &src[..n]);
            assert_eq!(&dst[..n], &src[..n], "length {n}");
            assert!(
                dst[n..].iter().all(|&b| b == 0xEE),
                "length {n} wrote past the end"
            );
        }
    }

    #[test]
    fn read_header_reads_the_bytes_as_they_lie_aligned_or_not() {
        let words = [0x0102_0304_0506_0708u64, 0x1112_1314_1516_1718, 0];
        let bytes: &[u8] = zerocopy::IntoBytes::as_bytes(&words[..]);
        for start in 0..8 {
            let mut want = [0u8; 8];
            want.copy_from_slice(&bytes[start..start + 8]);
            // SAFETY: `start + 8 <= 24` bytes of `words`, which we may read.
            let got = unsafe { read_header(bytes[start..].as_ptr()) };
            assert_eq!(got, want, "offset {start}");
        }
    }
}
