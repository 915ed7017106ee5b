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

/// Why a push did not happen: [`Producer::reserve`], [`Producer::push`],
/// [`Producer::push_value`], [`Batch::reserve`], [`Batch::push`], and the
/// checks of [`Producer::wait_writable`] (never `Full`) and
/// [`Producer::free_bytes`] (only `Closed` or `Corrupted`).
///
/// [`Producer::reserve`]: super::Producer::reserve
/// [`Producer::push`]: super::Producer::push
/// [`Producer::push_value`]: super::Producer::push_value
/// [`Producer::wait_writable`]: super::Producer::wait_writable
/// [`Producer::free_bytes`]: super::Producer::free_bytes
/// [`Batch::reserve`]: super::Batch::reserve
/// [`Batch::push`]: super::Batch::push
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushError {
    /// No room for the record now; retry after the consumer releases.
    Full,
    /// The message can never fit this ring.
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// Largest payload this ring accepts ([`crate::layout::max_message`]).
        max: usize,
    },
    /// The ring is closed: no more pushes.
    Closed,
    /// The segment breaks an invariant; this side is poisoned.
    Corrupted(Corruption),
}

/// Why a read did not return a message: [`Consumer::read`],
/// [`Consumer::pop`], [`ReadBatch::read`].
///
/// [`Consumer::read`]: super::Consumer::read
/// [`Consumer::pop`]: super::Consumer::pop
/// [`ReadBatch::read`]: super::ReadBatch::read
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadError {
    /// No message now; retry after the producer commits.
    Empty,
    /// The producer closed the ring and every message has been read (end of
    /// stream).
    Closed,
    /// The segment breaks an invariant; this side is poisoned.
    Corrupted(Corruption),
}

/// Why [`Consumer::pop_into`](super::Consumer::pop_into) copied nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PopIntoError {
    /// As [`ReadError::Empty`].
    Empty,
    /// As [`ReadError::Closed`].
    Closed,
    /// As [`ReadError::Corrupted`].
    Corrupted(Corruption),
    /// The caller's buffer cannot hold the message (it stays in the ring).
    BufferTooSmall {
        /// The message's length.
        needed: usize,
    },
}

/// Why [`Consumer::pop_value`](super::Consumer::pop_value) returned no value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PopValueError {
    /// As [`ReadError::Empty`].
    Empty,
    /// As [`ReadError::Closed`].
    Closed,
    /// As [`ReadError::Corrupted`].
    Corrupted(Corruption),
    /// The message has another size than the type (it stays in the ring).
    SizeMismatch {
        /// `size_of` the requested type.
        expected: usize,
        /// The message's length.
        actual: usize,
    },
}

/// Any of the errors above, for code that handles every ring error alike
/// (each converts into it with `?`). It holds one variant per distinct
/// outcome and the messages every error displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// [`PushError::Full`].
    Full,
    /// [`ReadError::Empty`] (and its copies).
    Empty,
    /// [`PushError::TooLarge`].
    TooLarge {
        /// Requested payload length.
        len: usize,
        /// Largest payload this ring accepts.
        max: usize,
    },
    /// [`PushError::Closed`] or [`ReadError::Closed`].
    Closed,
    /// A [`Corruption`], from any operation.
    Corrupted(Corruption),
    /// [`PopIntoError::BufferTooSmall`].
    BufferTooSmall {
        /// The message's length.
        needed: usize,
    },
    /// [`PopValueError::SizeMismatch`].
    SizeMismatch {
        /// `size_of` the requested type.
        expected: usize,
        /// The message's length.
        actual: usize,
    },
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
        }
    }
}

impl From<Corruption> for Error {
    fn from(what: Corruption) -> Self {
        Error::Corrupted(what)
    }
}

impl From<PushError> for Error {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Full => Error::Full,
            PushError::TooLarge { len, max } => Error::TooLarge { len, max },
            PushError::Closed => Error::Closed,
            PushError::Corrupted(what) => Error::Corrupted(what),
        }
    }
}

impl From<ReadError> for Error {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Empty => Error::Empty,
            ReadError::Closed => Error::Closed,
            ReadError::Corrupted(what) => Error::Corrupted(what),
        }
    }
}

impl From<PopIntoError> for Error {
    fn from(e: PopIntoError) -> Self {
        match e {
            PopIntoError::Empty => Error::Empty,
            PopIntoError::Closed => Error::Closed,
            PopIntoError::Corrupted(what) => Error::Corrupted(what),
            PopIntoError::BufferTooSmall { needed } => Error::BufferTooSmall { needed },
        }
    }
}

impl From<PopValueError> for Error {
    fn from(e: PopValueError) -> Self {
        match e {
            PopValueError::Empty => Error::Empty,
            PopValueError::Closed => Error::Closed,
            PopValueError::Corrupted(what) => Error::Corrupted(what),
            PopValueError::SizeMismatch { expected, actual } => {
                Error::SizeMismatch { expected, actual }
            }
        }
    }
}

impl From<Corruption> for PushError {
    fn from(what: Corruption) -> Self {
        PushError::Corrupted(what)
    }
}

impl From<Corruption> for ReadError {
    fn from(what: Corruption) -> Self {
        ReadError::Corrupted(what)
    }
}

impl From<ReadError> for PopIntoError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Empty => PopIntoError::Empty,
            ReadError::Closed => PopIntoError::Closed,
            ReadError::Corrupted(what) => PopIntoError::Corrupted(what),
        }
    }
}

impl From<ReadError> for PopValueError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Empty => PopValueError::Empty,
            ReadError::Closed => PopValueError::Closed,
            ReadError::Corrupted(what) => PopValueError::Corrupted(what),
        }
    }
}

/// Displays each error as the [`Error`] it converts into (one text per outcome).
macro_rules! display_as_error {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                Error::from(*self).fmt(f)
            }
        }

        #[cfg(feature = "std")]
        impl std::error::Error for $ty {}
    )*};
}

display_as_error!(PushError, ReadError, PopIntoError, PopValueError);

#[cfg(feature = "std")]
impl std::error::Error for Corruption {}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Implements `From<E>` for `$target` for each per-operation ring error `E`
/// (and [`Corruption`]), through [`Error`]: `$target` must implement
/// `From<ringproof::Error>`. For error types of code that handles every ring
/// error alike and wants `?` on each operation.
#[macro_export]
macro_rules! from_ring_errors {
    ($target:ty) => {
        $crate::from_ring_errors!(@each $target;
            $crate::Corruption,
            $crate::PushError,
            $crate::ReadError,
            $crate::PopIntoError,
            $crate::PopValueError
        );
    };
    (@each $target:ty; $($error:ty),*) => {$(
        impl ::core::convert::From<$error> for $target {
            fn from(e: $error) -> Self {
                <$target>::from($crate::Error::from(e))
            }
        }
    )*};
}
