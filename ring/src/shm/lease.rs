//! Kernel-held locks on bytes of a segment file: the two role leases and the
//! name lock.
//!
//! Each is an open-file-description write lock (`F_OFD_SETLK`) on one byte of
//! the segment file. The kernel drops it when the descriptor that holds it
//! closes, including when the process dies, so a dead holder never keeps a
//! lock. This module owns lock bytes only; it reads nothing in the mapping.
//!
//! | byte | lock | held |
//! | ---- | ---- | ---- |
//! | 0 | producer lease ([`PRODUCER_LOCK_BYTE`]) | for as long as a producer lives |
//! | 1 | consumer lease ([`CONSUMER_LOCK_BYTE`]) | for as long as a consumer lives |
//! | 2 | name lock ([`NAME_LOCK_BYTE`]) | a few system calls: while a process checks that the name still refers to this file, or removes it |
//! | 64 + i | MPSC producer slot `i` ([`SLOT_LOCK_BASE`]) | for as long as the producer in slot `i` lives |
//!
//! In an MPSC segment every producer holds a *read* lock on byte 0 (so that
//! "a producer is here" is the same question for both kinds, and the
//! lifecycle code asks it once) and a write lock on its slot's byte.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

use super::{OsError, Role, ShmError, os_error};

/// Byte of the segment file locked by the producer.
pub const PRODUCER_LOCK_BYTE: i64 = 0;
/// Byte of the segment file locked by the consumer.
pub const CONSUMER_LOCK_BYTE: i64 = 1;
/// Byte of the segment file locked while a process checks or removes the
/// segment's name (see [`NameLock`]).
pub const NAME_LOCK_BYTE: i64 = 2;
/// Byte of the segment file locked by the producer in MPSC slot 0; slot `i`
/// is byte `SLOT_LOCK_BASE + i` (bytes 3 to 63 are left for other locks).
pub const SLOT_LOCK_BASE: i64 = 64;

/// The lock byte of MPSC producer slot `slot`.
pub const fn slot_lock_byte(slot: u8) -> i64 {
    SLOT_LOCK_BASE + slot as i64
}

impl Role {
    pub(super) fn lock_byte(self) -> i64 {
        match self {
            Role::Producer => PRODUCER_LOCK_BYTE,
            Role::Consumer => CONSUMER_LOCK_BYTE,
        }
    }
}

fn flock(kind: i32, byte: i64) -> libc::flock {
    // SAFETY: libc::flock is a plain C struct for which all-zero is valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = byte;
    lock.l_len = 1;
    lock.l_pid = 0; // required by F_OFD_* locks
    lock
}

/// A descriptor for a lock's holder to keep. An OFD lock belongs to the
/// open file description, which `dup` shares with the segment's descriptor:
/// the lock lasts until it is unlocked (the holder's `Drop`) or the last
/// descriptor of the description closes (the process dies).
fn own_fd(fd: &OwnedFd) -> Result<OwnedFd, ShmError> {
    fd.try_clone()
        .map_err(|e| ShmError::Os(OsError::new("dup", e.raw_os_error().unwrap_or(0))))
}

/// Whether a live process holds `role` of the segment open as `fd`, through
/// another open file description than `fd`'s: a lease taken through `fd` (or
/// a `dup` of it) does not count, one taken through another `shm_open` of
/// the same name, in this process or another, does.
pub(super) fn role_held_on(fd: &OwnedFd, name: &str, role: Role) -> Result<bool, ShmError> {
    byte_held_on(fd, name, role.lock_byte())
}

/// Whether a live process holds MPSC producer slot `slot` of the segment open
/// as `fd`, through another open file description than `fd`'s.
pub(super) fn slot_held_on(fd: &OwnedFd, name: &str, slot: u8) -> Result<bool, ShmError> {
    byte_held_on(fd, name, slot_lock_byte(slot))
}

/// Whether any lock (read or write) is held on `byte` through another open
/// file description than `fd`'s: a write lock would conflict with both.
fn byte_held_on(fd: &OwnedFd, name: &str, byte: i64) -> Result<bool, ShmError> {
    let mut lock = flock(libc::F_WRLCK, byte);
    fcntl(fd.as_fd(), FcntlArg::F_OFD_GETLK(&mut lock))
        .map_err(|e| os_error(name, "fcntl(F_OFD_GETLK)", e))?;
    Ok(i32::from(lock.l_type) != libc::F_UNLCK)
}

/// Whether a live process holds either role.
pub(super) fn any_role_held(fd: &OwnedFd, name: &str) -> Result<bool, ShmError> {
    Ok(role_held_on(fd, name, Role::Producer)? || role_held_on(fd, name, Role::Consumer)?)
}

/// A held role: an OFD write lock on the role's byte, released on drop (or by
/// the kernel when the process dies).
#[derive(Debug)]
pub struct Lease {
    fd: OwnedFd,
    role: Role,
    /// The byte locked: the role's, or an MPSC slot's.
    byte: i64,
}

impl Lease {
    /// Takes `role` of the segment open as `fd`, or `RoleTaken` when a live
    /// process holds it.
    pub(super) fn claim(fd: &OwnedFd, role: Role) -> Result<Lease, ShmError> {
        Lease::try_lock(fd, libc::F_WRLCK, role, role.lock_byte())?.ok_or(ShmError::RoleTaken(role))
    }

    /// Takes a share of `role` (a read lock on its byte): how every producer
    /// of an MPSC segment marks itself present. `RoleTaken` only when a
    /// process holds the role exclusively.
    pub(super) fn claim_shared(fd: &OwnedFd, role: Role) -> Result<Lease, ShmError> {
        Lease::try_lock(fd, libc::F_RDLCK, role, role.lock_byte())?.ok_or(ShmError::RoleTaken(role))
    }

    /// Takes MPSC producer slot `slot` (a write lock on its byte) without
    /// waiting: `None` when a live process holds it.
    pub(super) fn try_slot(fd: &OwnedFd, slot: u8) -> Result<Option<Lease>, ShmError> {
        Lease::try_lock(fd, libc::F_WRLCK, Role::Producer, slot_lock_byte(slot))
    }

    /// One non-blocking OFD lock of `kind` on `byte`, held as `role`:
    /// `None` when another open file description holds a conflicting lock.
    fn try_lock(fd: &OwnedFd, kind: i32, role: Role, byte: i64) -> Result<Option<Lease>, ShmError> {
        let fd = own_fd(fd)?;
        let lock = flock(kind, byte);
        match fcntl(fd.as_fd(), FcntlArg::F_OFD_SETLK(&lock)) {
            Ok(_) => Ok(Some(Lease { fd, role, byte })),
            Err(Errno::EAGAIN) | Err(Errno::EACCES) => Ok(None),
            Err(e) => Err(ShmError::os("fcntl(F_OFD_SETLK)", e)),
        }
    }

    /// The role held.
    pub fn role(&self) -> Role {
        self.role
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let lock = flock(libc::F_UNLCK, self.byte);
        let _ = fcntl(self.fd.as_fd(), FcntlArg::F_OFD_SETLK(&lock));
    }
}

/// The name lock of one segment file, held while its holder checks that the
/// name still refers to this file or removes the name.
///
/// Everyone who removes a segment's name (the side that leaves last, a
/// producer reclaiming a finished stream, `clean`) does it under this lock,
/// after checking that no role is held and that the name still refers to its
/// file. Everyone who takes a role checks, under this lock and after taking
/// the role, that the name still refers to its file. So a name is never
/// removed while a role of its file is held, and a remover never removes a
/// newer file that took the name meanwhile (see `docs/LAYOUT.md`, lifecycle).
#[derive(Debug)]
pub struct NameLock {
    fd: OwnedFd,
}

impl NameLock {
    /// Waits for the name lock of the segment open as `fd`. Holders keep it
    /// for a few system calls, and the kernel drops it if they die.
    pub(super) fn take(fd: &OwnedFd, name: &str) -> Result<NameLock, ShmError> {
        let fd = own_fd(fd)?;
        let lock = flock(libc::F_WRLCK, NAME_LOCK_BYTE);
        loop {
            match fcntl(fd.as_fd(), FcntlArg::F_OFD_SETLKW(&lock)) {
                Ok(_) => return Ok(NameLock { fd }),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(os_error(name, "fcntl(F_OFD_SETLKW)", e)),
            }
        }
    }
}

impl Drop for NameLock {
    fn drop(&mut self) {
        let lock = flock(libc::F_UNLCK, NAME_LOCK_BYTE);
        let _ = fcntl(self.fd.as_fd(), FcntlArg::F_OFD_SETLK(&lock));
    }
}
