//! Fan-in: `K` producer processes into one consumer process, through an
//! MPSC shared-memory ring ([`mpsc_ring`]), a Unix datagram socket with `K`
//! writers ([`unix_datagram`]), or, for `K = 1`, the SPSC ring
//! ([`spsc_ring`]). The three run the same producer and consumer code over
//! a small [`Sender`]/[`Receiver`] pair, so their figures differ only by
//! the transport.
//!
//! # Method
//!
//! - The consumer is the calling process; each producer is a forked child
//!   that opens its own endpoint (its own MPSC slot, its own socket). With
//!   two CPUs or more the consumer is pinned to the first and the producers
//!   spread over the others (all on the second when there are two).
//! - Every message starts with an 8-byte header: the producer's id (6 bits),
//!   its sequence number (low 24 bits) and a `CLOCK_MONOTONIC` timestamp in
//!   nanoseconds (low 34 bits, about 17 s before it wraps). The consumer
//!   checks the length, the id and that each producer's sequence numbers
//!   arrive in order with none missing, and copies every message out.
//! - Warm-up: each producer sends its share of a ring's worth of messages
//!   and waits; the consumer drains them all.
//! - Throughput: the consumer raises the start flag and starts its clock;
//!   every producer sends its `messages` as fast as the transport takes
//!   them; the clock stops when the consumer has copied out the last of the
//!   `K × messages`. No clock is read on the producer side in this phase.
//! - Latency: the consumer raises the flag again; each producer then sends
//!   `latency_samples` messages one at a time, stamping each with the clock
//!   right before sending it and waiting for the consumer's acknowledgement
//!   (a word in a shared page) before the next. The consumer records
//!   `now - stamp` in an HDR histogram: the one-way latency of a message with
//!   at most `K` of them in flight, one per producer.
//! - End: each producer leaves (the last MPSC producer closes the stream;
//!   the SPSC producer closes it); the consumer checks that nothing follows.

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringproof::shm::{
    OpenMode, ShmConsumer, ShmMpscConsumer, ShmMpscProducer, ShmProducer, TempName,
};
use ringproof::{PopIntoError, PushError};

use crate::process::{Child, ControlPage, PinGuard, STALL, allowed_cpus, spawn};
use crate::{BenchError, Latency, PARK, Throughput};

/// Most producers (the MPSC ring's slots; 6 bits of the header).
pub const MAX_PRODUCERS: usize = 64;
/// Bytes of the header every message starts with.
pub const HEADER: usize = 8;

const ID_BITS: u32 = 6;
const SEQ_BITS: u32 = 24;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
const TIME_MASK: u64 = (1 << (64 - ID_BITS - SEQ_BITS)) - 1;

/// Control word: 1 starts the timed stream, 2 the latency phase.
const GO: usize = 0;
/// Control word of producer `id`'s acknowledgements: `ACK + id`.
const ACK: usize = 1;

/// A fan-in measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanIn {
    /// Producer processes (`1..=MAX_PRODUCERS`).
    pub producers: usize,
    /// Payload bytes per message (at least [`HEADER`]).
    pub message_size: usize,
    /// Ring capacity in bytes (socket: the requested buffer sizes).
    pub ring_size: u64,
    /// Timed messages of each producer.
    pub messages: u64,
    /// Latency samples of each producer.
    pub latency_samples: u64,
    /// Pin the consumer and the producers to CPUs (see the module doc).
    pub pin: bool,
}

impl FanIn {
    /// Warm-up messages of each producer: their sum goes once round the ring.
    fn warmup(&self) -> u64 {
        let record = (self.message_size as u64 + 15) & !7;
        ((self.ring_size / record).clamp(16, 1 << 16) / self.producers as u64).max(16)
    }

    /// Every message of one producer, all phases.
    fn per_producer(&self) -> u64 {
        self.warmup() + self.messages + self.latency_samples
    }

    fn check(&self) -> Result<(), BenchError> {
        if !(1..=MAX_PRODUCERS).contains(&self.producers) {
            return Err(BenchError::Config("producers must be 1 to 64"));
        }
        if self.message_size < HEADER {
            return Err(BenchError::Config(
                "fan-in messages carry an 8-byte header: at least 8 bytes",
            ));
        }
        if !ringproof::layout::capacity_ok(self.ring_size)
            || self.message_size as u64 > ringproof::layout::max_message(self.ring_size)
        {
            return Err(BenchError::Config("message larger than the ring accepts"));
        }
        if self.messages == 0 || self.latency_samples == 0 {
            return Err(BenchError::Config("at least one message per phase"));
        }
        if self.per_producer() > SEQ_MASK {
            return Err(BenchError::Config("at most 2^24 messages per producer"));
        }
        Ok(())
    }

    /// (consumer CPU, CPU of producer `id`).
    fn cpus(&self) -> (Option<usize>, impl Fn(usize) -> Option<usize>) {
        let cpus = if self.pin { allowed_cpus() } else { Vec::new() };
        let consumer = (cpus.len() >= 2).then(|| cpus[0]);
        let producer = move |id: usize| match cpus.as_slice() {
            [_, rest @ ..] if !rest.is_empty() => Some(rest[id % rest.len()]),
            _ => None,
        };
        (consumer, producer)
    }
}

/// What a fan-in measured.
#[derive(Clone, Debug, PartialEq)]
pub struct FanInResult {
    /// The timed stream: `producers × messages` messages.
    pub throughput: Throughput,
    /// One-way latency of the latency phase.
    pub latency: Latency,
    /// Timed messages received from each producer, all checked in order.
    pub per_producer: Vec<u64>,
}

/// The sending side of a transport, in one producer process.
pub(crate) trait Sender {
    /// Sends one message, waiting for room.
    fn send(&mut self, message: &[u8]) -> Result<(), BenchError>;
    /// Leaves after the last message.
    fn finish(self) -> Result<(), BenchError>;
}

/// The receiving side, in the consumer process.
pub(crate) trait Receiver {
    /// Waits for the next message and copies it into `buf` (longer than a
    /// message, so a longer one shows); its length.
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, BenchError>;
    /// Checks that nothing follows the last message.
    fn end(&mut self) -> Result<(), BenchError>;
}

/// The clock both sides share, in nanoseconds.
fn now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(t) => (t.tv_sec() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.tv_nsec() as u64),
        Err(_) => 0,
    }
}

fn header(id: usize, seq: u64, time: u64) -> [u8; HEADER] {
    let word = id as u64 | (seq & SEQ_MASK) << ID_BITS | (time & TIME_MASK) << (ID_BITS + SEQ_BITS);
    word.to_le_bytes()
}

/// (id, seq low bits, time low bits) of a message's header.
fn parse(message: &[u8]) -> (usize, u64, u64) {
    let mut bytes = [0u8; HEADER];
    bytes.copy_from_slice(&message[..HEADER]);
    let word = u64::from_le_bytes(bytes);
    (
        (word & ((1 << ID_BITS) - 1)) as usize,
        (word >> ID_BITS) & SEQ_MASK,
        word >> (ID_BITS + SEQ_BITS),
    )
}

/// Times out a wait that makes no progress.
struct Stall(Option<Instant>);

impl Stall {
    fn new() -> Stall {
        Stall(None)
    }

    fn tick(&mut self) -> Result<(), BenchError> {
        match self.0 {
            None => self.0 = Some(Instant::now()),
            Some(since) if since.elapsed() > STALL => return Err(BenchError::Stalled),
            Some(_) => {}
        }
        Ok(())
    }
}

/// `K` producers of an MPSC ring in shared memory into its consumer.
pub fn mpsc_ring(cfg: &FanIn) -> Result<FanInResult, BenchError> {
    cfg.check()?;
    let name = TempName::new("bench-mpsc");
    let consumer = ShmMpscConsumer::with_slots(
        name.name(),
        OpenMode::Create {
            capacity: cfg.ring_size,
        },
        cfg.producers as u32,
    )?;
    run(cfg, consumer, |_| {
        Ok(ShmMpscProducer::new(name.name(), OpenMode::Open)?)
    })
}

/// The SPSC ring with its one producer, through the same code.
pub fn spsc_ring(cfg: &FanIn) -> Result<FanInResult, BenchError> {
    if cfg.producers != 1 {
        return Err(BenchError::Config("an SPSC ring has one producer"));
    }
    cfg.check()?;
    let name = TempName::new("bench-fan1");
    let consumer = ShmConsumer::new(
        name.name(),
        OpenMode::Create {
            capacity: cfg.ring_size,
        },
    )?;
    run(cfg, consumer, |_| {
        Ok(ShmProducer::new(name.name(), OpenMode::Open)?)
    })
}

/// `K` processes, each with its own Unix datagram socket connected to one
/// reader (bound to a unique abstract name: no socket file).
pub fn unix_datagram(cfg: &FanIn) -> Result<FanInResult, BenchError> {
    cfg.check()?;
    let unique = TempName::new("bench-dgram");
    let address = SocketAddr::from_abstract_name(unique.name().trim_start_matches('/'))?;
    let reader = UnixDatagram::bind_addr(&address)?;
    let size = libc::c_int::try_from(cfg.ring_size).unwrap_or(libc::c_int::MAX);
    crate::stream::set_buffer(&reader, libc::SO_RCVBUF, size);
    // A `recv` that waits this long is a stalled run.
    reader.set_read_timeout(Some(STALL))?;
    let receiver = Datagrams {
        socket: reader,
        message_size: cfg.message_size,
    };
    run(cfg, receiver, |_| {
        let socket = UnixDatagram::unbound()?;
        crate::stream::set_buffer(&socket, libc::SO_SNDBUF, size);
        socket.connect_addr(&address)?;
        Ok(socket)
    })
}

/// Forks the producers, consumes in this process, reaps them.
fn run<R, S, F>(cfg: &FanIn, mut receiver: R, open: F) -> Result<FanInResult, BenchError>
where
    R: Receiver,
    S: Sender,
    F: Fn(usize) -> Result<S, BenchError>,
{
    let control = ControlPage::new()?;
    let (consumer_cpu, producer_cpu) = cfg.cpus();
    let mut children: Vec<Child> = Vec::with_capacity(cfg.producers);
    for id in 0..cfg.producers {
        let open = &open;
        let control = &control;
        children.push(spawn(producer_cpu(id), move || {
            produce(open(id)?, id, cfg, control)
        })?);
    }
    let mut result = {
        let _pin = PinGuard::pin(consumer_cpu)?;
        consume(&mut receiver, cfg, &control)
    };
    for child in children {
        result = child.finish(result);
    }
    result
}

fn produce<S: Sender>(
    mut sender: S,
    id: usize,
    cfg: &FanIn,
    control: &ControlPage,
) -> Result<(), BenchError> {
    let mut message = vec![0xA5u8; cfg.message_size];
    let warmup = cfg.warmup();
    let timed = warmup + cfg.messages;
    for seq in 0..warmup {
        message[..HEADER].copy_from_slice(&header(id, seq, 0));
        sender.send(&message)?;
    }
    control.wait_for(GO, 1)?;
    for seq in warmup..timed {
        message[..HEADER].copy_from_slice(&header(id, seq, 0));
        sender.send(&message)?;
    }
    control.wait_for(GO, 2)?;
    for (n, seq) in (timed..timed + cfg.latency_samples).enumerate() {
        message[..HEADER].copy_from_slice(&header(id, seq, now_ns()));
        sender.send(&message)?;
        control.wait_for(ACK + id, n as u64 + 1)?;
    }
    sender.finish()
}

/// The consumer's bookkeeping: the next sequence number of each producer.
struct Expect {
    next: Vec<u64>,
    len: usize,
}

impl Expect {
    /// Checks one message; its producer and its timestamp.
    fn check(&mut self, message: &[u8]) -> Result<(usize, u64), BenchError> {
        if message.len() != self.len {
            return Err(BenchError::Mismatch {
                expected: self.len as u64,
                found: message.len() as u64,
            });
        }
        let (id, seq, time) = parse(message);
        let Some(next) = self.next.get_mut(id) else {
            return Err(BenchError::Peer(format!(
                "message from unknown producer {id}"
            )));
        };
        if seq != *next & SEQ_MASK {
            return Err(BenchError::Mismatch {
                expected: *next,
                found: seq,
            });
        }
        *next += 1;
        Ok((id, time))
    }

    /// Receives `count` messages from any producers.
    fn receive<R: Receiver>(
        &mut self,
        receiver: &mut R,
        buf: &mut [u8],
        count: u64,
        mut each: impl FnMut(usize, u64),
    ) -> Result<(), BenchError> {
        for _ in 0..count {
            let got = receiver.recv(buf)?;
            let (id, time) = self.check(&buf[..got])?;
            std::hint::black_box(&mut *buf);
            each(id, time);
        }
        Ok(())
    }
}

fn consume<R: Receiver>(
    receiver: &mut R,
    cfg: &FanIn,
    control: &ControlPage,
) -> Result<FanInResult, BenchError> {
    let k = cfg.producers as u64;
    let mut buf = vec![0u8; cfg.message_size + HEADER];
    let mut expect = Expect {
        next: vec![0; cfg.producers],
        len: cfg.message_size,
    };
    expect.receive(receiver, &mut buf, k * cfg.warmup(), |_, _| {})?;

    control.set(GO, 1);
    let start = Instant::now();
    let mut per_producer = vec![0u64; cfg.producers];
    expect.receive(receiver, &mut buf, k * cfg.messages, |id, _| {
        per_producer[id] += 1;
    })?;
    let elapsed = start.elapsed();

    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|_| BenchError::Config("histogram bounds"))?;
    let mut acked = vec![0u64; cfg.producers];
    control.set(GO, 2);
    expect.receive(receiver, &mut buf, k * cfg.latency_samples, |id, time| {
        let latency = now_ns().wrapping_sub(time) & TIME_MASK;
        let _ = histogram.record(latency.max(1));
        acked[id] += 1;
        control.set(ACK + id, acked[id]);
    })?;
    receiver.end()?;
    let total = cfg.per_producer();
    if let Some(short) = expect.next.iter().find(|&&n| n != total) {
        return Err(BenchError::Mismatch {
            expected: total,
            found: *short,
        });
    }
    Ok(FanInResult {
        throughput: Throughput {
            messages: k * cfg.messages,
            bytes: k * cfg.messages * cfg.message_size as u64,
            elapsed: elapsed.max(Duration::from_nanos(1)),
        },
        latency: crate::latency::summary(&histogram),
        per_producer,
    })
}

impl Sender for ShmMpscProducer {
    fn send(&mut self, message: &[u8]) -> Result<(), BenchError> {
        let mut stall = Stall::new();
        loop {
            match self.push(message) {
                Ok(()) => return Ok(()),
                Err(ringproof::mpsc::PushError::Full) => {
                    stall.tick()?;
                    self.as_producer_mut()
                        .wait_writable(Some(PARK))
                        .map_err(|e| BenchError::Peer(format!("MPSC push: {e}")))?;
                }
                Err(e) => return Err(BenchError::Peer(format!("MPSC push: {e}"))),
            }
        }
    }

    fn finish(self) -> Result<(), BenchError> {
        ShmMpscProducer::finish(self)?;
        Ok(())
    }
}

impl Receiver for ShmMpscConsumer {
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, BenchError> {
        use ringproof::mpsc::ReadError;
        let mut stall = Stall::new();
        let consumer = self.as_consumer_mut();
        loop {
            match consumer.pop_into(buf) {
                Ok(Some(len)) => return Ok(len),
                Ok(None) => {
                    return Err(BenchError::Mismatch {
                        expected: buf.len() as u64,
                        found: u64::MAX,
                    });
                }
                Err(ReadError::Empty | ReadError::Pending { .. }) => {
                    stall.tick()?;
                    consumer
                        .wait_readable(Some(PARK))
                        .map_err(|e| BenchError::Peer(format!("MPSC read: {e}")))?;
                }
                Err(e) => return Err(BenchError::Peer(format!("MPSC read: {e}"))),
            }
        }
    }

    fn end(&mut self) -> Result<(), BenchError> {
        use ringproof::mpsc::ReadError;
        let mut stall = Stall::new();
        let consumer = self.as_consumer_mut();
        loop {
            match consumer.read() {
                Err(ReadError::Closed) => return Ok(()),
                Err(ReadError::Empty | ReadError::Pending { .. }) => {
                    stall.tick()?;
                    consumer
                        .wait_readable(Some(PARK))
                        .map_err(|e| BenchError::Peer(format!("MPSC read: {e}")))?;
                }
                Ok(_) => return Err(BenchError::Peer("a message after the last".into())),
                Err(e) => return Err(BenchError::Peer(format!("MPSC read: {e}"))),
            }
        }
    }
}

impl Sender for ShmProducer {
    fn send(&mut self, message: &[u8]) -> Result<(), BenchError> {
        loop {
            match self.as_producer_mut().push(message) {
                Ok(()) => return Ok(()),
                Err(PushError::Full) => {
                    crate::ring::wait_writable(self.as_producer_mut(), message.len())?
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn finish(mut self) -> Result<(), BenchError> {
        self.as_producer_mut().close()?;
        Ok(())
    }
}

impl Receiver for ShmConsumer {
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, BenchError> {
        loop {
            match self.as_consumer_mut().pop_into(buf) {
                Ok(got) => return Ok(got),
                Err(PopIntoError::Empty) => crate::ring::wait_readable(self.as_consumer_mut())?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn end(&mut self) -> Result<(), BenchError> {
        let mut buf = [0u8; 8];
        loop {
            match self.as_consumer_mut().pop_into(&mut buf) {
                Err(PopIntoError::Closed) => return Ok(()),
                Err(PopIntoError::Empty) => crate::ring::wait_readable(self.as_consumer_mut())?,
                Ok(_) => return Err(BenchError::Peer("a message after the last".into())),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Sender for UnixDatagram {
    fn send(&mut self, message: &[u8]) -> Result<(), BenchError> {
        // Blocks while the reader's queue is full.
        let sent = UnixDatagram::send(self, message)?;
        if sent != message.len() {
            return Err(BenchError::Mismatch {
                expected: message.len() as u64,
                found: sent as u64,
            });
        }
        Ok(())
    }

    fn finish(self) -> Result<(), BenchError> {
        Ok(())
    }
}

/// The reader of [`unix_datagram`].
struct Datagrams {
    socket: UnixDatagram,
    message_size: usize,
}

impl Receiver for Datagrams {
    fn recv(&mut self, buf: &mut [u8]) -> Result<usize, BenchError> {
        match self.socket.recv(buf) {
            Ok(got) => Ok(got),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(BenchError::Stalled),
            Err(e) => Err(e.into()),
        }
    }

    fn end(&mut self) -> Result<(), BenchError> {
        // Every writer has sent its last datagram before the last
        // acknowledgement; nothing may be queued behind it.
        self.socket.set_nonblocking(true)?;
        let mut buf = vec![0u8; self.message_size + HEADER];
        match self.socket.recv(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e.into()),
            Ok(_) => Err(BenchError::Peer("a datagram after the last".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_its_fields() {
        let h = header(63, (1 << 24) + 5, (1 << 34) + 77);
        let mut message = h.to_vec();
        message.extend_from_slice(&[0; 8]);
        assert_eq!(parse(&message), (63, 5, 77));
        assert_eq!(parse(&header(0, 0, 0)), (0, 0, 0));
    }

    #[test]
    fn at_most_sixty_four_producers_and_an_eight_byte_header() {
        let cfg = FanIn {
            producers: 0,
            message_size: 8,
            ring_size: 1 << 16,
            messages: 10,
            latency_samples: 10,
            pin: false,
        };
        assert!(cfg.check().is_err());
        assert!(
            FanIn {
                producers: 65,
                ..cfg
            }
            .check()
            .is_err()
        );
        assert!(
            FanIn {
                producers: 64,
                ..cfg
            }
            .check()
            .is_ok()
        );
        assert!(
            FanIn {
                producers: 1,
                message_size: 7,
                ..cfg
            }
            .check()
            .is_err()
        );
    }
}
