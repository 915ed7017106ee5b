//! Attach: from untrusted bytes to a checked view, or a typed [`AttachError`].
//!
//! This is the entry point the `attach` fuzz target calls. It reads the
//! immutable header fields once each (volatile reads into locals: a hostile
//! peer rewriting them meanwhile cannot make us check one value and use
//! another), checks them, and never panics or reads outside `base..base+len`.
//! The live words (`head`, `tail`, record lengths) are checked later, on every
//! use, by [`crate::spsc`].

use core::fmt;

use crate::layout::{
    CHECKSUMMED, HEADER_SIZE, LAYOUT_VERSION, MAGIC, MAX_CAPACITY, MIN_CAPACITY,
    PRODUCER_GEN_OFFSET, capacity_ok, checksum, segment_size,
};

/// Why a region is not a usable segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// The region is shorter than the header.
    TooSmall {
        /// Bytes available.
        len: usize,
    },
    /// The region does not start on an 8-byte boundary.
    Misaligned,
    /// The first eight bytes are not [`MAGIC`]; all zero means nobody has
    /// initialised it yet.
    BadMagic {
        /// Whether the magic is all zero (not yet initialised).
        zero: bool,
    },
    /// The layout version is not one this build reads.
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The header size field is not [`HEADER_SIZE`].
    BadHeaderSize {
        /// The size found.
        found: u32,
    },
    /// The capacity is not a power of two in the accepted range.
    BadCapacity {
        /// The capacity found.
        found: u64,
    },
    /// The checksum does not match the immutable fields.
    ChecksumMismatch,
    /// The region's length is not header plus capacity.
    SizeMismatch {
        /// Bytes the header implies.
        expected: u64,
        /// Bytes available.
        actual: u64,
    },
}

impl fmt::Display for AttachError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AttachError::TooSmall { len } => write!(
                f,
                "segment too small: {len} bytes, a ring needs at least {} bytes",
                HEADER_SIZE as u64 + MIN_CAPACITY
            ),
            AttachError::Misaligned => f.write_str("segment is not 8-byte aligned"),
            AttachError::BadMagic { zero: true } => {
                f.write_str("segment is not initialised (magic is zero)")
            }
            AttachError::BadMagic { zero: false } => {
                f.write_str("not a ringproof segment (bad magic)")
            }
            AttachError::UnsupportedVersion { found } => write!(
                f,
                "unsupported layout version {found} (this build reads {LAYOUT_VERSION})"
            ),
            AttachError::BadHeaderSize { found } => {
                write!(f, "bad header size {found} (expected {HEADER_SIZE})")
            }
            AttachError::BadCapacity { found } => write!(
                f,
                "bad capacity {found} (must be a power of two from {MIN_CAPACITY} to {MAX_CAPACITY})"
            ),
            AttachError::ChecksumMismatch => f.write_str("header checksum mismatch"),
            AttachError::SizeMismatch { expected, actual } => write!(
                f,
                "segment size mismatch: header says {expected} bytes, segment has {actual}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AttachError {}

/// A region whose header passed every check of [`attach`].
///
/// Holds only the pointer and the checked capacity; it does not own the memory.
#[derive(Clone, Copy, Debug)]
pub struct Checked {
    base: *mut u8,
    capacity: u64,
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
}

/// Bytes of the header [`attach`] reads: the checksummed fields and the
/// checksum, which end where the role generations begin.
const IMMUTABLE: usize = PRODUCER_GEN_OFFSET;
const _: () = assert!(IMMUTABLE == CHECKSUMMED + 8);

/// Checks the header at `base` against `len`, the region's real size.
///
/// Reads at most [`HEADER_SIZE`] bytes, and none when `len` is smaller.
///
/// The checks themselves live in the safe `check_region` and
/// `check_header`, so that mutation testing (which skips `unsafe fn`)
/// reaches them; this wrapper only reads the immutable bytes once.
///
/// # Safety
///
/// `base` is valid for reads of `len` bytes for the duration of the call.
/// The bytes may change concurrently (they come from another process).
pub unsafe fn attach(base: *const u8, len: usize) -> Result<Checked, AttachError> {
    check_region(len, base.align_offset(8) == 0, HEADER_SIZE)?;
    // SAFETY: IMMUTABLE = 32 <= HEADER_SIZE <= len (`check_region` returned
    // `Ok`), and `base` is readable for `len` bytes.
    let immutable = unsafe { read_once::<IMMUTABLE>(base) };
    let capacity = check_header(&immutable, len)?;
    Ok(Checked {
        base: base.cast_mut(),
        capacity,
    })
}

/// Copies the first `N` bytes at `base`, each read exactly once (volatile):
/// a peer rewriting them meanwhile cannot make a check see one value and a
/// use another.
///
/// # Safety
///
/// `base` is valid for reads of `N` bytes.
pub(crate) unsafe fn read_once<const N: usize>(base: *const u8) -> [u8; N] {
    let mut bytes = [0u8; N];
    for (i, byte) in bytes.iter_mut().enumerate() {
        // SAFETY: i < N bytes the caller lets us read.
        *byte = unsafe { base.add(i).read_volatile() };
    }
    bytes
}

/// The checks an attach makes before it reads anything: the region holds a
/// whole header of `header_size` bytes and starts on an 8-byte boundary.
pub(crate) fn check_region(
    len: usize,
    aligned: bool,
    header_size: usize,
) -> Result<(), AttachError> {
    if len < header_size {
        return Err(AttachError::TooSmall { len });
    }
    if !aligned {
        return Err(AttachError::Misaligned);
    }
    Ok(())
}

/// Checks a copy of the header's first `IMMUTABLE` bytes against `len`, the
/// region's real size; returns the checked capacity.
///
/// It takes a copy, not a slice of the segment: the segment may change under
/// us, and a copy is checked and used as one value.
fn check_header(immutable: &[u8; IMMUTABLE], len: usize) -> Result<u64, AttachError> {
    let field = |at: usize| -> [u8; 8] {
        let mut out = [0u8; 8];
        out.copy_from_slice(&immutable[at..at + 8]);
        out
    };
    let magic = field(0);
    if magic != MAGIC {
        return Err(AttachError::BadMagic {
            zero: magic == [0; 8],
        });
    }
    let word = field(8);
    let version = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
    let header_size = u32::from_ne_bytes([word[4], word[5], word[6], word[7]]);
    if version != LAYOUT_VERSION {
        return Err(AttachError::UnsupportedVersion { found: version });
    }
    if header_size as usize != HEADER_SIZE {
        return Err(AttachError::BadHeaderSize { found: header_size });
    }
    let capacity = u64::from_ne_bytes(field(16));
    if !capacity_ok(capacity) {
        return Err(AttachError::BadCapacity { found: capacity });
    }
    let stored = u64::from_ne_bytes(field(CHECKSUMMED));
    let mut covered = [0u8; CHECKSUMMED];
    covered.copy_from_slice(&immutable[..CHECKSUMMED]);
    if checksum(&covered) != stored {
        return Err(AttachError::ChecksumMismatch);
    }
    let expected = segment_size(capacity);
    if expected != len as u64 {
        return Err(AttachError::SizeMismatch {
            expected,
            actual: len as u64,
        });
    }
    Ok(capacity)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::heap::AlignedBuf;
    use crate::layout::Header;
    use zerocopy::IntoBytes;

    fn fresh(capacity: u64) -> AlignedBuf {
        AlignedBuf::segment(capacity).unwrap()
    }

    fn attach_buf(buf: &AlignedBuf) -> Result<Checked, AttachError> {
        // SAFETY: the buffer is readable for its length.
        unsafe { attach(buf.as_ptr(), buf.len()) }
    }

    /// Rewrites header byte range `at..at+bytes.len()` and, when `reseal`,
    /// recomputes the checksum so that only the targeted check can fail.
    fn corrupt(buf: &mut AlignedBuf, at: usize, bytes: &[u8], reseal: bool) {
        buf.bytes_mut()[at..at + bytes.len()].copy_from_slice(bytes);
        if reseal {
            let mut covered = [0u8; CHECKSUMMED];
            covered.copy_from_slice(&buf.bytes_mut()[..CHECKSUMMED]);
            let sum = checksum(&covered);
            buf.bytes_mut()[CHECKSUMMED..CHECKSUMMED + 8].copy_from_slice(&sum.to_ne_bytes());
        }
    }

    #[test]
    fn fresh_segment_attaches() {
        let buf = fresh(4096);
        let checked = attach_buf(&buf).unwrap();
        assert_eq!(checked.capacity(), 4096);
    }

    #[test]
    fn rejects_each_corrupted_field_with_its_error() {
        let mut buf = fresh(4096);
        corrupt(&mut buf, 0, b"XINGPRF\0", true);
        assert_eq!(
            attach_buf(&buf).unwrap_err(),
            AttachError::BadMagic { zero: false }
        );

        let mut buf = fresh(4096);
        corrupt(&mut buf, 0, &[0; 8], true);
        assert_eq!(
            attach_buf(&buf).unwrap_err(),
            AttachError::BadMagic { zero: true }
        );

        let mut buf = fresh(4096);
        corrupt(&mut buf, 8, &7u32.to_ne_bytes(), true);
        assert_eq!(
            attach_buf(&buf).unwrap_err(),
            AttachError::UnsupportedVersion { found: 7 }
        );

        let mut buf = fresh(4096);
        corrupt(&mut buf, 12, &512u32.to_ne_bytes(), true);
        assert_eq!(
            attach_buf(&buf).unwrap_err(),
            AttachError::BadHeaderSize { found: 512 }
        );

        let mut buf = fresh(4096);
        corrupt(&mut buf, 16, &4000u64.to_ne_bytes(), true);
        assert_eq!(
            attach_buf(&buf).unwrap_err(),
            AttachError::BadCapacity { found: 4000 }
        );

        let mut buf = fresh(4096);
        corrupt(&mut buf, 16, &2048u64.to_ne_bytes(), false);
        assert_eq!(attach_buf(&buf).unwrap_err(), AttachError::ChecksumMismatch);

        let mut buf = fresh(4096);
        corrupt(&mut buf, 16, &8192u64.to_ne_bytes(), true);
        assert_eq!(
            attach_buf(&buf).unwrap_err(),
            AttachError::SizeMismatch {
                expected: 384 + 8192,
                actual: 384 + 4096
            }
        );
    }

    #[test]
    fn too_small_and_misaligned_regions_are_rejected_before_reading() {
        let buf = fresh(4096);
        // SAFETY: a prefix of a readable buffer.
        let err = unsafe { attach(buf.as_ptr(), 100) }.unwrap_err();
        assert_eq!(err, AttachError::TooSmall { len: 100 });
        // SAFETY: one byte in, still inside the buffer for len - 1 bytes.
        let err = unsafe { attach(buf.as_ptr().add(1), buf.len() - 1) }.unwrap_err();
        assert_eq!(err, AttachError::Misaligned);
    }

    #[test]
    fn region_of_exactly_the_header_size_is_read_and_then_too_short_for_its_data() {
        let buf = fresh(4096);
        // SAFETY: a prefix of a readable buffer.
        let err = unsafe { attach(buf.as_ptr(), HEADER_SIZE) }.unwrap_err();
        assert_eq!(
            err,
            AttachError::SizeMismatch {
                expected: HEADER_SIZE as u64 + 4096,
                actual: HEADER_SIZE as u64
            }
        );
        // SAFETY: a prefix of a readable buffer.
        let err = unsafe { attach(buf.as_ptr(), HEADER_SIZE - 1) }.unwrap_err();
        assert_eq!(
            err,
            AttachError::TooSmall {
                len: HEADER_SIZE - 1
            }
        );
    }

    #[test]
    fn errors_display_one_clear_line() {
        let header = Header::new(64).unwrap();
        assert_eq!(header.as_bytes().len(), HEADER_SIZE);
        let cases = [
            (
                AttachError::TooSmall { len: 3 },
                "segment too small: 3 bytes, a ring needs at least 416 bytes",
            ),
            (AttachError::Misaligned, "segment is not 8-byte aligned"),
            (
                AttachError::BadMagic { zero: true },
                "segment is not initialised (magic is zero)",
            ),
            (
                AttachError::BadMagic { zero: false },
                "not a ringproof segment (bad magic)",
            ),
            (
                AttachError::UnsupportedVersion { found: 7 },
                "unsupported layout version 7 (this build reads 2)",
            ),
            (
                AttachError::BadHeaderSize { found: 512 },
                "bad header size 512 (expected 384)",
            ),
            (
                AttachError::BadCapacity { found: 4000 },
                "bad capacity 4000 (must be a power of two from 32 to 1099511627776)",
            ),
            (AttachError::ChecksumMismatch, "header checksum mismatch"),
            (
                AttachError::SizeMismatch {
                    expected: 4480,
                    actual: 4096,
                },
                "segment size mismatch: header says 4480 bytes, segment has 4096",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(std::format!("{error}"), text);
        }
    }
}
