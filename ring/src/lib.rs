//! ringproof: a lock-free single-producer / single-consumer ring buffer for
//! streaming messages between processes through POSIX shared memory.
//!
//! Modules, each importing only from those above it:
//!
//! 1. [`layout`]: the `#[repr(C)]` segment header, the record format and the
//!    offsets of the protocol's words.
//! 2. [`validate`]: untrusted bytes to a checked view or an [`AttachError`].
//! 3. [`sync`]: the seam, traits only: [`sync::Shared`] (words by offset,
//!    data borrows, fence, park/wake, crash points) and the word traits.
//! 4. [`spsc`]: the protocol, written once over [`sync::Shared`] so that loom
//!    and shuttle models run the shipped code. A new protocol is a sibling
//!    module here, with its words in its layout: [`mpsc`] (many producers,
//!    one consumer, dead producers skipped) has its own header and attach.
//! 5. [`wait`]: parking on shared futex words (the OS side of park/wake).
//! 6. [`mem`]: [`mem::MemShared`], the shipped [`sync::Shared`] over a
//!    checked segment in memory (`core` atomics, [`wait`]'s futexes).
//! 7. `heap` (feature `std`): in-process rings over heap buffers.
//! 8. `shm` (feature `shm`): named `shm_open`/`mmap` segments, role leases,
//!    the segment lifecycle, the producer and consumer endpoints.
//!
//! ```
//! let (mut producer, mut consumer) = ringproof::heap::channel(4096).unwrap();
//! producer.push(b"hello").unwrap();
//! let message = consumer.read().unwrap();
//! assert_eq!(&*message, b"hello");
//! message.release();
//! ```
//!
//! # Threads
//!
//! The shipped backend ([`mem::MemShared`], and [`heap::HeapShared`] with
//! `std`) and a [`Producer`] and a [`Consumer`] over it are `Send`: each
//! side can move to the thread that runs it (checked at compile time below
//! the module list). They are not `Sync`: a side's own state (its cached
//! index, its poisoning) is not atomic, and the view lends its data bytes to
//! one side, so a side is used by one thread at a time. None of these compile:
//!
//! ```compile_fail,E0277
//! fn is_sync<T: Sync>() {}
//! is_sync::<ringproof::mem::MemShared<()>>();
//! ```
//! ```compile_fail,E0277
//! fn is_sync<T: Sync>() {}
//! is_sync::<ringproof::Producer<ringproof::mem::MemShared<()>>>();
//! ```
//! ```compile_fail,E0277
//! fn is_sync<T: Sync>() {}
//! is_sync::<ringproof::Consumer<ringproof::mem::MemShared<()>>>();
//! ```
//! ```compile_fail,E0277
//! fn is_sync<T: Sync>() {}
//! is_sync::<ringproof::Producer<ringproof::heap::HeapShared>>();
//! ```
//! ```compile_fail,E0277
//! fn is_sync<T: Sync>() {}
//! is_sync::<ringproof::Consumer<ringproof::heap::HeapShared>>();
//! ```
//!
//! The one safe way to get both sides of an in-process ring is
//! [`heap::channel`]; attaching a side to an existing buffer
//! ([`heap::producer`], [`heap::consumer`]) is `unsafe`, because a second
//! producer (or consumer) over the same bytes would be a data race.
#![no_std]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

mod bytes;
pub mod layout;
pub mod mem;
pub mod mpsc;
pub mod spsc;
pub mod sync;
pub mod validate;
pub mod wait;

#[cfg(feature = "std")]
pub mod heap;
#[cfg(feature = "shm")]
pub mod shm;
#[cfg(feature = "testing")]
pub mod testing;

pub use spsc::{
    Consumer, Corruption, Error, PopIntoError, PopValueError, Producer, PushError, ReadError,
};
pub use validate::{AttachError, attach};

// Each side may move to another thread (the `!Sync` half is the
// `compile_fail` examples in the crate documentation).
const _: fn() = || {
    fn is_send<T: Send>() {}
    is_send::<mem::MemShared<()>>();
    is_send::<Producer<mem::MemShared<()>>>();
    is_send::<Consumer<mem::MemShared<()>>>();
    #[cfg(feature = "std")]
    {
        is_send::<heap::HeapShared>();
        is_send::<Producer<heap::HeapShared>>();
        is_send::<Consumer<heap::HeapShared>>();
    }
};
