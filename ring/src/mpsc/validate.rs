//! Attach an MPSC segment: from untrusted bytes to a checked view, or a
//! typed [`AttachError`]. Never panics, never reads outside `base..base+len`.
//!
//! As [`crate::validate`] does for SPSC: the immutable header bytes are
//! read once each into a copy, and the checks run on the copy in safe
//! functions (so that mutation testing reaches them); the `unsafe` wrapper
//! only reads. An SPSC segment is refused with [`AttachError::Spsc`] (and
//! [`crate::validate::attach`] refuses an MPSC one with `BadMagic`).

use core::fmt;

use super::layout::{
    CHECKSUMMED, HEADER_SIZE, MAGIC, MAX_SLOTS, MPSC_VERSION, capacity_ok, segment_size,
};
use crate::layout::fnv1a;
use crate::validate::{AttachError as SegmentError, check_region, read_once};

/// Why a region is not a usable MPSC segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// A check every segment shares failed (size, alignment, magic,
    /// version, header size, capacity, checksum).
    Segment(SegmentError),
    /// The region holds an SPSC segment, not an MPSC one.
    Spsc,
    /// `max_producers` is not in `1..=MAX_SLOTS`, or the reserved field is
    /// not zero.
    BadMaxProducers {
        /// The value found.
        found: u32,
    },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachError::Segment(e) => e.fmt(f),
            AttachError::Spsc => f.write_str("an SPSC segment, not an MPSC one"),
            AttachError::BadMaxProducers { found } => {
                write!(f, "bad producer count {found} (must be 1 to {MAX_SLOTS})")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AttachError {}

/// An MPSC region whose header passed every check of [`attach`].
#[derive(Clone, Copy, Debug)]
pub struct Checked {
    base: *mut u8,
    capacity: u64,
    max_producers: u32,
}

impl Checked {
    /// First byte of the segment.
    pub fn base(&self) -> *mut u8 {
        self.base
    }
    /// The checked capacity of the data region.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
    /// The checked number of producer slots.
    pub fn max_producers(&self) -> u32 {
        self.max_producers
    }
}

/// Bytes [`attach`] reads: the checksummed fields and the checksum.
const IMMUTABLE: usize = CHECKSUMMED + 8;

/// Checks the MPSC header at `base` against `len`, the region's real size.
///
/// # Safety
///
/// `base` is valid for reads of `len` bytes for the duration of the call;
/// they may change concurrently.
pub unsafe fn attach(base: *const u8, len: usize) -> Result<Checked, AttachError> {
    check_region(len, base.align_offset(8) == 0, HEADER_SIZE).map_err(AttachError::Segment)?;
    // SAFETY: IMMUTABLE = 40 <= HEADER_SIZE <= len (`check_region` passed).
    let immutable = unsafe { read_once::<IMMUTABLE>(base) };
    let (capacity, max_producers) = check_header(&immutable, len)?;
    Ok(Checked {
        base: base.cast_mut(),
        capacity,
        max_producers,
    })
}

/// Checks a copy of the immutable header bytes; returns the capacity and
/// the number of slots.
fn check_header(immutable: &[u8; IMMUTABLE], len: usize) -> Result<(u64, u32), AttachError> {
    let u64_at = |at: usize| {
        let mut out = [0u8; 8];
        out.copy_from_slice(&immutable[at..at + 8]);
        u64::from_ne_bytes(out)
    };
    let u32_at = |at: usize| {
        let mut out = [0u8; 4];
        out.copy_from_slice(&immutable[at..at + 4]);
        u32::from_ne_bytes(out)
    };
    let bad = |e| Err(AttachError::Segment(e));
    let magic = &immutable[..8];
    if magic == crate::layout::MAGIC {
        return Err(AttachError::Spsc);
    }
    if magic != MAGIC {
        let zero = magic == [0; 8];
        return bad(SegmentError::BadMagic { zero });
    }
    let version = u32_at(8);
    if version != MPSC_VERSION {
        return bad(SegmentError::UnsupportedVersion { found: version });
    }
    let header_size = u32_at(12);
    if header_size as usize != HEADER_SIZE {
        return bad(SegmentError::BadHeaderSize { found: header_size });
    }
    let capacity = u64_at(16);
    if !capacity_ok(capacity) {
        return bad(SegmentError::BadCapacity { found: capacity });
    }
    let max_producers = u32_at(24);
    if max_producers == 0 || max_producers as usize > MAX_SLOTS || u32_at(28) != 0 {
        return Err(AttachError::BadMaxProducers {
            found: max_producers,
        });
    }
    if fnv1a(&immutable[..CHECKSUMMED]) != u64_at(CHECKSUMMED) {
        return bad(SegmentError::ChecksumMismatch);
    }
    let expected = segment_size(capacity);
    if expected != len as u64 {
        return bad(SegmentError::SizeMismatch {
            expected,
            actual: len as u64,
        });
    }
    Ok((capacity, max_producers))
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::heap::AlignedBuf;
    use crate::mpsc::layout::Header;
    use zerocopy::IntoBytes;

    fn segment(capacity: u64, producers: u32) -> AlignedBuf {
        let header = Header::new(capacity, producers).unwrap();
        let mut buf = AlignedBuf::zeroed(segment_size(capacity) as usize);
        buf.bytes_mut()[..HEADER_SIZE].copy_from_slice(header.as_bytes());
        buf
    }

    fn attach_buf(buf: &AlignedBuf) -> Result<Checked, AttachError> {
        // SAFETY: the buffer is readable for its length.
        unsafe { attach(buf.as_ptr(), buf.len()) }
    }

    /// Writes `bytes` at `at`, then reseals the checksum when `reseal`.
    fn corrupt(buf: &mut AlignedBuf, at: usize, bytes: &[u8], reseal: bool) {
        buf.bytes_mut()[at..at + bytes.len()].copy_from_slice(bytes);
        if reseal {
            let sum = fnv1a(&buf.bytes_mut()[..CHECKSUMMED]);
            buf.bytes_mut()[CHECKSUMMED..IMMUTABLE].copy_from_slice(&sum.to_ne_bytes());
        }
    }

    #[test]
    fn fresh_segment_attaches_with_its_fields() {
        let checked = attach_buf(&segment(4096, 5)).unwrap();
        assert_eq!((checked.capacity(), checked.max_producers()), (4096, 5));
    }

    #[test]
    fn spsc_and_mpsc_segments_refuse_each_other() {
        let spsc = AlignedBuf::segment(4096).unwrap();
        assert_eq!(attach_buf(&spsc).unwrap_err(), AttachError::Spsc);
        let mpsc = segment(4096, 2);
        // SAFETY: the buffer is readable for its length.
        let err = unsafe { crate::validate::attach(mpsc.as_ptr(), mpsc.len()) }.unwrap_err();
        assert_eq!(err, SegmentError::BadMagic { zero: false });
    }

    #[test]
    fn rejects_each_corrupted_field_with_its_error() {
        let seg = |e| AttachError::Segment(e);
        let cases: [(usize, &[u8], bool, AttachError); 9] = [
            (0, &[0; 8], true, seg(SegmentError::BadMagic { zero: true })),
            (
                0,
                b"RINGMPX\0",
                true,
                seg(SegmentError::BadMagic { zero: false }),
            ),
            (
                8,
                &9u32.to_ne_bytes(),
                true,
                seg(SegmentError::UnsupportedVersion { found: 9 }),
            ),
            (
                12,
                &384u32.to_ne_bytes(),
                true,
                seg(SegmentError::BadHeaderSize { found: 384 }),
            ),
            (
                16,
                &(1u64 << 33).to_ne_bytes(),
                true,
                seg(SegmentError::BadCapacity { found: 1 << 33 }),
            ),
            (
                24,
                &0u32.to_ne_bytes(),
                true,
                AttachError::BadMaxProducers { found: 0 },
            ),
            (
                24,
                &65u32.to_ne_bytes(),
                true,
                AttachError::BadMaxProducers { found: 65 },
            ),
            (
                24,
                &7u32.to_ne_bytes(),
                false,
                seg(SegmentError::ChecksumMismatch),
            ),
            (
                16,
                &8192u64.to_ne_bytes(),
                true,
                seg(SegmentError::SizeMismatch {
                    expected: 640 + 2 * 8192,
                    actual: 640 + 2 * 4096,
                }),
            ),
        ];
        for (at, bytes, reseal, want) in cases {
            let mut buf = segment(4096, 2);
            corrupt(&mut buf, at, bytes, reseal);
            assert_eq!(attach_buf(&buf).unwrap_err(), want, "bytes {at}..");
        }
        let mut buf = segment(4096, 2);
        corrupt(&mut buf, 28, &1u32.to_ne_bytes(), true);
        assert_eq!(
            attach_buf(&buf).unwrap_err(),
            AttachError::BadMaxProducers { found: 2 }
        );
    }

    #[test]
    fn short_and_misaligned_regions_are_refused_before_reading() {
        let buf = segment(4096, 1);
        // SAFETY: a prefix of a readable buffer.
        let err = unsafe { attach(buf.as_ptr(), HEADER_SIZE - 1) }.unwrap_err();
        let len = HEADER_SIZE - 1;
        assert_eq!(err, AttachError::Segment(SegmentError::TooSmall { len }));
        // SAFETY: one byte in, still inside the buffer for len - 1 bytes.
        let err = unsafe { attach(buf.as_ptr().add(1), buf.len() - 1) }.unwrap_err();
        assert_eq!(err, AttachError::Segment(SegmentError::Misaligned));
        assert_eq!(
            std::format!("{}", AttachError::Spsc),
            "an SPSC segment, not an MPSC one"
        );
    }
}
