//! The two sides of a shared-memory ring: taking a role (create, open, or a
//! producer's reclaim of a finished stream), the blocking calls, and leaving
//! (removing the name when the last side leaves a finished stream).
//!
//! Every way of taking a role ends the same way: claim the role's lease,
//! then confirm under the name lock that the name still refers to our file
//! ([`lifecycle::confirm`]), then bump the role's generation. Every removal
//! of the name happens under the name lock after checking that no role is
//! held and that the name still refers to the file (see `docs/LAYOUT.md`,
//! lifecycle). The decisions themselves are [`lifecycle`]'s; this module
//! calls them over [`Posix`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lease::Lease;
use super::lifecycle;
use super::segment::{Posix, Segment};
use super::{Role, ShmError, validate_name};
use crate::mem::MemShared;
use crate::spsc::Words;
use crate::spsc::{
    self, Batch, Consumer, Corruption, Grant, Message, PopIntoError, PopValueError, Producer,
    PushError, ReadBatch, ReadError,
};
use crate::sync::{Ordering, Shared};

/// The view of a segment a side runs over (the shipped backend, over a
/// mapping kept alive by the `Arc`).
pub type View = MemShared<Arc<Segment>>;

/// Longest single park in the blocking calls; between parks they check
/// whether the peer is still alive.
const PARK: Duration = Duration::from_millis(50);

/// How a shared-memory side is obtained. Only the modes that may create a
/// segment carry its capacity (data bytes: a power of two, see
/// [`crate::layout::capacity_ok`]); an opener takes the size it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the segment; fail if it exists.
    Create {
        /// Data bytes of the new ring.
        capacity: u64,
    },
    /// Open an existing segment; fail if absent.
    Open,
    /// Create it if absent (with `capacity`), else open it (at its own size).
    CreateOrOpen {
        /// Data bytes of the ring, if this side creates it.
        capacity: u64,
    },
}

/// What keeps a claimed side's memory and role: the segment and the lease.
/// See [`claim`].
#[derive(Debug)]
pub struct Claim {
    segment: Arc<Segment>,
    lease: Lease,
}

impl Claim {
    /// The mapped segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// The role's lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

/// Takes `role` of `name` as [`ShmProducer::new`] and [`ShmConsumer::new`]
/// do (see [`OpenMode`]), and returns
/// the one view of the segment for that role, so that a caller can run
/// [`Producer`] or [`Consumer`] over its own [`Shared`] wrapping it. The
/// view owns the role's lease: the role is held while it lives, and no
/// second view for the role exists. Unlike the `Shm*` types, nothing here
/// removes the name: the caller does.
pub fn claim(name: &str, role: Role, mode: OpenMode) -> Result<MemShared<Claim>, ShmError> {
    let (segment, lease) = acquire(name, role, mode)?;
    segment.checked_view(Claim {
        segment: Arc::clone(&segment),
        lease,
    })
}

fn acquire(name: &str, role: Role, mode: OpenMode) -> Result<(Arc<Segment>, Lease), ShmError> {
    let name = validate_name(name)?;
    let (segment, lease) = lifecycle::acquire(&Posix, &name, role, mode)?;
    Ok((Arc::new(segment), lease))
}

/// Whether the stream is closed and every message released.
pub(super) fn finished<O>(shared: &MemShared<O>) -> bool {
    // Relaxed (all three): a decision about the name only; no record is read
    // on the strength of these values. A stale `closed` or `head` makes the
    // caller keep the segment (a later leaver or `clean` removes it).
    let closed = shared.closed().load(Ordering::Relaxed) != 0;
    let tail = shared.tail().load(Ordering::Relaxed);
    closed && shared.head().load(Ordering::Relaxed) == tail
}

/// Lets go of `lease` and removes the name when we leave last and the
/// stream is finished ([`lifecycle::leave`]).
fn leave(segment: &Segment, lease: Lease, finished: impl FnOnce() -> bool) {
    let role = lease.role();
    lifecycle::leave(&Posix, segment, segment.name(), role, lease, finished);
}

/// The next park's length: [`PARK`], or less before a deadline.
pub(super) fn park_slice(deadline: Option<Instant>) -> Result<Duration, ShmError> {
    match deadline {
        None => Ok(PARK),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(ShmError::TimedOut)
            } else {
                Ok(left.min(PARK))
            }
        }
    }
}

/// When a wait of `timeout` started now ends; `None` (never) for no timeout
/// or one too long to represent.
pub(super) fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Whether the peer in `role` came and is gone now. `came` remembers that it
/// was seen (its generation not zero, or its role held), so that a peer that
/// zeroes its generation before it dies is still seen gone.
///
/// The generation is read *before* the role: a peer bumps its generation
/// after it takes the role and holds the role until it leaves, so a
/// generation seen before the role is found free belongs to a peer that has
/// left. Read after, it could belong to a peer that attached in between,
/// alive, and be taken for a dead one.
fn peer_gone(
    segment: &Segment,
    role: Role,
    came: &core::cell::Cell<bool>,
) -> Result<bool, ShmError> {
    let claimed = segment.ever_claimed(role);
    if segment.role_held(role)? {
        came.set(true);
        return Ok(false);
    }
    if claimed {
        came.set(true);
    }
    Ok(came.get())
}

/// The producer side of a shared-memory ring: the [`Producer`] calls, the
/// blocking ones, and leaving.
#[derive(Debug)]
pub struct ShmProducer {
    inner: Producer<View>,
    segment: Arc<Segment>,
    lease: Option<Lease>,
    consumer_came: core::cell::Cell<bool>,
}

impl ShmProducer {
    /// Takes the producer role of `name` (see [`OpenMode`]).
    pub fn new(name: &str, mode: OpenMode) -> Result<Self, ShmError> {
        let (segment, lease) = acquire(name, Role::Producer, mode)?;
        let inner = Producer::new(segment.shared()?)?;
        if inner.is_closed() {
            return Err(ShmError::Ring(spsc::Error::Closed));
        }
        Ok(ShmProducer {
            inner,
            segment,
            lease: Some(lease),
            consumer_came: core::cell::Cell::new(false),
        })
    }

    /// The mapped segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Copies `message` into the ring, waiting for room up to `timeout`
    /// (`None`: forever). A consumer that died leaves the ring full until a
    /// successor takes its role over, so this keeps waiting for one.
    pub fn push_blocking(
        &mut self,
        message: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(), ShmError> {
        let deadline = deadline(timeout);
        loop {
            match self.inner.push(message) {
                Err(PushError::Full) => {}
                other => return other.map_err(ShmError::from),
            }
            self.wait_room_until(message.len(), deadline)?;
        }
    }

    /// Waits up to `timeout` (`None`: forever) until a `len`-byte message
    /// fits; `Err(TimedOut)` when it passes. A dead consumer does not
    /// end the wait: a successor takes its role over and releases. A stream
    /// that another process marked closed ends it with `Err(Ring(Closed))`.
    pub fn wait_room(&mut self, len: usize, timeout: Option<Duration>) -> Result<(), ShmError> {
        self.wait_room_until(len, deadline(timeout))
    }

    fn wait_room_until(&mut self, len: usize, deadline: Option<Instant>) -> Result<(), ShmError> {
        loop {
            if self.inner.wait_writable(len, Some(park_slice(deadline)?))? {
                return Ok(());
            }
            // Only this producer closes the stream: `closed` set by anyone
            // else means nobody will read what we wait to write.
            // Relaxed: nothing is read on the strength of it.
            if self.inner.shared().closed().load(Ordering::Relaxed) != 0 {
                return Err(ShmError::Ring(spsc::Error::Closed));
            }
        }
    }

    /// Whether a consumer has ever attached and none holds the role now.
    pub fn consumer_gone(&self) -> Result<bool, ShmError> {
        peer_gone(&self.segment, Role::Consumer, &self.consumer_came)
    }
}

/// The [`Producer`] calls, over this segment.
impl ShmProducer {
    /// The [`Producer`] itself, for code written once over any
    /// [`Shared`] (the same function run in-process
    /// and across processes). Leaving stays with this endpoint.
    pub fn as_producer_mut(&mut self) -> &mut Producer<View> {
        &mut self.inner
    }

    /// [`Producer::reserve`].
    pub fn reserve(&mut self, len: usize) -> Result<Grant<'_, View>, PushError> {
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

    /// [`Producer::batch`].
    pub fn batch(&mut self) -> Batch<'_, View> {
        self.inner.batch()
    }

    /// [`Producer::close`].
    pub fn close(&mut self) -> Result<(), Corruption> {
        self.inner.close()
    }

    /// [`Producer::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Size of the data region in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.shared().capacity()
    }

    /// [`Producer::max_message`].
    pub fn max_message(&self) -> usize {
        self.inner.max_message()
    }

    /// [`Producer::position`].
    pub fn position(&self) -> u64 {
        self.inner.position()
    }

    /// [`Producer::free_bytes`].
    pub fn free_bytes(&mut self) -> Result<u64, PushError> {
        self.inner.free_bytes()
    }
}

impl Drop for ShmProducer {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            leave(&self.segment, lease, || finished(self.inner.shared()));
        }
    }
}

/// The consumer side of a shared-memory ring: the [`Consumer`] calls, the
/// blocking ones, and leaving.
#[derive(Debug)]
pub struct ShmConsumer {
    inner: Consumer<View>,
    segment: Arc<Segment>,
    lease: Option<Lease>,
    producer_came: core::cell::Cell<bool>,
}

impl ShmConsumer {
    /// Takes the consumer role of `name` (see [`OpenMode`]).
    pub fn new(name: &str, mode: OpenMode) -> Result<Self, ShmError> {
        let (segment, lease) = acquire(name, Role::Consumer, mode)?;
        let inner = Consumer::new(segment.shared()?)?;
        Ok(ShmConsumer {
            inner,
            segment,
            lease: Some(lease),
            producer_came: core::cell::Cell::new(false),
        })
    }

    /// The mapped segment.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Whether a producer has ever attached and none holds the role now. A
    /// producer seen once counts as come even if its generation word is
    /// later overwritten.
    pub fn producer_gone(&self) -> Result<bool, ShmError> {
        peer_gone(&self.segment, Role::Producer, &self.producer_came)
    }

    /// Waits up to `timeout` (`None`: forever) until [`Consumer::read`] would
    /// not return `Empty` (a message, or the end of stream);
    /// `Err(TimedOut)` when it passes. A producer that died without
    /// closing is `Err(PeerDied)` once every committed message has been read.
    pub fn wait_message(&mut self, timeout: Option<Duration>) -> Result<(), ShmError> {
        let deadline = deadline(timeout);
        loop {
            if self.inner.wait_readable(Some(park_slice(deadline)?))? {
                return Ok(());
            }
            // The producer's last commit happens before its lease is
            // released, so re-check for a message after finding it gone.
            if self.producer_gone()? && !self.inner.wait_readable(Some(Duration::ZERO))? {
                return Err(ShmError::PeerDied(Role::Producer));
            }
        }
    }

    /// Waits up to `timeout` (`None`: forever) for the next message and
    /// reads it in place. End of stream is `Err(Ring(Closed))`; a producer
    /// that died without closing is `Err(PeerDied)` once every committed
    /// message has been read.
    pub fn read_blocking(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Message<'_, View>, ShmError> {
        self.wait_message(timeout)?;
        self.inner.read().map_err(ShmError::from)
    }
}

/// The [`Consumer`] calls, over this segment.
impl ShmConsumer {
    /// The [`Consumer`] itself, for code written once over any
    /// [`Shared`]. Leaving stays with this endpoint.
    pub fn as_consumer_mut(&mut self) -> &mut Consumer<View> {
        &mut self.inner
    }

    /// [`Consumer::read`].
    pub fn read(&mut self) -> Result<Message<'_, View>, ReadError> {
        self.inner.read()
    }

    /// [`Consumer::pop`].
    pub fn pop(&mut self) -> Result<std::vec::Vec<u8>, ReadError> {
        self.inner.pop()
    }

    /// [`Consumer::pop_into`].
    pub fn pop_into(&mut self, buf: &mut [u8]) -> Result<usize, PopIntoError> {
        self.inner.pop_into(buf)
    }

    /// [`Consumer::pop_value`].
    pub fn pop_value<T: zerocopy::FromBytes>(&mut self) -> Result<T, PopValueError> {
        self.inner.pop_value()
    }

    /// [`Consumer::read_batch`].
    pub fn read_batch(&mut self) -> ReadBatch<'_, View> {
        self.inner.read_batch()
    }

    /// Size of the data region in bytes.
    pub fn capacity(&self) -> u64 {
        self.inner.shared().capacity()
    }

    /// [`Consumer::position`].
    pub fn position(&self) -> u64 {
        self.inner.position()
    }

    /// [`Consumer::used_bytes`].
    pub fn used_bytes(&mut self) -> Result<u64, Corruption> {
        self.inner.used_bytes()
    }
}

impl Drop for ShmConsumer {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            leave(&self.segment, lease, || finished(self.inner.shared()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_too_long_to_represent_waits_forever() {
        assert_eq!(deadline(Some(Duration::MAX)), None);
        assert_eq!(deadline(None), None);
        assert!(deadline(Some(Duration::from_secs(1))).is_some());
    }
}
