//! Shared-memory segments: create/open, role leases, inspection, cleanup.

use std::time::Duration;

use ringproof::Error;
use ringproof::ReadError;
use ringproof::shm::{self, OpenMode, Role, Segment, ShmConsumer, ShmError, ShmProducer};

use ringproof::shm::TempName;

#[test]
fn producer_and_consumer_meet_through_a_name() {
    let name = TempName::for_test("meet");
    let mut p = ShmProducer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap();
    let mut c = ShmConsumer::new(name.name(), OpenMode::Open).unwrap();
    p.push(b"across").unwrap();
    assert_eq!(c.pop().unwrap(), b"across");
    let meta = std::fs::metadata(format!("/dev/shm{}", name.name())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn second_producer_gets_role_taken_and_dead_role_is_free() {
    let name = TempName::for_test("role");
    let p = ShmProducer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap();
    let err = ShmProducer::new(name.name(), OpenMode::Open).unwrap_err();
    assert!(matches!(err, ShmError::RoleTaken(Role::Producer)), "{err}");
    let c = ShmConsumer::new(name.name(), OpenMode::Open).unwrap();
    drop(p);
    let p2 = ShmProducer::new(name.name(), OpenMode::Open).unwrap();
    let info = Segment::inspect(name.name()).unwrap();
    assert_eq!(info.producer_gen, 2);
    assert_eq!(info.consumer_gen, 1);
    assert!(info.producer_held && info.consumer_held);
    drop((p2, c));
}

#[test]
fn create_is_exclusive_and_open_needs_a_segment() {
    let name = TempName::for_test("excl");
    let _p = ShmProducer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap();
    let err = ShmConsumer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap_err();
    assert!(matches!(err, ShmError::AlreadyExists(_)), "{err}");
    let missing = TempName::for_test("missing");
    let err = ShmConsumer::new(missing.name(), OpenMode::Open).unwrap_err();
    assert!(matches!(err, ShmError::NotFound(_)), "{err}");
}

#[test]
fn names_are_validated() {
    assert_eq!(shm::validate_name("abc").unwrap(), "/abc");
    assert_eq!(shm::validate_name("/abc").unwrap(), "/abc");
    for bad in ["", "/", "a/b", "//a", "a\0b", "..", &"x".repeat(256)] {
        assert!(
            matches!(shm::validate_name(bad), Err(ShmError::InvalidName(_))),
            "{bad:?}"
        );
    }
    assert!(shm::validate_name(&"x".repeat(255)).is_ok());
}

#[test]
fn bad_capacity_is_refused() {
    let name = TempName::for_test("cap");
    let err = ShmProducer::new(name.name(), OpenMode::Create { capacity: 1000 }).unwrap_err();
    assert!(matches!(err, ShmError::InvalidCapacity(1000)), "{err}");
    assert!(!name.exists());
}

#[test]
fn closed_and_drained_segment_is_removed_by_the_last_to_leave() {
    let name = TempName::for_test("unlink");
    let mut p = ShmProducer::new(name.name(), OpenMode::CreateOrOpen { capacity: 4096 }).unwrap();
    p.push(b"x").unwrap();
    p.close().unwrap();
    drop(p);
    assert!(name.exists(), "unread messages keep the segment");
    let mut c = ShmConsumer::new(name.name(), OpenMode::CreateOrOpen { capacity: 4096 }).unwrap();
    assert_eq!(c.pop().unwrap(), b"x");
    assert_eq!(c.pop().unwrap_err(), ReadError::Closed);
    drop(c);
    assert!(!name.exists());
}

#[test]
fn consumer_sees_producer_death_after_draining() {
    let name = TempName::for_test("death");
    let mut c = ShmConsumer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap();
    let mut p = ShmProducer::new(name.name(), OpenMode::Open).unwrap();
    p.push(b"committed").unwrap();
    drop(p); // leaves without closing, like a crash
    let read = c.read_blocking(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(&*read, b"committed");
    read.release();
    let err = c.read_blocking(Some(Duration::from_secs(5))).unwrap_err();
    assert!(matches!(err, ShmError::PeerDied(Role::Producer)), "{err}");
}

#[test]
fn blocking_read_times_out_without_a_producer() {
    let name = TempName::for_test("timeout");
    let mut c = ShmConsumer::new(name.name(), OpenMode::Create { capacity: 4096 }).unwrap();
    let err = c
        .read_blocking(Some(Duration::from_millis(100)))
        .unwrap_err();
    assert!(matches!(err, ShmError::TimedOut), "{err}");
}

#[test]
fn inspect_reports_header_and_roles() {
    let name = TempName::for_test("inspect");
    let mut p = ShmProducer::new(name.name(), OpenMode::Create { capacity: 8192 }).unwrap();
    p.push(&[0; 10]).unwrap();
    let info = Segment::inspect(name.name()).unwrap();
    assert_eq!(info.capacity, 8192);
    assert_eq!(info.used, 24);
    assert!(info.producer_held && !info.consumer_held && !info.stale());
    assert!(info.error.is_none());
    assert!(shm::list().unwrap().iter().any(|n| n == name.name()));
}

#[test]
fn blocking_push_and_read_cross_threads() {
    let name = TempName::for_test("block");
    let mut p = ShmProducer::new(name.name(), OpenMode::Create { capacity: 256 }).unwrap();
    let mut c = ShmConsumer::new(name.name(), OpenMode::Open).unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..10_000u32 {
            p.push_blocking(&i.to_le_bytes(), Some(Duration::from_secs(10)))
                .unwrap();
        }
        p.close().unwrap();
    });
    let mut next = 0u32;
    loop {
        match c.read_blocking(Some(Duration::from_secs(10))) {
            Ok(read) => {
                assert_eq!(u32::from_le_bytes(read[..].try_into().unwrap()), next);
                read.release();
                next += 1;
            }
            Err(ShmError::Ring(Error::Closed)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(next, 10_000);
    t.join().unwrap();
}

#[test]
fn late_consumer_finds_the_end_of_an_empty_closed_stream() {
    let name = TempName::for_test("late");
    let mut p = ShmProducer::new(name.name(), OpenMode::CreateOrOpen { capacity: 4096 }).unwrap();
    p.close().unwrap();
    drop(p);
    assert!(name.exists(), "no consumer came yet: the segment stays");
    let mut c = ShmConsumer::new(name.name(), OpenMode::CreateOrOpen { capacity: 4096 }).unwrap();
    assert_eq!(c.pop().unwrap_err(), ReadError::Closed);
    drop(c);
    assert!(!name.exists());
}

#[test]
fn a_ring_larger_than_dev_shm_is_no_space_not_sigbus() {
    // 1 TiB, the largest capacity: more than any test machine's /dev/shm.
    let capacity = ringproof::layout::MAX_CAPACITY;
    let stat = nix::sys::statvfs::statvfs("/dev/shm").unwrap();
    let total = stat.blocks() as u64 * stat.fragment_size() as u64;
    if total > capacity {
        eprintln!("skipped: /dev/shm holds {total} bytes, more than {capacity}");
        return;
    }
    let name = TempName::for_test("nospace");
    let err = ShmProducer::new(name.name(), OpenMode::Create { capacity }).unwrap_err();
    assert!(matches!(err, ShmError::NoSpace { .. }), "{err}");
    assert!(err.to_string().contains("--shm-size"), "hint: {err}");
    assert!(!name.exists(), "a failed create removes its name");
}
