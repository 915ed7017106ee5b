//! [`Namespace`] in memory, over shuttle: simulated processes that share a
//! table of names and files, take byte locks, and die.
//!
//! [`ringproof::shm::lifecycle`] runs over it unchanged: the same `acquire`,
//! `leave`, `remove_stale` that ship with [`ringproof::shm::Posix`]. What is
//! modelled, and how:
//!
//! - **names and files**: a name refers to at most one file; a file keeps
//!   existing while descriptions of it are open, whether or not it has a name.
//!   `create_exclusive` fails with `AlreadyExists` while the name exists.
//! - **descriptions and locks** (OFD semantics): a lock on byte 0, 1 or 2
//!   belongs to the description it was taken through; taking it again through
//!   the same description succeeds; `role_held` reports locks of *other*
//!   descriptions only; the blocking name lock waits on a shuttle `Condvar`.
//!   A lock is released when its holder drops it, when its description's last
//!   handle is dropped, or when its process dies.
//! - **death**: each process may be given a step at which it dies. Every
//!   namespace operation is one step (one scheduling point: the state sits
//!   behind one shuttle `Mutex`). At its death step the process's locks are
//!   all released at once (like the kernel closing its descriptions) and that
//!   operation and every later one fails with [`killed`] and has no effect,
//!   so the shipped code unwinds as far as it likes without touching anything.
//! - **time**: the wait for a creator ([`Namespace::waited_out`]) ends after
//!   three pauses *and* only when no live process is between its exclusive
//!   create and its first role claim. That encodes the one timing assumption
//!   the protocol makes ("a live creator claims its role within two seconds
//!   of creating the file"), which a scheduler that can starve a process
//!   forever would otherwise break.
//!
//! Ghost state for the invariants: each process records the file it
//! *believes* it is on ([`ModelNs::believe`], after `acquire` returned it),
//! and every unlink is logged and checked on the spot (see
//! `State::unlink`): those checks panic, which shuttle reports with the
//! failing schedule.
//!
//! One file (~650 lines): the in-memory namespace, its lock table and its
//! deaths are one state machine behind one mutex; split, the invariants
//! would be spread over files.

use std::collections::BTreeMap;
use std::sync::Arc;

use nix::errno::Errno;
use ringproof::shm::lifecycle::{FileId, Look, Namespace};
use ringproof::shm::{OsError, Role, ShmError};
use shuttle::sync::{Condvar, Mutex, MutexGuard};

/// The error every operation of a dead process returns.
pub fn killed() -> ShmError {
    ShmError::Os(OsError::new(
        "the model killed this process",
        Errno::ESRCH as i32,
    ))
}

/// Whether `e` is [`killed`].
pub fn is_killed(e: &ShmError) -> bool {
    matches!(e, ShmError::Os(os) if os.raw_os_error() == Errno::ESRCH as i32
        && os.what().starts_with("the model killed"))
}

/// The name lock's byte.
const NAME_BYTE: usize = 2;

fn role_byte(role: Role) -> usize {
    match role {
        Role::Producer => 0,
        Role::Consumer => 1,
    }
}

/// One file of the model.
#[derive(Clone, Debug)]
pub struct FileState {
    /// The process that created it.
    pub creator: usize,
    /// Whether its creator has claimed a role of it yet.
    pub creator_claimed: bool,
    /// Whether its header is published.
    pub initialised: bool,
    /// Holder of bytes 0, 1, 2: `(description, process)`.
    pub locks: [Option<(usize, usize)>; 3],
    /// Producer and consumer generations.
    pub generations: [u32; 2],
    /// The stream is closed and drained.
    pub finished: bool,
}

/// One simulated process.
#[derive(Clone, Debug, Default)]
pub struct Proc {
    /// Died (at its death step).
    pub dead: bool,
    /// Steps taken.
    pub steps: usize,
    /// The step at which it dies, if any.
    pub die_at: Option<usize>,
    /// Pauses taken while waiting for a creator.
    pub pauses: usize,
    /// Ghost: `(name, file, role)` it believes it holds.
    pub believes: Option<(String, usize, Role)>,
    /// Ghost: its last look at a name (`named_id`) while it held a name
    /// lock, in its current hold of that lock: `(file whose lock it held,
    /// file the name referred to, forced removals so far)`.
    pub looked: Option<(usize, Option<usize>, usize)>,
}

/// One removal of a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unlink {
    /// Who removed it.
    pub pid: usize,
    /// The name.
    pub name: String,
    /// The file the name referred to.
    pub file: usize,
    /// A forced removal (`clean --force`, or `rm` in `/dev/shm`): not a
    /// lifecycle decision, so U1 and U2 do not apply.
    pub forced: bool,
}

/// The whole simulated system.
#[derive(Debug, Default)]
pub struct State {
    /// Name → file index.
    pub names: BTreeMap<String, usize>,
    /// Every file ever created.
    pub files: Vec<FileState>,
    /// Every process.
    pub procs: Vec<Proc>,
    /// Descriptions opened so far.
    pub next_desc: usize,
    /// Every unlink, in order.
    pub unlinks: Vec<Unlink>,
    /// Forced removals so far.
    pub forced: usize,
    /// Processes that died while holding a name lock (coverage).
    pub deaths_holding_name_lock: usize,
    /// Looks that found a name not initialised yet (coverage).
    pub initialising_seen: usize,
    /// Lifecycle removals that removed a newer file because a forced
    /// removal and a new create fell between the remover's identity check
    /// and its unlink (the window no name lock can close; see U1).
    pub forced_window: usize,
}

impl State {
    fn holder_alive(&self, lock: Option<(usize, usize)>) -> Option<(usize, usize)> {
        lock.filter(|&(_, pid)| !self.procs[pid].dead)
    }

    fn release_process(&mut self, pid: usize) {
        for file in &mut self.files {
            for lock in &mut file.locks {
                if matches!(lock, Some((_, holder)) if *holder == pid) {
                    *lock = None;
                }
            }
        }
    }

    /// The file whose name lock `pid` holds, if any.
    fn name_lock_of(&self, pid: usize) -> Option<usize> {
        self.files
            .iter()
            .position(|f| matches!(f.locks[NAME_BYTE], Some((_, holder)) if holder == pid))
    }

    /// The checks made at every removal of a name that is a lifecycle
    /// decision (not [`ModelNs::force_unlink`]), before it happens:
    ///
    /// - **U1**: the remover is alive, holds the name lock of a file `f`, has
    ///   looked at the name in this hold of the lock and seen it refer to
    ///   `f`, and the name refers to `f` now. The one exception: a forced
    ///   removal since that look (then a newer file may have taken the name
    ///   between the look and the unlink; no lock can prevent it, and it is
    ///   counted in [`State::forced_window`]).
    /// - **U2**: no other live process believes it is on the file the name
    ///   refers to (a side that confirmed its role is never cut off), except
    ///   in U1's forced window.
    fn unlink(&mut self, pid: usize, name: &str) -> Result<(), ShmError> {
        let Some(&file) = self.names.get(name) else {
            return Err(ShmError::NotFound(name.to_string()));
        };
        let locked = self.name_lock_of(pid);
        let looked = self.procs[pid].looked;
        let checked =
            matches!((locked, looked), (Some(l), Some((f, Some(seen), _))) if l == f && seen == f);
        assert!(
            checked,
            "U1 violated: process {pid} removes {name} (file {file}) without having checked, under the name lock it holds ({locked:?}), that the name refers to that lock's file (its look: {looked:?}); state {self:#?}"
        );
        if locked != Some(file) {
            let forced_since = matches!(looked, Some((_, _, forced)) if forced < self.forced);
            assert!(
                forced_since,
                "U1 violated: process {pid} removes {name}, which refers to file {file}, but it holds the name lock of file {locked:?} and no forced removal explains it; state {self:#?}"
            );
            self.forced_window += 1;
        }
        // In the forced window the newer file's holders are cut off: that is
        // the hazard of a forced removal, counted above, not checked.
        let window = locked != Some(file);
        for (other, proc) in self.procs.iter().enumerate().filter(|_| !window) {
            if other != pid && !proc.dead {
                if let Some((n, f, role)) = &proc.believes {
                    assert!(
                        !(n == name && *f == file),
                        "U2 violated: process {pid} removes {name} (file {file}) while live process {other} is on it as {role}; state {self:#?}"
                    );
                }
            }
        }
        self.names.remove(name);
        self.unlinks.push(Unlink {
            pid,
            name: name.to_string(),
            file,
            forced: false,
        });
        Ok(())
    }
}

/// The shared system: state behind one shuttle `Mutex`, and a `Condvar` for
/// the blocking name lock.
#[derive(Debug, Default)]
pub struct World {
    state: Mutex<State>,
    unlocked: Condvar,
}

impl World {
    /// An empty system.
    pub fn new() -> Arc<World> {
        Arc::new(World::default())
    }

    /// A new process, dying at step `die_at` (1-based) if given.
    pub fn process(self: &Arc<Self>, die_at: Option<usize>) -> ModelNs {
        let mut state = self.lock();
        state.procs.push(Proc {
            die_at,
            ..Proc::default()
        });
        ModelNs {
            world: Arc::clone(self),
            pid: state.procs.len() - 1,
        }
    }

    /// A leftover segment at `name`: initialised, both roles once claimed,
    /// no role held; `finished` as given. Returns the file index.
    pub fn leftover(&self, name: &str, finished: bool) -> usize {
        let mut state = self.lock();
        state.procs.push(Proc {
            dead: true,
            ..Proc::default()
        });
        let creator = state.procs.len() - 1;
        state.files.push(FileState {
            creator,
            creator_claimed: true,
            initialised: true,
            locks: [None; 3],
            generations: [1, 1],
            finished,
        });
        let file = state.files.len() - 1;
        state.names.insert(name.to_string(), file);
        file
    }

    /// The state, for the scenarios' checks (a scheduling point).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (yielding) until `name` exists; `false` if process `creator`
    /// died first.
    pub fn wait_for_name(&self, name: &str, creator: usize) -> bool {
        loop {
            let state = self.lock();
            if state.names.contains_key(name) {
                return true;
            }
            if state.procs[creator].dead {
                return false;
            }
            drop(state);
            shuttle::thread::yield_now();
        }
    }

    /// **E1**, checked at the end of an execution: every live process that
    /// believes it is on `(name, file)` in `role` finds the name referring to
    /// that file and holds that role's lease of it.
    ///
    /// Not checked after a removal in U1's forced window: a side on the
    /// newer file is cut off then, which is the hazard of a forced removal.
    pub fn check_believers(&self) {
        let state = self.lock();
        if state.forced_window > 0 {
            return;
        }
        for (pid, proc) in state.procs.iter().enumerate() {
            if proc.dead {
                continue;
            }
            if let Some((name, file, role)) = &proc.believes {
                assert_eq!(
                    state.names.get(name),
                    Some(file),
                    "E1 violated: live process {pid} believes it is on {name} (file {file}) as {role}, but the name refers to {:?}; state {state:#?}",
                    state.names.get(name)
                );
                let lock = state.files[*file].locks[role_byte(*role)];
                assert!(
                    matches!(lock, Some((_, holder)) if holder == pid),
                    "E1 violated: live process {pid} believes it holds {role} of file {file}, but the lease is {lock:?}; state {state:#?}"
                );
            }
        }
    }

    /// Live processes that hold a role of `file`.
    pub fn live_role_holders(&self, file: usize) -> usize {
        let state = self.lock();
        state.files[file].locks[..2]
            .iter()
            .filter(|lock| state.holder_alive(**lock).is_some())
            .count()
    }
}

/// An open description of a model file. Dropping the last handle closes it
/// and releases its locks.
#[derive(Debug)]
pub struct Desc {
    world: Arc<World>,
    id: usize,
    file: usize,
}

impl Desc {
    /// The index of its file.
    pub fn file(&self) -> usize {
        self.file
    }
}

impl Drop for Desc {
    fn drop(&mut self) {
        let mut state = self.world.lock();
        let mut released = false;
        for lock in &mut state.files[self.file].locks {
            if matches!(lock, Some((desc, _)) if *desc == self.id) {
                *lock = None;
                released = true;
            }
        }
        drop(state);
        if released {
            self.world.unlocked.notify_all();
        }
    }
}

/// A description handle: the model's `Fd` and `File`.
pub type ModelFd = Arc<Desc>;

/// A held lock on one byte; dropping it releases it (if its process is
/// still alive to hold it).
#[derive(Debug)]
pub struct ModelLock {
    desc: ModelFd,
    byte: usize,
}

impl Drop for ModelLock {
    fn drop(&mut self) {
        let mut state = self.desc.world.lock();
        let lock = &mut state.files[self.desc.file].locks[self.byte];
        let ours = matches!(lock, Some((desc, _)) if *desc == self.desc.id);
        if ours {
            *lock = None;
        }
        drop(state);
        if ours {
            self.desc.world.unlocked.notify_all();
        }
    }
}

/// One process's view of the [`World`]: the [`Namespace`] the shipped
/// lifecycle functions run over.
#[derive(Clone, Debug)]
pub struct ModelNs {
    world: Arc<World>,
    pid: usize,
}

impl ModelNs {
    /// This process's id.
    pub fn pid(&self) -> usize {
        self.pid
    }

    /// The world it lives in.
    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    /// One step: fails if the process is dead or dies now (releasing every
    /// lock it holds).
    fn step<'a>(&'a self) -> Result<MutexGuard<'a, State>, ShmError> {
        let mut state = self.world.lock();
        let proc = &mut state.procs[self.pid];
        if proc.dead {
            return Err(killed());
        }
        proc.steps += 1;
        if proc.die_at == Some(proc.steps) {
            proc.dead = true;
            if state.name_lock_of(self.pid).is_some() {
                state.deaths_holding_name_lock += 1;
            }
            state.release_process(self.pid);
            drop(state);
            self.world.unlocked.notify_all();
            return Err(killed());
        }
        Ok(state)
    }

    fn open_desc(&self, state: &mut State, file: usize) -> ModelFd {
        state.next_desc += 1;
        Arc::new(Desc {
            world: Arc::clone(&self.world),
            id: state.next_desc,
            file,
        })
    }

    /// Whether this process has died.
    pub fn dead(&self) -> bool {
        self.world.lock().procs[self.pid].dead
    }

    /// Ghost: this process is on `file` under `name` as `role` (called right
    /// after `acquire` returned it; ignored once dead).
    pub fn believe(&self, name: &str, file: &ModelFd, role: Role) {
        let mut state = self.world.lock();
        let proc = &mut state.procs[self.pid];
        if !proc.dead {
            proc.believes = Some((name.to_string(), file.file, role));
        }
    }

    /// Ghost: this process starts leaving.
    pub fn stop_believing(&self) {
        self.world.lock().procs[self.pid].believes = None;
    }

    /// Removes `name` whatever holds it, as `clean --force` (the shipped
    /// `shm::unlink`, a bare `shm_unlink`) or an `rm` in `/dev/shm` does. A
    /// step; not part of [`Namespace`]: no lifecycle decision does this.
    pub fn force_unlink(&self, name: &str) -> Result<(), ShmError> {
        let mut state = self.step()?;
        let Some(file) = state.names.remove(name) else {
            return Err(ShmError::NotFound(name.to_string()));
        };
        state.unlinks.push(Unlink {
            pid: self.pid,
            name: name.to_string(),
            file,
            forced: true,
        });
        state.forced += 1;
        Ok(())
    }

    /// The stream of `file` is closed and drained (what the producer's
    /// `close` and the consumer's last `release` do). A step.
    pub fn finish(&self, file: &ModelFd) -> Result<(), ShmError> {
        let mut state = self.step()?;
        state.files[file.file].finished = true;
        Ok(())
    }

    fn lock_byte(&self, fd: &ModelFd, byte: usize, wait: bool) -> Result<ModelLock, ShmError> {
        let mut state = self.step()?;
        loop {
            let lock = state.files[fd.file].locks[byte];
            match state.holder_alive(lock) {
                Some((desc, _)) if desc != fd.id => {
                    if !wait {
                        return Err(ShmError::RoleTaken(if byte == 0 {
                            Role::Producer
                        } else {
                            Role::Consumer
                        }));
                    }
                    state = self
                        .world
                        .unlocked
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner());
                    if state.procs[self.pid].dead {
                        return Err(killed());
                    }
                }
                _ => break,
            }
        }
        state.files[fd.file].locks[byte] = Some((fd.id, self.pid));
        if byte == NAME_BYTE {
            state.procs[self.pid].looked = None;
        }
        if byte != NAME_BYTE && state.files[fd.file].creator == self.pid {
            state.files[fd.file].creator_claimed = true;
        }
        Ok(ModelLock {
            desc: Arc::clone(fd),
            byte,
        })
    }
}

impl Namespace for ModelNs {
    type Fd = ModelFd;
    type File = ModelFd;
    type Lease = ModelLock;
    type NameLock = ModelLock;
    type Instant = usize;

    fn fd<'a>(&self, file: &'a ModelFd) -> &'a ModelFd {
        file
    }

    fn file_id(&self, file: &ModelFd) -> FileId {
        (0, file.file as u64)
    }

    fn create_exclusive(&self, name: &str) -> Result<(ModelFd, FileId), ShmError> {
        let mut state = self.step()?;
        if state.names.contains_key(name) {
            return Err(ShmError::AlreadyExists(name.to_string()));
        }
        state.files.push(FileState {
            creator: self.pid,
            creator_claimed: false,
            initialised: false,
            locks: [None; 3],
            generations: [0, 0],
            finished: false,
        });
        let file = state.files.len() - 1;
        state.names.insert(name.to_string(), file);
        let fd = self.open_desc(&mut state, file);
        Ok((fd, (0, file as u64)))
    }

    fn initialise(
        &self,
        _name: &str,
        fd: &ModelFd,
        _id: FileId,
        _capacity: u64,
    ) -> Result<ModelFd, ShmError> {
        let mut state = self.step()?;
        state.files[fd.file].initialised = true;
        Ok(Arc::clone(fd))
    }

    fn look(&self, name: &str) -> Result<Look<ModelFd>, ShmError> {
        let mut state = self.step()?;
        let Some(&file) = state.names.get(name) else {
            return Err(ShmError::NotFound(name.to_string()));
        };
        if state.files[file].initialised {
            return Ok(Look::Ready(self.open_desc(&mut state, file)));
        }
        let creator_alive = state.files[file].locks[..2]
            .iter()
            .any(|lock| state.holder_alive(*lock).is_some());
        state.initialising_seen += 1;
        Ok(Look::Initialising { creator_alive })
    }

    fn open_any(&self, name: &str) -> Result<(ModelFd, FileId), ShmError> {
        let mut state = self.step()?;
        let Some(&file) = state.names.get(name) else {
            return Err(ShmError::NotFound(name.to_string()));
        };
        Ok((self.open_desc(&mut state, file), (0, file as u64)))
    }

    fn named_id(&self, name: &str) -> Result<Option<FileId>, ShmError> {
        let mut state = self.step()?;
        let seen = state.names.get(name).copied();
        if let Some(locked) = state.name_lock_of(self.pid) {
            let forced = state.forced;
            state.procs[self.pid].looked = Some((locked, seen, forced));
        }
        Ok(seen.map(|file| (0, file as u64)))
    }

    fn unlink(&self, name: &str) -> Result<(), ShmError> {
        let mut state = self.step()?;
        state.unlink(self.pid, name)
    }

    fn claim(&self, fd: &ModelFd, role: Role) -> Result<ModelLock, ShmError> {
        self.lock_byte(fd, role_byte(role), false)
    }

    fn lock_name(&self, fd: &ModelFd, _name: &str) -> Result<ModelLock, ShmError> {
        self.lock_byte(fd, NAME_BYTE, true)
    }

    fn role_held(&self, fd: &ModelFd, _name: &str, role: Role) -> Result<bool, ShmError> {
        let state = self.step()?;
        let lock = state.files[fd.file].locks[role_byte(role)];
        Ok(matches!(state.holder_alive(lock), Some((desc, _)) if desc != fd.id))
    }

    fn bump_generation(&self, file: &ModelFd, role: Role) {
        if let Ok(mut state) = self.step() {
            state.files[file.file].generations[role_byte(role)] += 1;
        }
    }

    fn ever_claimed(&self, file: &ModelFd, role: Role) -> bool {
        // A read of the mapping, not a system call: no step.
        self.world.lock().files[file.file].generations[role_byte(role)] != 0
    }

    fn finished(&self, file: &ModelFd) -> Result<bool, ShmError> {
        let state = self.step()?;
        Ok(state.files[file.file].finished)
    }

    fn now(&self) -> usize {
        self.world.lock().procs[self.pid].pauses
    }

    fn waited_out(&self, since: &usize) -> bool {
        let state = self.world.lock();
        let pauses = state.procs[self.pid].pauses;
        // A live process between its exclusive create and its role claim
        // claims within the real two seconds: the wait is not over.
        let creator_pending = state
            .files
            .iter()
            .any(|f| !f.creator_claimed && !state.procs[f.creator].dead);
        pauses.saturating_sub(*since) >= 3 && !creator_pending
    }

    fn pause(&self) {
        if let Ok(mut state) = self.step() {
            state.procs[self.pid].pauses += 1;
        }
        shuttle::thread::yield_now();
    }
}
