//! The segment's lifecycle seen from outside: an opener and a creator that
//! has not finished, files that are not ours, two sides leaving at once, a
//! peer that rewrites `closed` or a generation.
#![allow(clippy::disallowed_types)] // the test plays a creator: it publishes the magic with a core atomic.

use std::io::Write as _;
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::sync::mpsc;
use std::time::Duration;

use nix::fcntl::{FcntlArg, fcntl};
use ringproof::layout::{CLOSED_OFFSET, HEADER_SIZE, Header, PRODUCER_GEN_OFFSET, segment_size};
use ringproof::shm::{self, OpenMode, Role, Segment, ShmConsumer, ShmError, ShmProducer};
use zerocopy::IntoBytes;

use ringproof::shm::TempName;
use ringproof::testing::scribble_segment;

/// Creates the file by hand, owner-only, as a creator's `shm_open` does.
fn create_file(name: &TempName, mode: u32) -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(name.path())
        .unwrap();
    // `mode` as given, whatever the umask.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .unwrap();
    file
}

/// Holds byte `byte` of `file` as a role lease (OFD write lock), as a
/// creator does before it sizes the file.
fn hold_byte(file: &std::fs::File, byte: i64) {
    // SAFETY: libc::flock is a plain C struct for which all-zero is valid.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = byte;
    lock.l_len = 1;
    fcntl(file.as_fd(), FcntlArg::F_OFD_SETLK(&lock)).unwrap();
}

/// A fresh header of a `capacity` ring with the magic left zero, and the magic.
fn header_without_magic(capacity: u64) -> (Vec<u8>, [u8; 8]) {
    let header = Header::new(capacity).unwrap();
    let mut bytes = header.as_bytes().to_vec();
    let mut magic = [0u8; 8];
    magic.copy_from_slice(&bytes[..8]);
    bytes[..8].fill(0);
    (bytes, magic)
}

/// Whether `rx` stays silent for a while: the opener is still waiting. (It
/// can only pass wrongly, never fail wrongly: a slow opener is silent too.)
fn still_waiting<T>(rx: &mpsc::Receiver<T>) -> bool {
    matches!(
        rx.recv_timeout(Duration::from_millis(200)),
        Err(mpsc::RecvTimeoutError::Timeout)
    )
}

#[test]
fn opener_waits_for_a_creator_that_has_not_sized_or_published_the_segment() {
    let name = TempName::for_test("life-init");
    let capacity = 4096;
    // The creator: file created, role held, nothing else yet.
    let file = create_file(&name, 0o600);
    hold_byte(&file, shm::PRODUCER_LOCK_BYTE);
    let (tx, rx) = mpsc::channel();
    let opener_name = name.name().to_string();
    let opener = std::thread::spawn(move || {
        let result = ShmConsumer::new(&opener_name, OpenMode::Open).map(|_| ());
        tx.send(result.map_err(|e| e.to_string())).unwrap();
    });
    assert!(still_waiting(&rx), "the opener gave up on an empty file");
    // Sized and allocated, header written, magic still zero.
    let (bytes, magic) = header_without_magic(capacity);
    file.set_len(segment_size(capacity)).unwrap();
    nix::fcntl::posix_fallocate(file.as_fd(), 0, segment_size(capacity) as i64).unwrap();
    (&file).write_all(&bytes).unwrap();
    assert!(still_waiting(&rx), "the opener gave up before the magic");
    // Publish the magic with one atomic store, as the creator does.
    // SAFETY: a fresh shared mapping of our own file, unmapped below.
    let map = unsafe {
        nix::sys::mman::mmap(
            None,
            std::num::NonZeroUsize::new(HEADER_SIZE).unwrap(),
            nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
            nix::sys::mman::MapFlags::MAP_SHARED,
            file.as_fd(),
            0,
        )
    }
    .unwrap();
    // SAFETY: the mapping is page-aligned and at least 8 bytes; every
    // concurrent access to these bytes is atomic or follows an Acquire load.
    let word = unsafe { std::sync::atomic::AtomicU64::from_ptr(map.as_ptr().cast()) };
    // Release: publishes the header written above; pairs with the opener's
    // Acquire load of the magic.
    word.store(
        u64::from_ne_bytes(magic),
        std::sync::atomic::Ordering::Release,
    );
    let result = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(result, Ok(()));
    opener.join().unwrap();
    // SAFETY: mapped above; nothing refers to it any more.
    unsafe { nix::sys::mman::munmap(map, HEADER_SIZE) }.unwrap();
}

#[test]
fn uninitialised_segment_whose_creator_died_is_an_error_after_a_short_wait() {
    let name = TempName::for_test("life-orphan");
    drop(create_file(&name, 0o600)); // nobody holds a role
    let err = ShmConsumer::new(name.name(), OpenMode::Open).unwrap_err();
    assert!(matches!(err, ShmError::NeverInitialised(_)), "{err}");
    assert!(err.to_string().contains("clean --name"), "{err}");
    // `clean` takes it away: no role is held.
    assert_eq!(
        shm::remove_stale(name.name()).unwrap(),
        shm::Removal::Removed
    );
    assert!(!name.exists());
}

/// A whole, valid segment written by hand with `mode`.
fn hand_made_segment(name: &TempName, mode: u32, allocate: bool) {
    let capacity = 4096;
    let file = create_file(name, mode);
    file.set_len(segment_size(capacity)).unwrap();
    if allocate {
        nix::fcntl::posix_fallocate(file.as_fd(), 0, segment_size(capacity) as i64).unwrap();
    }
    (&file)
        .write_all(Header::new(capacity).unwrap().as_bytes())
        .unwrap();
}

#[test]
fn a_hand_made_owner_only_segment_is_accepted() {
    // The control for the refusals below: the same file, mode 0600, allocated.
    let name = TempName::for_test("life-handmade");
    hand_made_segment(&name, 0o600, true);
    let mut p = ShmProducer::new(name.name(), OpenMode::Open).unwrap();
    p.push(b"ok").unwrap();
}

#[test]
fn segment_that_lets_other_users_in_is_refused() {
    let name = TempName::for_test("life-mode");
    hand_made_segment(&name, 0o666, true);
    for err in [
        ShmProducer::new(name.name(), OpenMode::Open).unwrap_err(),
        ShmProducer::new(name.name(), OpenMode::CreateOrOpen { capacity: 4096 }).unwrap_err(),
        ShmConsumer::new(name.name(), OpenMode::Open).unwrap_err(),
    ] {
        assert!(matches!(err, ShmError::Untrusted { .. }), "{err}");
        assert!(err.to_string().contains("0666"), "{err}");
    }
    assert!(matches!(
        Segment::inspect(name.name()).unwrap_err(),
        ShmError::Untrusted { .. }
    ));
}

#[test]
fn segment_owned_by_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: only root can give a file to another user here");
        return;
    }
    let name = TempName::for_test("life-squat");
    hand_made_segment(&name, 0o600, true);
    std::os::unix::fs::chown(name.path(), Some(65534), Some(65534)).unwrap();
    let err = ShmProducer::new(name.name(), OpenMode::CreateOrOpen { capacity: 4096 }).unwrap_err();
    assert!(matches!(err, ShmError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("uid 65534"), "{err}");
}

#[test]
fn segment_with_holes_is_refused_before_its_data_is_touched() {
    let name = TempName::for_test("life-sparse");
    hand_made_segment(&name, 0o600, false);
    let err = ShmProducer::new(name.name(), OpenMode::Open).unwrap_err();
    assert!(matches!(err, ShmError::NotPreallocated { .. }), "{err}");
}

#[test]
fn fifo_symlink_and_directory_at_the_name_say_what_they_are() {
    let fifo = TempName::for_test("life-fifo");
    nix::unistd::mkfifo(&fifo.path(), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let link = TempName::for_test("life-link");
    std::os::unix::fs::symlink("/dev/null", link.path()).unwrap();
    let dir = TempName::for_test("life-dir");
    std::fs::create_dir(dir.path()).unwrap();
    for (name, what) in [
        (&fifo, "a FIFO"),
        (&link, "a symbolic link"),
        (&dir, "a directory"),
    ] {
        let err =
            ShmConsumer::new(name.name(), OpenMode::CreateOrOpen { capacity: 4096 }).unwrap_err();
        assert!(
            matches!(err, ShmError::NotASegment { what: w, .. } if w == what),
            "{}: {err}",
            name.name()
        );
    }
    // `scan` lists them as skipped, opening none (a FIFO would block it).
    let entries = shm::scan().unwrap();
    for name in [&fifo, &link, &dir] {
        assert!(
            entries
                .iter()
                .any(|e| matches!(e, shm::Entry::Skipped { name: n, .. } if *n == name.name())),
            "{} not listed as skipped",
            name.name()
        );
    }
    let _ = std::fs::remove_dir(dir.path());
}

#[test]
fn two_sides_leaving_at_once_never_remove_a_newer_segment() {
    let runs: usize = std::env::var("RINGPROOF_LEAVE_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let name = TempName::for_test("life-leave");
    for run in 0..runs {
        let mut p = ShmProducer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap();
        let mut c = ShmConsumer::new(name.name(), OpenMode::Open).unwrap();
        p.push(b"last").unwrap();
        p.close().unwrap();
        assert_eq!(c.pop().unwrap(), b"last");
        // Both leave at once, while a third party creates the name anew as
        // soon as it is free.
        let barrier = std::sync::Barrier::new(3);
        let newcomer = std::thread::scope(|s| {
            s.spawn(|| {
                barrier.wait();
                drop(p);
            });
            s.spawn(|| {
                barrier.wait();
                drop(c);
            });
            let newcomer = s.spawn(|| {
                barrier.wait();
                loop {
                    match ShmProducer::new(name.name(), OpenMode::Create { capacity: 4096 }) {
                        Ok(p) => return p,
                        Err(ShmError::AlreadyExists(_)) => std::thread::yield_now(),
                        Err(e) => panic!("run {run}: {e}"),
                    }
                }
            });
            newcomer.join().unwrap()
        });
        // The newcomer's segment still has the name: nobody removed it.
        let info = Segment::inspect(name.name()).unwrap();
        assert!(
            info.producer_held,
            "run {run}: the name lost its newer segment"
        );
        assert_eq!(
            info.producer_gen, 1,
            "run {run}: not the newcomer's segment"
        );
        drop(newcomer);
        shm::unlink(name.name()).unwrap();
    }
}

#[test]
fn a_side_leaving_last_never_removes_a_newer_segment_that_took_the_name() {
    let name = TempName::for_test("life-newer");
    let mut p = ShmProducer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap();
    let mut c = ShmConsumer::new(name.name(), OpenMode::Open).unwrap();
    p.push(b"last").unwrap();
    p.close().unwrap();
    assert_eq!(c.pop().unwrap(), b"last");
    drop(c); // the producer still holds its role: the name stays
    assert!(name.exists());
    // The name is removed by hand (`clean --force`) and created anew.
    shm::unlink(name.name()).unwrap();
    let newer = ShmConsumer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap();
    // The producer leaves last a closed, drained stream whose consumer came:
    // it would remove its name, but the name is the newer segment's now.
    drop(p);
    let info = Segment::inspect(name.name()).unwrap();
    assert!(info.consumer_held && info.producer_gen == 0);
    drop(newer);
}

#[test]
fn stale_clean_never_removes_a_segment_whose_role_is_held() {
    let name = TempName::for_test("life-clean");
    let c = ShmConsumer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap();
    assert_eq!(
        shm::remove_stale(name.name()).unwrap(),
        shm::Removal::InUse {
            producer_held: false,
            consumer_held: true
        }
    );
    assert!(name.exists());
    drop(c);
    // Left by a consumer whose producer never came: stale, and removed.
    assert_eq!(
        shm::remove_stale(name.name()).unwrap(),
        shm::Removal::Removed
    );
    assert!(!name.exists());
}

#[test]
fn closed_set_by_another_process_ends_a_producer_waiting_for_room() {
    let name = TempName::for_test("life-closed");
    let mut p = ShmProducer::new(name.name(), OpenMode::Create { capacity: 64 }).unwrap();
    let max = p.max_message();
    while p.push(&vec![7; max]).is_ok() {}
    // No consumer: the ring stays full. A hostile peer marks it closed.
    scribble_segment(&name, CLOSED_OFFSET, &1u32.to_ne_bytes());
    let err = p.push_blocking(&vec![8; max], None).unwrap_err();
    assert!(
        matches!(err, ShmError::Ring(ringproof::Error::Closed)),
        "{err}"
    );
}

#[test]
fn producer_seen_once_is_seen_gone_after_its_generation_is_zeroed() {
    let name = TempName::for_test("life-gen");
    let c = ShmConsumer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap();
    assert!(!c.producer_gone().unwrap(), "no producer came yet");
    let p = ShmProducer::new(name.name(), OpenMode::Open).unwrap();
    assert!(!c.producer_gone().unwrap(), "the producer is alive");
    // A hostile peer zeroes the producer's generation; then it dies.
    scribble_segment(&name, PRODUCER_GEN_OFFSET, &0u32.to_ne_bytes());
    drop(p);
    assert!(c.producer_gone().unwrap());
    let mut c = c;
    let err = c.wait_message(None).unwrap_err();
    assert!(matches!(err, ShmError::PeerDied(Role::Producer)), "{err}");
}
