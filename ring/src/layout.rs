//! The segment layout: the `#[repr(C)]` header and the record header.
//!
//! This module owns byte positions only. It reads and writes nothing in a live
//! segment; [`crate::validate`] turns untrusted bytes into a checked view and
//! [`crate::spsc`] runs the protocol over it. `docs/LAYOUT.md` is the prose
//! version of this file, precise enough to write a reader in another language.
//!
//! ```text
//!  offset  size  field            owner / mutability
//!  ------  ----  ---------------  ---------------------------------------------
//!       0     8  magic            creator, immutable  b"RINGPRF\0"
//!       8     4  version          creator, immutable  LAYOUT_VERSION
//!      12     4  header_size      creator, immutable  HEADER_SIZE (384)
//!      16     8  capacity         creator, immutable  power of two
//!      24     8  checksum         creator, immutable  FNV-1a 64 of bytes 0..24
//!      32     4  producer_gen     producer (atomic)   bumped by each new producer
//!      36     4  consumer_gen     consumer (atomic)   bumped by each new consumer
//!      40    88  reserved         zero
//!     128     8  head             consumer (atomic)   released position
//!     136     4  producer_wait    both (futex word)   1 while the producer parks
//!     140   116  pad              zero
//!     256     8  tail             producer (atomic)   committed position
//!     264     4  consumer_wait    both (futex word)   1 while the consumer parks
//!     268     4  closed           producer (atomic)   1 once the producer closed
//!     272   112  pad              zero
//!     384   cap  data             records, see below
//! ```
//!
//! `head` and `tail` are byte positions that only grow (they wrap at 2^64,
//! which at 10 GB/s takes 58 years); the record at position `p` starts at data
//! offset `p & (capacity - 1)`. Each sits alone on a 128-byte line, with the
//! futex word its *reader* writes, because x86_64 prefetches cache lines in
//! adjacent pairs (crossbeam's `CachePadded` makes the same choice).
//!
//! A record is an 8-byte header followed by the payload, padded to 8 bytes:
//!
//! ```text
//!  0               4               8
//!  +---------------+---------------+-------------------------------+
//!  |  len (u32)    |  tag (u32)    |  payload (len bytes) + pad    |
//!  +---------------+---------------+-------------------------------+
//! ```
//!
//! `tag` is the record's kind, [`RECORD_MESSAGE`] or [`RECORD_PADDING`],
//! XORed with the lap of the record's own position ([`record_tag`]): a record
//! left from an earlier lap never reads as one of this lap, so a `tail`
//! pushed ahead by exactly a capacity is `Corrupted`, not stale data
//! delivered again. A padding record fills
//! the space from its position to the end of the data region when a message
//! does not fit before the wrap; its `len` is that space minus 8.
//! All integers are native-endian (the segment never leaves the host).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The first eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"RINGPRF\0";
/// The layout version this build reads and writes.
pub const LAYOUT_VERSION: u32 = 2;
/// Size of the header in bytes; the data region starts here.
pub const HEADER_SIZE: usize = 384;
/// Cache-line separation between the shared indices (two 64-byte lines).
pub const LINE: usize = 128;
/// Smallest data region: room for a few records.
pub const MIN_CAPACITY: u64 = 32;
/// Largest data region (1 TiB).
pub const MAX_CAPACITY: u64 = 1 << 40;
/// Positions beyond this are corrupt: 2^62 bytes is 14 years at 10 GB/s, and
/// keeping positions below it keeps `position + capacity` from overflowing.
pub const MAX_POSITION: u64 = 1 << 62;
/// Records start on multiples of this.
pub const RECORD_ALIGN: u64 = 8;
/// Size of the record header.
pub const RECORD_HEADER: u64 = 8;
/// `kind` of a record that carries a message.
pub const RECORD_MESSAGE: u32 = 0x4D53_4701;
/// `kind` of a record that skips to the end of the data region.
pub const RECORD_PADDING: u32 = 0x5041_4401;

/// The segment header as it lies in memory.
///
/// The immutable fields are plain integers; the shared words are `u64`/`u32`
/// here and are accessed as atomics through [`crate::sync`]. Use
/// [`Header::new`] to build a fresh one and [`crate::validate`] to check one
/// that came from shared memory.
#[repr(C)]
#[derive(Clone, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// Size of the data region: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    pub capacity: u64,
    /// [`checksum`] of the three fields above.
    pub checksum: u64,
    /// Generation of the producer role: incremented by each producer that claims it.
    pub producer_gen: u32,
    /// Generation of the consumer role: incremented by each consumer that claims it.
    pub consumer_gen: u32,
    /// Zero.
    pub reserved: [u8; 88],
    /// Released position: everything before it is free for the producer.
    /// Written only by the consumer. Always a multiple of 8 and `tail - head <= capacity`.
    pub head: u64,
    /// Futex word: 1 while the producer is parked waiting for space.
    pub producer_wait: u32,
    /// Zero.
    pub pad_head: [u8; 116],
    /// Committed position: everything in `[head, tail)` is readable records.
    /// Written only by the producer. Always a multiple of 8.
    pub tail: u64,
    /// Futex word: 1 while the consumer is parked waiting for a message.
    pub consumer_wait: u32,
    /// 1 once the producer closed the ring (end of stream after `tail`).
    pub closed: u32,
    /// Zero.
    pub pad_tail: [u8; 112],
}

const _: () = {
    assert!(size_of::<Header>() == HEADER_SIZE);
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, header_size) == 12);
    assert!(offset_of!(Header, capacity) == 16);
    assert!(offset_of!(Header, checksum) == 24);
    assert!(offset_of!(Header, producer_gen) == 32);
    assert!(offset_of!(Header, consumer_gen) == 36);
    assert!(offset_of!(Header, reserved) == 40);
    assert!(offset_of!(Header, head) == LINE);
    assert!(offset_of!(Header, producer_wait) == LINE + 8);
    assert!(offset_of!(Header, tail) == 2 * LINE);
    assert!(offset_of!(Header, consumer_wait) == 2 * LINE + 8);
    assert!(offset_of!(Header, closed) == 2 * LINE + 12);
    assert!(offset_of!(Header, pad_tail) + 112 == HEADER_SIZE);
    assert!(HEADER_SIZE % LINE == 0);
    assert!(MIN_CAPACITY.is_power_of_two() && MAX_CAPACITY.is_power_of_two());
};

/// Byte offset of `head` in the segment.
pub const HEAD_OFFSET: usize = offset_of!(Header, head);
/// Byte offset of `tail` in the segment.
pub const TAIL_OFFSET: usize = offset_of!(Header, tail);
/// Byte offset of `closed` in the segment.
pub const CLOSED_OFFSET: usize = offset_of!(Header, closed);
/// Byte offset of `producer_wait` in the segment.
pub const PRODUCER_WAIT_OFFSET: usize = offset_of!(Header, producer_wait);
/// Byte offset of `consumer_wait` in the segment.
pub const CONSUMER_WAIT_OFFSET: usize = offset_of!(Header, consumer_wait);
/// Byte offset of `producer_gen` in the segment.
pub const PRODUCER_GEN_OFFSET: usize = offset_of!(Header, producer_gen);
/// Byte offset of `consumer_gen` in the segment.
pub const CONSUMER_GEN_OFFSET: usize = offset_of!(Header, consumer_gen);
/// Number of header bytes covered by [`checksum`].
pub const CHECKSUMMED: usize = offset_of!(Header, checksum);

/// FNV-1a 64 over the immutable header bytes `0..24`.
pub fn checksum(immutable: &[u8; CHECKSUMMED]) -> u64 {
    fnv1a(immutable)
}

/// FNV-1a 64 over `bytes`: the checksum of every protocol's immutable
/// header fields.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Whether `capacity` is a capacity this build accepts.
pub const fn capacity_ok(capacity: u64) -> bool {
    capacity.is_power_of_two() && capacity >= MIN_CAPACITY && capacity <= MAX_CAPACITY
}

/// Largest payload a ring of `capacity` bytes accepts.
///
/// Any record of at most half the capacity fits in an empty ring wherever its
/// head is (before or after the wrap), so a producer never waits for space that
/// cannot come.
pub const fn max_message(capacity: u64) -> u64 {
    capacity / 2 - RECORD_HEADER
}

/// Bytes a record carrying `len` payload bytes occupies, header and padding included.
pub const fn record_size(len: u64) -> u64 {
    RECORD_HEADER + len.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// The lap of `position`: how many times the data region was filled before
/// it, truncated to 32 bits (`position >> log2(capacity)`).
#[inline(always)]
pub const fn lap(position: u64, capacity: u64) -> u32 {
    (position >> capacity.trailing_zeros()) as u32
}

/// The second word of the header of a record of `kind` that starts at
/// `position`: `kind ^ lap(position)`. The consumer XORs the word it finds
/// with the lap it expects and gets `kind` back only for a record written in
/// this lap.
#[inline(always)]
pub const fn record_tag(kind: u32, position: u64, capacity: u64) -> u32 {
    kind ^ lap(position, capacity)
}

/// The header size of a protocol's segment (where its data region starts)
/// and whether a record word table follows the data region.
/// [`crate::mem::MemShared`] takes it as a type parameter, so that its word
/// checks are on constants and compile away.
pub trait SegmentLayout {
    /// Size of the header in bytes (a multiple of 8).
    const HEADER_SIZE: usize;
    /// Whether the segment holds, after its `capacity` data bytes, a table
    /// of one 64-bit word per 8 data bytes
    /// ([`crate::sync::Shared::table_word64`]).
    const WORD_TABLE: bool;
}

/// Which protocol a segment holds, as its magic says: the first eight bytes
/// of every segment are [`MAGIC`] (SPSC) or [`crate::mpsc::layout::MAGIC`]
/// (MPSC). Opening a segment as the other kind is refused by the attach of
/// each protocol; the shared-memory backend names both kinds in its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RingKind {
    /// One producer, one consumer ([`crate::spsc`]).
    Spsc,
    /// Many producers, one consumer ([`crate::mpsc`]).
    Mpsc,
}

impl RingKind {
    /// The kind whose magic `magic` is, or `None` (not a ringproof segment,
    /// or not initialised yet).
    pub fn from_magic(magic: &[u8]) -> Option<RingKind> {
        if magic == MAGIC {
            Some(RingKind::Spsc)
        } else if magic == crate::mpsc::layout::MAGIC {
            Some(RingKind::Mpsc)
        } else {
            None
        }
    }

    /// The magic of this kind.
    pub const fn magic(self) -> [u8; 8] {
        match self {
            RingKind::Spsc => MAGIC,
            RingKind::Mpsc => crate::mpsc::layout::MAGIC,
        }
    }

    /// The lower-case name (`spsc`, `mpsc`), as the CLI spells `--mode`.
    pub const fn name(self) -> &'static str {
        match self {
            RingKind::Spsc => "spsc",
            RingKind::Mpsc => "mpsc",
        }
    }
}

impl core::fmt::Display for RingKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RingKind::Spsc => "SPSC",
            RingKind::Mpsc => "MPSC",
        })
    }
}

/// The SPSC segment of this module.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spsc;

impl SegmentLayout for Spsc {
    const HEADER_SIZE: usize = HEADER_SIZE;
    const WORD_TABLE: bool = false;
}

/// Total segment size for a data region of `capacity` bytes.
pub const fn segment_size(capacity: u64) -> u64 {
    HEADER_SIZE as u64 + capacity
}

impl Header {
    /// A fresh header for an empty ring of `capacity` bytes, or `None` when
    /// `capacity` is not accepted (see [`capacity_ok`]).
    pub fn new(capacity: u64) -> Option<Self> {
        if !capacity_ok(capacity) {
            return None;
        }
        let mut header = Header {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            header_size: HEADER_SIZE as u32,
            capacity,
            checksum: 0,
            producer_gen: 0,
            consumer_gen: 0,
            reserved: [0; 88],
            head: 0,
            producer_wait: 0,
            pad_head: [0; 116],
            tail: 0,
            consumer_wait: 0,
            closed: 0,
            pad_tail: [0; 112],
        };
        header.checksum = checksum(header.immutable_bytes());
        Some(header)
    }

    /// The bytes covered by the checksum.
    pub fn immutable_bytes(&self) -> &[u8; CHECKSUMMED] {
        let bytes = self.as_bytes();
        let mut out = &[0u8; CHECKSUMMED];
        if let Some(prefix) = bytes.first_chunk::<CHECKSUMMED>() {
            out = prefix;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ring_kind_is_found_again_from_its_magic_and_the_magics_differ() {
        for kind in [RingKind::Spsc, RingKind::Mpsc] {
            assert_eq!(RingKind::from_magic(&kind.magic()), Some(kind));
        }
        assert_ne!(RingKind::Spsc.magic(), RingKind::Mpsc.magic());
        assert_eq!(RingKind::from_magic(&[0; 8]), None);
    }

    #[test]
    fn header_is_384_bytes_with_indices_on_their_own_lines() {
        assert_eq!(size_of::<Header>(), 384);
        assert_eq!(HEAD_OFFSET, 128);
        assert_eq!(TAIL_OFFSET, 256);
        assert_eq!(HEAD_OFFSET / LINE, 1);
        assert_eq!(TAIL_OFFSET / LINE, 2);
        assert_eq!(core::mem::align_of::<Header>(), 8);
    }

    #[test]
    fn new_header_checksum_covers_immutable_fields() {
        let header = Header::new(4096).unwrap();
        assert_eq!(header.checksum, checksum(header.immutable_bytes()));
        let mut other = header.clone();
        other.capacity = 8192;
        assert_ne!(checksum(other.immutable_bytes()), header.checksum);
    }

    #[test]
    fn capacity_must_be_bounded_power_of_two() {
        assert!(Header::new(0).is_none());
        assert!(Header::new(16).is_none());
        assert!(Header::new(100).is_none());
        assert!(Header::new(MAX_CAPACITY * 2).is_none());
        assert!(Header::new(MIN_CAPACITY).is_some());
        assert!(Header::new(MAX_CAPACITY).is_some());
    }

    #[test]
    fn record_tags_differ_from_lap_to_lap_and_give_the_kind_back() {
        let cap = 4096;
        assert_eq!(record_tag(RECORD_MESSAGE, 0, cap), RECORD_MESSAGE);
        assert_eq!(record_tag(RECORD_MESSAGE, cap - 8, cap), RECORD_MESSAGE);
        assert_eq!(record_tag(RECORD_MESSAGE, cap, cap), RECORD_MESSAGE ^ 1);
        assert_eq!(lap(5 * cap + 16, cap), 5);
        for position in [0, 8, cap, 3 * cap + 24, (1 << 40) + 8] {
            let tag = record_tag(RECORD_PADDING, position, cap);
            assert_eq!(tag ^ lap(position, cap), RECORD_PADDING);
            assert_ne!(record_tag(RECORD_PADDING, position + cap, cap), tag);
        }
    }

    #[test]
    fn record_sizes_round_up_to_eight() {
        assert_eq!(record_size(0), 8);
        assert_eq!(record_size(1), 16);
        assert_eq!(record_size(8), 16);
        assert_eq!(record_size(9), 24);
        assert_eq!(max_message(64), 24);
        assert!(record_size(max_message(64)) <= 32);
    }
}
