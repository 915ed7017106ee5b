//! loom model of the segment header's publication: the creator writes the
//! header, then publishes it with `ringproof::sync::publish_magic` (the code
//! `shm::Segment`'s create runs); an opener that `magic_published` reports
//! true for must see every header byte. Weakening either side's ordering
//! makes loom report the header read as racing with its write.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use ringproof::sync::{magic_published, publish_magic};
use ringproof_models::loom_shared::{LoomWord64, check};

const BOUND: usize = 3;

#[test]
fn an_opener_that_sees_the_magic_sees_the_whole_header() {
    check("header_publication", BOUND, || {
        let magic = Arc::new(LoomWord64::new(0));
        let header = Arc::new(UnsafeCell::new([0u8; 24]));
        let creator = {
            let (magic, header) = (Arc::clone(&magic), Arc::clone(&header));
            thread::spawn(move || {
                // SAFETY: nobody reads the header before the magic is
                // published below (that is what the model checks).
                header.with_mut(|bytes| unsafe { (*bytes).fill(7) });
                publish_magic(&*magic);
            })
        };
        if magic_published(&*magic) {
            // SAFETY: the Acquire load saw the magic, so the creator's
            // writes happen before this read (loom fails the model if not).
            let seen = header.with(|bytes| unsafe { *bytes });
            assert_eq!(seen, [7u8; 24], "a published header is whole");
        }
        creator.join().unwrap();
    });
}
