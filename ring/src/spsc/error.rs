//! What a ring operation can return instead of its result.

use core::fmt;

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
