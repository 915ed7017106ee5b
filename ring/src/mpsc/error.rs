//! What an MPSC operation can return instead of its result: one error type
//! per operation, and [`Corruption`] for what was found wrong in the segment.

use core::fmt;

/// What was found wrong in an MPSC segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// `head` is unaligned, past the limit, or moved backwards.
    Head,
    /// The `tail` hint is unaligned.
    TailHint,
    /// A record header word has an unknown kind, or is free in a lap it
    /// cannot be in.
    RecordKind,
    /// A claimed record's lap is not the lap of its position.
    RecordLap,
    /// A record's length does not fit where it lies.
    RecordLength,
    /// `head`, which only the consumer writes, was changed by somebody else.
    OwnIndex,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Corruption::Head => "head index out of range",
            Corruption::TailHint => "tail hint out of range",
            Corruption::RecordKind => "bad record header word",
            Corruption::RecordLap => "record header of another lap",
            Corruption::RecordLength => "record length out of range",
            Corruption::OwnIndex => "own index overwritten by another writer",
        })
    }
}

/// Why a producer or the consumer could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// The slot is not below the segment's producer count.
    BadSlot {
        /// The slot asked for.
        slot: u8,
        /// The number of slots.
        max: u32,
    },
    /// The segment breaks an invariant.
    Corrupted(Corruption),
}

/// Why a push or a reservation did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError {
    /// No room now; retry after the consumer releases. (Also, for an
    /// instant, when the consumer has stamped the bytes it releases but not
    /// yet stored `head`; [`super::Producer::wait_writable`] returns at
    /// once then.)
    Full,
    /// The message can never fit this ring.
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// Largest payload this ring accepts.
        max: usize,
    },
    /// A producer closed the stream.
    Closed,
    /// The segment breaks an invariant; this producer is poisoned.
    Corrupted(Corruption),
}

/// Why a read found no message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// No record at `head` yet.
    Empty,
    /// The record at `head` is claimed by a live producer that has not
    /// committed it yet: wait (it is never skipped).
    Pending {
        /// The claiming producer's slot.
        slot: u8,
    },
    /// The stream is closed and every record before the end was read.
    Closed,
    /// The segment breaks an invariant; the consumer is poisoned.
    Corrupted(Corruption),
}

/// Why [`super::Consumer::pop_value`] returned no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PopValueError {
    /// What [`super::Consumer::read`] returned.
    Read(ReadError),
    /// The message has another size than the type (it stays in the ring).
    SizeMismatch {
        /// `size_of` the requested type.
        expected: usize,
        /// The message's length.
        actual: usize,
    },
}

impl From<ReadError> for PopValueError {
    fn from(e: ReadError) -> Self {
        PopValueError::Read(e)
    }
}

impl fmt::Display for PopValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PopValueError::Read(e) => e.fmt(f),
            PopValueError::SizeMismatch { expected, actual } => write!(
                f,
                "message of {actual} bytes read as a value of {expected} bytes"
            ),
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            OpenError::BadSlot { slot, max } => {
                write!(f, "producer slot {slot} out of range (the ring has {max})")
            }
            OpenError::Corrupted(what) => write!(f, "ring is corrupted: {what}"),
        }
    }
}

impl fmt::Display for PushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PushError::Full => f.write_str("ring is full"),
            PushError::TooLarge { len, max } => write!(
                f,
                "message of {len} bytes exceeds this ring's maximum of {max} bytes"
            ),
            PushError::Closed => f.write_str("ring is closed"),
            PushError::Corrupted(what) => write!(f, "ring is corrupted: {what}"),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ReadError::Empty => f.write_str("ring is empty"),
            ReadError::Pending { slot } => {
                write!(f, "the next record is being written by producer {slot}")
            }
            ReadError::Closed => f.write_str("ring is closed"),
            ReadError::Corrupted(what) => write!(f, "ring is corrupted: {what}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for OpenError {}
#[cfg(feature = "std")]
impl std::error::Error for PushError {}
#[cfg(feature = "std")]
impl std::error::Error for ReadError {}
#[cfg(feature = "std")]
impl std::error::Error for PopValueError {}
