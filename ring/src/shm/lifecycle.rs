//! The lifecycle decisions, written once over a [`Namespace`]: creating a
//! segment, waiting for its creator, taking a role and confirming the name,
//! leaving and removing the name, a producer's reclaim of a finished stream,
//! and `clean`'s removal of a stale name.
//!
//! Every choice about *who waits, who retries and who removes the name* lives
//! here; the file-system and lock operations those choices act on are the
//! [`Namespace`]'s. [`Posix`](super::segment::Posix) is the namespace that
//! ships (`shm_open`, OFD locks, the mapping); the models crate implements an
//! in-memory one over shuttle and runs these very functions with processes
//! that race and die at every step. This module never reads the mapping
//! itself and never runs the ring protocol.
//!
//! The rules are written for peers in `docs/LAYOUT.md` (creating, opening,
//! taking a role, leaving, producer reclaim, `clean`).

use std::string::ToString;

use nix::errno::Errno;

use super::{Role, ShmError};
use crate::layout::capacity_ok;

/// How many times a side retries when the name changes under it (removed, or
/// created anew) while it takes a role.
pub const NAME_RETRIES: usize = 8;

/// The identity of a file: `(st_dev, st_ino)` for POSIX.
pub type FileId = (u64, u64);

/// What one look at a name found.
#[derive(Debug)]
pub enum Look<F> {
    /// Initialised, checked and mapped.
    Ready(F),
    /// Its creator has not published the header yet.
    Initialising {
        /// Whether a live process holds a role (the creator takes one first).
        creator_alive: bool,
    },
}

/// The file-system and lock operations the lifecycle decisions use. Each is
/// one observation or one effect; none decides anything.
///
/// Locks belong to an open file description (`Fd`): a lock taken through
/// one description is held until it is dropped or its process dies, and
/// [`Namespace::role_held`] reports locks held through *other* descriptions
/// only.
pub trait Namespace {
    /// An open file description of a segment file, through which locks are
    /// taken.
    type Fd;
    /// An initialised, checked (and, for POSIX, mapped) segment file.
    type File;
    /// A held role lease (byte 0 or 1); dropping it lets the role go.
    type Lease;
    /// The held name lock (byte 2); dropping it releases it.
    type NameLock;
    /// A point in time, for the wait for a creator.
    type Instant;

    /// The description `file` was opened with.
    fn fd<'a>(&self, file: &'a Self::File) -> &'a Self::Fd;
    /// The identity of `file`.
    fn file_id(&self, file: &Self::File) -> FileId;
    /// Creates `name` exclusively (empty, mode 0600) and opens it; `Err(AlreadyExists)` when it exists.
    fn create_exclusive(&self, name: &str) -> Result<(Self::Fd, FileId), ShmError>;
    /// Sizes and allocates a freshly created file, writes its header and
    /// publishes it (the magic's Release store), and returns it mapped.
    fn initialise(
        &self,
        name: &str,
        fd: &Self::Fd,
        id: FileId,
        capacity: u64,
    ) -> Result<Self::File, ShmError>;
    /// Opens `name` and checks it: [`Look::Ready`] when its header is
    /// published and valid, [`Look::Initialising`] while it is not published.
    fn look(&self, name: &str) -> Result<Look<Self::File>, ShmError>;
    /// Opens `name` whatever state its header is in (for `clean`), after the
    /// checks on the file itself (type, owner, mode).
    fn open_any(&self, name: &str) -> Result<(Self::Fd, FileId), ShmError>;
    /// The identity of the file `name` refers to now, `None` when none.
    fn named_id(&self, name: &str) -> Result<Option<FileId>, ShmError>;
    /// Removes `name`; `Err(NotFound)` when it is gone.
    fn unlink(&self, name: &str) -> Result<(), ShmError>;
    /// Takes `role`'s lease through `fd`, or `Err(RoleTaken)`.
    fn claim(&self, fd: &Self::Fd, role: Role) -> Result<Self::Lease, ShmError>;
    /// Waits for the name lock of the file open as `fd`.
    fn lock_name(&self, fd: &Self::Fd, name: &str) -> Result<Self::NameLock, ShmError>;
    /// Whether a live process holds `role` through another description than `fd`.
    fn role_held(&self, fd: &Self::Fd, name: &str, role: Role) -> Result<bool, ShmError>;
    /// Increments `role`'s generation.
    fn bump_generation(&self, file: &Self::File, role: Role);
    /// Whether `role`'s generation is not zero.
    fn ever_claimed(&self, file: &Self::File, role: Role) -> bool;
    /// Whether the stream is closed and every message released.
    fn finished(&self, file: &Self::File) -> Result<bool, ShmError>;
    /// Now.
    fn now(&self) -> Self::Instant;
    /// Whether an opener that found no live creator since `since` has waited
    /// long enough to call the file never initialised.
    fn waited_out(&self, since: &Self::Instant) -> bool;
    /// Waits a little before the next look.
    fn pause(&self);
}

/// How a side is obtained (see [`super::OpenMode`]).
pub use super::endpoint::OpenMode;

/// A role taken: the file and the lease.
pub type Taken<N> = (<N as Namespace>::File, <N as Namespace>::Lease);

/// Opens an existing segment by name (already validated), waiting for its
/// creator: for as long as a live process holds one of its roles (the
/// creator takes its role first), else until [`Namespace::waited_out`], after
/// which it is [`ShmError::NeverInitialised`].
pub fn open<N: Namespace>(ns: &N, name: &str) -> Result<N::File, ShmError> {
    let mut creator_gone_since: Option<N::Instant> = None;
    loop {
        // Whether the wait was over *before* this look: giving up is decided
        // on a look taken after the wait ended, so a creator that took its
        // role just as the wait ran out is seen alive, not given up on.
        let waited_out = creator_gone_since
            .as_ref()
            .is_some_and(|since| ns.waited_out(since));
        match ns.look(name)? {
            Look::Ready(file) => return Ok(file),
            Look::Initialising { creator_alive } => {
                if creator_alive {
                    creator_gone_since = None;
                } else if waited_out {
                    return Err(ShmError::NeverInitialised(name.to_string()));
                } else if creator_gone_since.is_none() {
                    creator_gone_since = Some(ns.now());
                }
                ns.pause();
            }
        }
    }
}

/// Creates a fresh segment exclusively, claiming `role` before anything
/// else; a failure after the file exists removes the name (if it still
/// refers to our file). `name` is already validated.
pub fn create_segment<N: Namespace>(
    ns: &N,
    name: &str,
    capacity: u64,
    role: Role,
) -> Result<Taken<N>, ShmError> {
    if !capacity_ok(capacity) {
        return Err(ShmError::InvalidCapacity(capacity));
    }
    let (fd, id) = ns.create_exclusive(name)?;
    let lease = match ns.claim(&fd, role) {
        Ok(lease) => lease,
        Err(e) => {
            remove_if_named(ns, &fd, id, name);
            return Err(e);
        }
    };
    let file = match ns.initialise(name, &fd, id, capacity) {
        Ok(file) => file,
        Err(e) => {
            remove_if_named(ns, &fd, id, name);
            return Err(e);
        }
    };
    ns.bump_generation(&file, role);
    Ok((file, lease))
}

/// Removes `name` if it still refers to the file open as `fd` (identity
/// `id`): the clean-up of a create that failed half-way.
fn remove_if_named<N: Namespace>(ns: &N, fd: &N::Fd, id: FileId, name: &str) {
    let Ok(_lock) = ns.lock_name(fd, name) else {
        return;
    };
    if matches!(ns.named_id(name), Ok(Some(now)) if now == id) {
        let _ = ns.unlink(name);
    }
}

/// After taking a role: whether the name still refers to our file, checked
/// under the name lock. `false` means the name was removed (or taken by a
/// newer file) before our role was held: the caller lets go and retries.
pub fn confirm<N: Namespace>(ns: &N, file: &N::File, name: &str) -> Result<bool, ShmError> {
    let _lock = ns.lock_name(ns.fd(file), name)?;
    Ok(ns.named_id(name)? == Some(ns.file_id(file)))
}

/// Removes the name if it still refers to `file` and `keep` is false, both
/// checked under the name lock. Returns whether the name was removed.
pub fn remove_name_unless<N: Namespace>(
    ns: &N,
    file: &N::File,
    name: &str,
    keep: impl FnOnce(&N::File) -> Result<bool, ShmError>,
) -> Result<bool, ShmError> {
    let _lock = ns.lock_name(ns.fd(file), name)?;
    if keep(file)? || ns.named_id(name)? != Some(ns.file_id(file)) {
        return Ok(false);
    }
    match ns.unlink(name) {
        Ok(()) | Err(ShmError::NotFound(_)) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Takes `role` of `name` (validated) as `mode` says, retrying
/// [`NAME_RETRIES`] times while the name changes under us.
pub fn acquire<N: Namespace>(
    ns: &N,
    name: &str,
    role: Role,
    mode: OpenMode,
) -> Result<Taken<N>, ShmError> {
    for _ in 0..NAME_RETRIES {
        let taken = match mode {
            OpenMode::Create { capacity } => create(ns, name, capacity, role),
            OpenMode::Open => open_role(ns, name, role),
            OpenMode::CreateOrOpen { capacity } => create_or_open(ns, name, capacity, role),
        }?;
        if let Some(taken) = taken {
            return Ok(taken);
        }
    }
    Err(ShmError::os(
        "taking a role: the name keeps changing",
        Errno::EAGAIN,
    ))
}

/// Creates the segment and confirms the name: a `clean` that ran between our
/// create and our role claim removed the name (`None`: start again).
pub fn create<N: Namespace>(
    ns: &N,
    name: &str,
    capacity: u64,
    role: Role,
) -> Result<Option<Taken<N>>, ShmError> {
    let (file, lease) = create_segment(ns, name, capacity, role)?;
    Ok(confirm(ns, &file, name)?.then_some((file, lease)))
}

/// Opens the segment, takes `role` and confirms the name (`None`: the name
/// changed under us, start again).
pub fn open_role<N: Namespace>(
    ns: &N,
    name: &str,
    role: Role,
) -> Result<Option<Taken<N>>, ShmError> {
    let file = open(ns, name)?;
    let lease = ns.claim(ns.fd(&file), role)?;
    if !confirm(ns, &file, name)? {
        // The segment we opened lost its name before our role was held (its
        // last side left, or `clean` removed it): it is not the stream
        // anybody will find by this name.
        return Ok(None);
    }
    ns.bump_generation(&file, role);
    Ok(Some((file, lease)))
}

/// Opens `name`, creating it with `capacity` when absent. For a producer, a
/// segment that nobody else holds and whose stream is closed and drained is
/// finished: it is removed and created afresh. A consumer never reclaims.
pub fn create_or_open<N: Namespace>(
    ns: &N,
    name: &str,
    capacity: u64,
    role: Role,
) -> Result<Option<Taken<N>>, ShmError> {
    match create(ns, name, capacity, role) {
        Err(ShmError::AlreadyExists(_)) => {}
        other => return other,
    }
    let (file, lease) = match open_role(ns, name, role) {
        Ok(Some(taken)) => taken,
        Ok(None) | Err(ShmError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    // A producer starts a new stream over a finished one; a consumer must
    // see that stream's end instead.
    if role == Role::Producer && ns.finished(&file)? {
        let removed = remove_name_unless(ns, &file, name, |f| {
            ns.role_held(ns.fd(f), name, Role::Consumer)
        })?;
        if removed {
            return Ok(None);
        }
    }
    Ok(Some((file, lease)))
}

/// Lets go of `lease` (of `role`) and removes the name when we leave last
/// and the stream is finished (closed and drained, judged by `finished`
/// under the name lock). A segment the other side never attached to stays,
/// so that a consumer that comes late still finds the end of the stream.
///
/// The lease is dropped while the name lock is held, so that no successor
/// in our role can claim it and confirm the name between our decision and
/// our removal: a successor that claims it after we drop it waits for the
/// name lock to confirm, and finds the name gone if we removed it.
pub fn leave<N: Namespace>(
    ns: &N,
    file: &N::File,
    name: &str,
    role: Role,
    lease: N::Lease,
    finished: impl FnOnce() -> bool,
) {
    let other = role.other();
    let _ = remove_name_unless(ns, file, name, |f| {
        drop(lease);
        Ok(!finished() || !ns.ever_claimed(f, other) || ns.role_held(ns.fd(f), name, other)?)
    });
}

/// What [`remove_stale`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The name is gone.
    Removed,
    /// A live process holds a role; the segment was kept.
    InUse {
        /// The producer role is held.
        producer_held: bool,
        /// The consumer role is held.
        consumer_held: bool,
    },
}

/// Removes the name (validated) of a segment nobody uses: no live process
/// holds a role, checked under the name lock, so a process taking a role
/// meanwhile either keeps it (we see its role) or finds the name gone and
/// retries.
pub fn remove_stale<N: Namespace>(ns: &N, name: &str) -> Result<Removal, ShmError> {
    let (fd, id) = ns.open_any(name)?;
    let _lock = ns.lock_name(&fd, name)?;
    let producer_held = ns.role_held(&fd, name, Role::Producer)?;
    let consumer_held = ns.role_held(&fd, name, Role::Consumer)?;
    if producer_held || consumer_held {
        return Ok(Removal::InUse {
            producer_held,
            consumer_held,
        });
    }
    if ns.named_id(name)? != Some(id) {
        // Removed, and perhaps created anew, since we opened it.
        return Err(ShmError::NotFound(name.to_string()));
    }
    ns.unlink(name).map(|()| Removal::Removed)
}
