//! ringproof: a lock-free single-producer / single-consumer ring buffer for
//! streaming messages between processes through POSIX shared memory.
//!
//! Layers, top to bottom (data flows down, never back up):
//!
//! 1. [`layout`]: the `#[repr(C)]` segment header and record format.
//! 2. [`validate`]: untrusted bytes to a checked view or an [`AttachError`].
//! 3. [`spsc`]: the protocol, written once over the [`sync::Shared`] trait so
//!    that loom and shuttle models run the shipped code.
//! 4. `shm` (feature `shm`): `shm_open`/`mmap` segments, role leases.
//! 5. [`wait`]: parking on shared futex words.
//!
//! ```
//! let (mut producer, mut consumer) = ringproof::heap::channel(4096).unwrap();
//! producer.push(b"hello").unwrap();
//! let message = consumer.read().unwrap();
//! assert_eq!(&*message, b"hello");
//! message.release();
//! ```
#![no_std]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

pub mod layout;
pub mod spsc;
pub mod sync;
pub mod validate;
pub mod wait;

#[cfg(feature = "std")]
pub mod heap;
#[cfg(feature = "shm")]
pub mod shm;

pub use spsc::{Consumer, Corruption, Error, Producer};
pub use validate::{AttachError, attach};
