//! The MPSC segment layout: its `#[repr(C)]` header, the slot table and the
//! record header word.
//!
//! This module owns byte positions and bit positions only; [`super::validate`]
//! checks a header that came from shared memory and [`crate::mpsc`] runs the
//! protocol. `docs/LAYOUT.md` (section "MPSC") is the prose version.
//!
//! ```text
//!  offset  size  field            owner / mutability
//!  ------  ----  ---------------  ---------------------------------------------
//!       0     8  magic            creator, immutable  b"RINGMPS\0"
//!       8     4  version          creator, immutable  MPSC_VERSION
//!      12     4  header_size      creator, immutable  HEADER_SIZE (640)
//!      16     8  capacity         creator, immutable  power of two, 32 ..= 2^32
//!      24     4  max_producers    creator, immutable  1 ..= MAX_SLOTS
//!      28     4  reserved0        creator, immutable  zero
//!      32     8  checksum         creator, immutable  FNV-1a 64 of bytes 0..32
//!      40     4  consumer_gen     consumer (atomic)   bumped by each new consumer
//!      44    84  reserved         zero
//!     128     8  head             consumer (atomic)   released position
//!     136     4  producer_wait    all (futex word)    1 while a producer parks
//!     140   116  pad              zero
//!     256     8  tail             producers (atomic)  claim hint, only grows
//!     264     4  consumer_wait    all (futex word)    1 while the consumer parks
//!     268     4  closed           producers (atomic)  1 once a producer closed
//!     272   112  pad              zero
//!     384   256  slot_gen[64]     producers (atomic)  generation of each slot
//!     640   cap  data             record payloads, see below
//! 640+cap   cap  record words     one atomic u64 per 8 data bytes
//! ```
//!
//! A record is 8 unused bytes followed by the payload, padded to 8 bytes.
//! Its header **word** is the record word table's word for its first data
//! byte, outside the data region, reached only atomically
//! ([`crate::sync::Shared::table_word64`]); no payload byte is ever read as
//! a header word (`docs/LAYOUT.md`, "Why record words live in their own
//! table"):
//!
//! ```text
//!  bit 0     3          9          17              32                   64
//!      +-----+----------+----------+---------------+--------------------+
//!      |kind | slot (6) | gen (8)  | lap (15)      | len (32)           |  claimed
//!      +-----+----------+----------+---------------+--------------------+
//!      |  0  | lap (61): the lap a record may next start here in        |  free
//!      +-----+----------------------------------------------------------+
//! ```

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::layout::{LINE, MIN_CAPACITY, SegmentLayout, fnv1a};

/// The first eight bytes of every MPSC segment (an SPSC segment starts with
/// [`crate::layout::MAGIC`]).
pub const MAGIC: [u8; 8] = *b"RINGMPS\0";
/// The MPSC layout version this build reads and writes.
pub const MPSC_VERSION: u32 = 2;
/// Size of the header in bytes; the data region starts here.
pub const HEADER_SIZE: usize = 640;
/// Largest data region: a payload length must fit the 32-bit `len` field.
pub const MAX_CAPACITY: u64 = 1 << 32;
/// Producer slots in the table (the slot field has 6 bits).
pub const MAX_SLOTS: usize = 64;

/// The MPSC segment as [`crate::mem::MemShared`]'s layout parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mpsc;

impl SegmentLayout for Mpsc {
    const HEADER_SIZE: usize = HEADER_SIZE;
    const WORD_TABLE: bool = true;
}

/// The MPSC segment header as it lies in memory.
#[repr(C)]
#[derive(Clone, Debug, FromBytes, IntoBytes, KnownLayout, Immutable)]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`MPSC_VERSION`].
    pub version: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// Size of the data region: a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    pub capacity: u64,
    /// Slots producers may take: `1..=MAX_SLOTS`.
    pub max_producers: u32,
    /// Zero.
    pub reserved0: u32,
    /// [`fnv1a`] of the five fields above.
    pub checksum: u64,
    /// Generation of the consumer role.
    pub consumer_gen: u32,
    /// Zero.
    pub reserved: [u8; 84],
    /// Released position; written only by the consumer.
    pub head: u64,
    /// Futex word: 1 while a producer is parked waiting for space.
    pub producer_wait: u32,
    /// Zero.
    pub pad_head: [u8; 116],
    /// Claim hint: no record before it is free. Only grows; any producer.
    pub tail: u64,
    /// Futex word: 1 while the consumer is parked waiting for a record.
    pub consumer_wait: u32,
    /// 1 once a producer closed the stream.
    pub closed: u32,
    /// Zero.
    pub pad_tail: [u8; 112],
    /// Generation of each producer slot: bumped by each producer taking it.
    pub slot_gen: [u32; MAX_SLOTS],
}

const _: () = {
    assert!(size_of::<Header>() == HEADER_SIZE);
    assert!(offset_of!(Header, version) == 8);
    assert!(offset_of!(Header, header_size) == 12);
    assert!(offset_of!(Header, capacity) == 16);
    assert!(offset_of!(Header, max_producers) == 24);
    assert!(offset_of!(Header, reserved0) == 28);
    assert!(offset_of!(Header, checksum) == CHECKSUMMED);
    assert!(offset_of!(Header, consumer_gen) == 40);
    assert!(offset_of!(Header, head) == LINE);
    assert!(offset_of!(Header, producer_wait) == LINE + 8);
    assert!(offset_of!(Header, tail) == 2 * LINE);
    assert!(offset_of!(Header, consumer_wait) == 2 * LINE + 8);
    assert!(offset_of!(Header, closed) == 2 * LINE + 12);
    assert!(offset_of!(Header, slot_gen) == 3 * LINE);
    assert!(HEADER_SIZE % LINE == 0 && MAX_CAPACITY.is_power_of_two());
};

/// Byte offset of `head`.
pub const HEAD_OFFSET: usize = offset_of!(Header, head);
/// Byte offset of the `tail` hint.
pub const TAIL_OFFSET: usize = offset_of!(Header, tail);
/// Byte offset of `closed`.
pub const CLOSED_OFFSET: usize = offset_of!(Header, closed);
/// Byte offset of `producer_wait`.
pub const PRODUCER_WAIT_OFFSET: usize = offset_of!(Header, producer_wait);
/// Byte offset of `consumer_wait`.
pub const CONSUMER_WAIT_OFFSET: usize = offset_of!(Header, consumer_wait);
/// Byte offset of `consumer_gen`.
pub const CONSUMER_GEN_OFFSET: usize = offset_of!(Header, consumer_gen);
/// Byte offset of slot 0's generation; slot `i` is at `+ 4 * i`.
pub const SLOT_GEN_OFFSET: usize = offset_of!(Header, slot_gen);
/// Bytes covered by the checksum.
pub const CHECKSUMMED: usize = 32;

/// Whether `capacity` is one an MPSC segment accepts.
pub const fn capacity_ok(capacity: u64) -> bool {
    capacity.is_power_of_two() && capacity >= MIN_CAPACITY && capacity <= MAX_CAPACITY
}

/// Total segment size for a data region of `capacity` bytes: the header,
/// the data region, then the record word table (one word per 8 data bytes).
pub const fn segment_size(capacity: u64) -> u64 {
    HEADER_SIZE as u64 + 2 * capacity
}

/// Byte offset of the record word table: right after the data region.
pub const fn table_offset(capacity: u64) -> u64 {
    HEADER_SIZE as u64 + capacity
}

impl Header {
    /// A fresh header for an empty MPSC ring of `capacity` bytes and
    /// `max_producers` slots, or `None` when either is not accepted.
    pub fn new(capacity: u64, max_producers: u32) -> Option<Self> {
        if !capacity_ok(capacity) || max_producers == 0 || max_producers as usize > MAX_SLOTS {
            return None;
        }
        let mut header = Header::new_zeroed();
        header.magic = MAGIC;
        header.version = MPSC_VERSION;
        header.header_size = HEADER_SIZE as u32;
        header.capacity = capacity;
        header.max_producers = max_producers;
        header.checksum = fnv1a(&header.as_bytes()[..CHECKSUMMED]);
        Some(header)
    }
}

/// Record kinds: the low [`KIND_BITS`] bits of a record header word.
pub mod kind {
    /// Nobody has claimed a record here in the lap the word names.
    pub const FREE: u64 = 0;
    /// Claimed by the producer in the word's slot; payload being written.
    pub const UNCOMMITTED: u64 = 1;
    /// A committed message: `len` payload bytes follow.
    pub const MESSAGE: u64 = 2;
    /// Fills the rest of the data region; committed when claimed.
    pub const PADDING: u64 = 3;
    /// A claim whose producer died or gave it up: skip `len` bytes' record.
    pub const SKIPPED: u64 = 4;
    /// The end of the stream: put by the consumer, with `len` 0, at the
    /// first free record place once a producer closed; never released.
    /// Producers that reach it refuse to push.
    pub const END: u64 = 5;
}

/// Bits of the kind field.
pub const KIND_BITS: u32 = 3;
/// Bits of the generation field of a claimed record (the low bits of the
/// slot's generation).
pub const GEN_BITS: u32 = 8;
/// Bits of the lap field of a claimed record (the low bits of the lap).
pub const CLAIM_LAP_BITS: u32 = 15;
const SLOT_SHIFT: u32 = KIND_BITS;
const GEN_SHIFT: u32 = SLOT_SHIFT + 6;
const LAP_SHIFT: u32 = GEN_SHIFT + GEN_BITS;
const LEN_SHIFT: u32 = 32;
const _: () = assert!(LAP_SHIFT + CLAIM_LAP_BITS == LEN_SHIFT && (1 << 6) == MAX_SLOTS);

/// A claimed record header, as its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// One of [`kind`]'s values other than `FREE` (unchecked here).
    pub kind: u64,
    /// The producer slot that claimed it.
    pub slot: u8,
    /// The low [`GEN_BITS`] bits of that slot's generation.
    pub gen_low: u32,
    /// The low [`CLAIM_LAP_BITS`] bits of the lap of its position.
    pub lap_low: u32,
    /// Payload length.
    pub len: u32,
}

/// The low bits of a slot generation, as a claim carries them.
pub const fn gen_low(generation: u32) -> u32 {
    generation & ((1 << GEN_BITS) - 1)
}

/// The low bits of a lap, as a claim carries them.
pub const fn lap_low(lap: u64) -> u32 {
    (lap & ((1 << CLAIM_LAP_BITS) - 1)) as u32
}

/// The kind field of a header word.
pub const fn kind_of(word: u64) -> u64 {
    word & ((1 << KIND_BITS) - 1)
}

/// The word of a free record place whose next record starts in `lap`.
pub const fn free_word(lap: u64) -> u64 {
    lap << KIND_BITS
}

impl Claim {
    /// The header word.
    pub const fn word(self) -> u64 {
        self.kind
            | (self.slot as u64 & (MAX_SLOTS as u64 - 1)) << SLOT_SHIFT
            | (gen_low(self.gen_low) as u64) << GEN_SHIFT
            | (lap_low(self.lap_low as u64) as u64) << LAP_SHIFT
            | (self.len as u64) << LEN_SHIFT
    }

    /// The fields of a word whose kind is not `FREE`.
    pub const fn from_word(word: u64) -> Self {
        Claim {
            kind: kind_of(word),
            slot: ((word >> SLOT_SHIFT) & (MAX_SLOTS as u64 - 1)) as u8,
            gen_low: ((word >> GEN_SHIFT) & ((1 << GEN_BITS) - 1)) as u32,
            lap_low: ((word >> LAP_SHIFT) & ((1 << CLAIM_LAP_BITS) - 1)) as u32,
            len: (word >> LEN_SHIFT) as u32,
        }
    }

    /// The same claim with another kind (commit, skip).
    pub const fn with_kind(self, kind: u64) -> Self {
        Claim { kind, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_640_bytes_with_its_words_on_their_own_lines() {
        assert_eq!(size_of::<Header>(), 640);
        assert_eq!((HEAD_OFFSET, TAIL_OFFSET, SLOT_GEN_OFFSET), (128, 256, 384));
        let header = Header::new(4096, 3).unwrap();
        assert_eq!(header.checksum, fnv1a(&header.as_bytes()[..32]));
        assert!(Header::new(4096, 0).is_none());
        assert!(Header::new(4096, 65).is_none());
        assert!(Header::new(MAX_CAPACITY * 2, 1).is_none());
        assert!(Header::new(MAX_CAPACITY, 64).is_some());
    }

    #[test]
    fn claim_words_round_trip_every_field() {
        let claim = Claim {
            kind: kind::UNCOMMITTED,
            slot: 63,
            gen_low: 0xAB,
            lap_low: 0x7FFF,
            len: u32::MAX,
        };
        assert_eq!(Claim::from_word(claim.word()), claim);
        let committed = claim.with_kind(kind::MESSAGE);
        assert_eq!(Claim::from_word(committed.word()).kind, kind::MESSAGE);
        assert_eq!(committed.word() & !7, claim.word() & !7);
        assert_eq!(free_word(0), 0, "a zeroed region is free in lap 0");
        assert_eq!(free_word(5) & 7, kind::FREE);
        assert_eq!((gen_low(0x1FF), lap_low(0x1_8001)), (0xFF, 0x0001));
    }
}
