//! Parking on a shared futex word.
//!
//! The waiter and the waker are different processes, so these are the
//! *shared* futex operations (no `FUTEX_PRIVATE_FLAG`): the kernel keys the
//! wait queue on the physical page, which both mappings share. The protocol
//! calls them only after spinning, and wakes only when the other side has
//! said it parks (its futex word is 1), so the fast path makes no syscall.
//! Without the `std` feature there is no kernel to ask: parking spins.
#![allow(clippy::disallowed_types)]

use core::sync::atomic::AtomicU32;
use core::time::Duration;

/// Blocks while `*word == expected`, at most `timeout`; may return early.
#[cfg(all(feature = "std", target_os = "linux"))]
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let spec = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let spec_ptr = spec
        .as_ref()
        .map_or(core::ptr::null(), |s| s as *const libc::timespec);
    // SAFETY: FUTEX_WAIT reads the aligned u32 behind `word` (valid for the
    // call) and the optional timespec on our stack; it writes nothing. Every
    // outcome (woken, EAGAIN when the value changed, ETIMEDOUT, EINTR) means
    // "re-check", so the result is ignored.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            spec_ptr,
        );
    }
}

/// Wakes every waiter on `word`.
#[cfg(all(feature = "std", target_os = "linux"))]
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; it reads nothing.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

/// Without a kernel to park in, waiting is a bounded spin.
#[cfg(not(all(feature = "std", target_os = "linux")))]
pub fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) {
    for _ in 0..1024 {
        // Relaxed: only a hint; the caller re-checks the ring with Acquire loads.
        if word.load(core::sync::atomic::Ordering::Relaxed) != expected {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Without a kernel, there is nobody parked to wake.
#[cfg(not(all(feature = "std", target_os = "linux")))]
pub fn futex_wake(_word: &AtomicU32) {}

#[cfg(all(test, feature = "std", target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    #[test]
    fn wait_returns_at_once_when_value_differs() {
        let word = AtomicU32::new(0);
        let start = Instant::now();
        futex_wait(&word, 1, Some(Duration::from_secs(5)));
        assert!(start.elapsed() < Duration::from_secs(4));
    }

    #[test]
    fn wake_releases_a_parked_thread() {
        let word = Arc::new(AtomicU32::new(1));
        let other = Arc::clone(&word);
        let waiter = std::thread::spawn(move || {
            while other.load(Ordering::Acquire) == 1 {
                futex_wait(&other, 1, None);
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        word.store(0, Ordering::Release);
        futex_wake(&word);
        waiter.join().unwrap();
    }
}
