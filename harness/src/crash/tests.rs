//! Unit tests of the consumer's delivery record and of how the driver
//! settles and checks it, over a simulated ring in this process (no fork).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ringproof::shm::{self, Role};

use super::child::Delivery;
use super::message::{encode, message_len, read_plan};
use super::process::End;
use super::run::{Deliveries, Life, RoleState, Run, RunStats};
use super::side::SidePage;
use super::{CrashReport, EXIT_OK, EXIT_STORES_SPENT, RUN_DEADLINE};

const CAPACITY: u64 = 512;
/// Messages in the simulated stream (one producer, all committed).
const MESSAGES: u64 = 6;

/// The segment as a consumer left it; settling a consumer reads `head`
/// (here counted in messages) and whether the role is held.
fn segment_at(head: u64) -> shm::Inspection {
    shm::Inspection {
        name: "unit".into(),
        file_size: 0,
        error: None,
        position_error: None,
        capacity: CAPACITY,
        max_message: 0,
        head,
        tail: MESSAGES,
        used: MESSAGES - head,
        closed: true,
        producer_gen: 1,
        consumer_gen: 0,
        producer_held: false,
        consumer_held: false,
    }
}

/// The consumer loop of [`consume`] over a simulated ring holding the
/// whole stream: reads of [`read_plan`] messages, each delivered, then
/// the release recorded around the release store (`head`, in messages).
/// That store counts against the bound like the side-page ones, so a
/// bound of k stops the consumer where a `SIGKILL` after its k-th store
/// would.
fn consume_simulated(d: &mut Delivery<'_>, head: &AtomicU64) -> Result<(), i32> {
    let mut reads = 0;
    loop {
        // Relaxed: one thread owns both the simulated ring and the side page.
        let pre_head = head.load(Ordering::Relaxed);
        if pre_head == MESSAGES {
            break;
        }
        let take = read_plan(reads).min(MESSAGES - pre_head);
        reads += 1;
        for seq in pre_head..pre_head + take {
            let mut bytes = vec![0u8; message_len(seq, CAPACITY)];
            encode(seq, 0, &mut bytes);
            d.deliver(&bytes)?;
        }
        d.pending_release(pre_head)?;
        d.put(head, pre_head + take)?;
        d.released()?;
    }
    // Relaxed: as above.
    d.side.c_done.store(1, Ordering::Relaxed);
    Ok(())
}

/// Runs the next consumer of `run` from the released position, stopped
/// after `stores` stores (`None`: to the end), and settles it as the
/// driver would. Returns whether it reached the end of the stream.
fn consumer_life(run: &mut Run<'_>, head: &AtomicU64, stores: Option<u64>) -> bool {
    run.next(Role::Consumer, None);
    let side = run.side();
    let incarnation = run.consumer.lives.len() as u64 - 1;
    // Relaxed: this thread alone uses the side page here. What the
    // child would have recorded after its claim.
    side.consumer
        .generation
        .store(incarnation + 1, Ordering::Relaxed);
    let mut d = Delivery {
        side,
        capacity: CAPACITY,
        incarnation,
        producer: None,
        stores_left: stores,
    };
    let end = match consume_simulated(&mut d, head) {
        Ok(()) => End::Exited(EXIT_OK),
        Err(EXIT_STORES_SPENT) => End::Killed,
        Err(code) => End::Exited(code),
    };
    // Relaxed: as above.
    let at = head.load(Ordering::Relaxed);
    run.settle_inspected(Role::Consumer, end, stores.is_some(), Some(segment_at(at)));
    end == End::Exited(EXIT_OK)
}

/// A consumer stopped after each of its stores in turn (k = 0, 1, … until
/// one finishes the stream), then a successor from the released position:
/// the checker must find the stream whole and the bookkeeping exact,
/// wherever the first one stopped.
#[test]
fn a_consumer_killed_after_any_of_its_stores_is_accounted_exactly() {
    let page: SidePage = SidePage::new().expect("side page");
    let mut k = 0;
    let (mut redelivered, mut in_doubt) = (0, 0);
    loop {
        page.side().reset_all();
        let mut report = CrashReport::default();
        let mut run = Run {
            page: &page,
            name: format!("unit-k{k}"),
            capacity: CAPACITY,
            end: MESSAGES,
            deadline: Instant::now() + RUN_DEADLINE,
            producer: RoleState {
                lives: vec![Life {
                    start: 0,
                    end: MESSAGES,
                    generation: 1,
                    deliveries: Deliveries::default(),
                }],
                ..RoleState::default()
            },
            consumer: RoleState::default(),
            stats: RunStats::default(),
            report: &mut report,
        };
        let head = AtomicU64::new(0);
        let finished = consumer_life(&mut run, &head, Some(k));
        if !finished {
            assert!(consumer_life(&mut run, &head, None), "k = {k}");
        }
        run.check_stream();
        let stats = run.stats.clone();
        drop(run);
        assert!(
            report.violations.is_empty(),
            "stopped after {k} stores: {:#?}",
            report.violations
        );
        assert_eq!(report.order_violations, 0, "k = {k}");
        assert_eq!(report.duplicates_outside_batch, 0, "k = {k}");
        assert_eq!(report.child_failures, 0, "k = {k}");
        assert_eq!((stats.lost, stats.delivered), (0, MESSAGES), "k = {k}");
        redelivered += stats.duplicates;
        in_doubt += stats.in_doubt;
        if finished {
            break;
        }
        k += 1;
    }
    // Each message takes several stores: every one of them was a stop,
    // some inside an unreleased batch, some between a release and its
    // record.
    assert!(k > 4 * MESSAGES, "only {k} stores in a whole stream");
    assert!(redelivered > 0 && in_doubt > 0);
}
