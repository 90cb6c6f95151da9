//! The `network.<name>` scheme, with the semantics of Redox's network drivers
//! (driver-network): see the crate documentation for what a client sees.

use std::io;

use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::replicated::RelayedLine;
use scheme_runtime::{copy_at_offset, HandleTable, SchemeDaemon, StateStore, ROOT_ID};
use syscall::error::{Error, Result, EACCES, EBADF, EINVAL, EIO, ENOENT, EWOULDBLOCK};
use syscall::flag::{EventFlags, MODE_FILE};
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

use crate::batch;
use crate::device::Device;
use crate::interrupt::{InterruptWait, HANDLED_CAUSES};
use crate::regs::ICR_LSC;
use crate::ring::TxError;
use crate::shutdown;
use crate::state::{self, Pacing};
use crate::stats::{DriverCounters, InterruptCounters, StatusReport};

/// Destination, source and EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// The largest payload a frame carries (long packets are off).
pub const MTU: usize = 1500;
/// The largest frame a write takes: header and MTU, without the frame check
/// sequence, which the NIC adds.
pub const MAX_FRAME_LEN: usize = ETHERNET_HEADER_LEN + MTU;
/// Bytes of an Ethernet address.
pub const MAC_LEN: usize = 6;

/// What an open handle is.
enum HandleKind {
    /// `""`: frames in and out, one per request.
    Frames,
    /// `batch`: frames in and out, many per request ([`crate::batch`]).
    Batch,
    /// `link`: the link's state, with an event when it changed; the link
    /// changes this handle has read of.
    Link { seen: u64 },
    /// `mac`: the station address.
    Mac,
    /// `status`: a text snapshot taken at open.
    Status(Vec<u8>),
}

impl HandleKind {
    fn path(&self) -> &'static str {
        match self {
            Self::Frames => "",
            Self::Batch => "batch",
            Self::Link { .. } => "link",
            Self::Mac => "mac",
            Self::Status(_) => "status",
        }
    }
}

pub struct NetworkScheme {
    name: String,
    /// How registers are reached, for the status text.
    access: String,
    device: Device,
    handles: HandleTable<HandleKind>,
    counters: DriverCounters,
    /// Set when a register access failed: the NIC's state is unknown from then on.
    failure: Option<String>,
    /// Where the counters are published, and how often.
    store: StateStore,
    pacing: Pacing,
    /// The line the driver waits on; none: it polls every tick.
    interrupt: Option<InterruptWait>,
    interrupt_counters: InterruptCounters,
    /// Frames received and sent by the end of the last round.
    frames_then: u64,
    /// The line a replica's engine waits on and relays, when a replica.
    relayed_line: Option<RelayedLine>,
}

impl NetworkScheme {
    /// Serves `device` as scheme `name` (`network.e1000`); `access` names how
    /// its registers are reached.
    pub fn new(name: &str, access: &str, device: Device) -> Self {
        Self {
            name: name.to_owned(),
            access: access.to_owned(),
            device,
            handles: HandleTable::new(),
            counters: DriverCounters::default(),
            failure: None,
            store: StateStore::absent(),
            pacing: Pacing::default(),
            interrupt: None,
            interrupt_counters: InterruptCounters::default(),
            frames_then: 0,
            relayed_line: None,
        }
    }

    /// Waits on `interrupt` from now on: enables the causes the driver
    /// handles in the NIC.
    pub fn with_interrupt(mut self, interrupt: InterruptWait) -> io::Result<Self> {
        self.device.enable_interrupts(HANDLED_CAUSES)?;
        self.interrupt = Some(interrupt);
        self.interrupt_counters.line = true;
        Ok(self)
    }

    /// Names `line` to the engine as the one to relay (a replica's).
    pub fn with_relayed_line(mut self, line: RelayedLine) -> Self {
        self.relayed_line = Some(line);
        self
    }

    /// Asks the engine that relays the line to read the interrupt causes for
    /// the replicas as it fires, so that the round it fired in takes them
    /// without reading them itself: for a driver that takes the causes in
    /// the round the line fired (no busy polling after it), since the read
    /// clears them. False when there is no relayed line or registers are not
    /// reached through calls.
    pub fn read_causes_as_the_line_fires(&mut self) -> bool {
        let Some(line) = &self.relayed_line else {
            return false;
        };
        match self.device.cause_read_request() {
            Some((fd, request)) => {
                line.set_cause_read(fd, request);
                true
            }
            None => false,
        }
    }

    /// Takes an interrupt if the line fired; says whether the driver is done
    /// with it: it has polled its budget without a frame after it, and the
    /// causes are to be read (which lowers the line) with the round's
    /// register work.
    fn causes_due(&mut self) -> bool {
        let frames = self.counters.rx_frames + self.counters.tx_frames;
        let active = frames != self.frames_then;
        self.frames_then = frames;
        let Some(wait) = self.interrupt.as_mut() else {
            return false;
        };
        match wait.fired() {
            Ok(true) => self.interrupt_counters.taken += 1,
            Ok(false) => {}
            Err(error) => log::error!("{}: waiting for the interrupt: {error}", self.name),
        }
        wait.settle(active, std::time::Instant::now)
    }

    /// The causes read at the end of an interrupt: notes a link change, and
    /// acknowledges the line. The rings themselves are looked at after every
    /// round anyway.
    fn take_causes(&mut self, causes: u32) {
        self.interrupt_counters.cause_reads += 1;
        if causes & ICR_LSC != 0 {
            self.interrupt_counters.link_changes += 1;
            match self.device.read_status() {
                Ok(link) => log::info!("{}: link changed: {link}", self.name),
                Err(error) => return self.fail("reading the link", error),
            }
        }
        if let Some(Err(error)) = self.interrupt.as_mut().map(InterruptWait::acknowledge) {
            log::error!("{}: acknowledging the interrupt: {error}", self.name);
        }
    }

    /// Continues from the counters `store` holds, and publishes them there
    /// from now on.
    pub fn with_store(mut self, store: StateStore) -> Self {
        self.restore_counters(store.restore(state::STATS_KEY));
        self.store = store;
        self
    }

    fn restore_counters(&mut self, stored: Option<Vec<u8>>) {
        if let Some(value) = stored {
            match state::from_stored(&value) {
                Ok((driver, nic)) => {
                    log::info!("{}: counters continue from the state store", self.name);
                    self.counters = driver;
                    self.device.restore_nic_counters(nic);
                }
                Err(error) => log::warn!(
                    "{}: stored counters ignored ({} bytes: {error}); counting from nought",
                    self.name,
                    value.len()
                ),
            }
        }
    }

    /// Publishes the counters if they changed, the NIC's read afresh.
    fn publish_counters(&mut self) {
        if !self.store.keeps_values() {
            return;
        }
        if self.failure.is_none() {
            if let Err(error) = self.device.read_status() {
                self.fail("reading the statistics", error);
            }
        }
        let value = state::stored_form(&self.counters, self.device.nic_counters());
        if self.pacing.changed(&value) && !self.store.publish(state::STATS_KEY, value.as_bytes()) {
            // Not kept: try again at the next chance.
            self.pacing.forget();
        }
    }

    /// Stops the NIC's DMA (on the way out).
    pub fn shut_down(&mut self) {
        match self.device.stop() {
            Ok(()) => log::info!("{}: receiver and transmitter stopped", self.name),
            Err(error) => log::error!("{}: stopping the NIC failed: {error}", self.name),
        }
    }

    fn handle(&self, id: usize) -> Result<&HandleKind> {
        self.handles.get(id).ok_or(Error::new(EBADF))
    }

    /// The device, unless a register access failed earlier (EIO).
    fn working_device(&mut self) -> Result<&mut Device> {
        match self.failure {
            Some(_) => Err(Error::new(EIO)),
            None => Ok(&mut self.device),
        }
    }

    fn fail(&mut self, what: &str, error: io::Error) {
        log::error!(
            "{}: {what} failed: {error}; the NIC is left as it is and frame I/O answers EIO",
            self.name
        );
        self.failure = Some(format!("{what}: {error}"));
    }

    fn status_text(&mut self) -> String {
        let link = match self.failure {
            Some(_) => None,
            None => match self.device.read_status() {
                Ok(link) => Some(link),
                Err(error) => {
                    self.fail("reading the statistics", error);
                    None
                }
            },
        };
        StatusReport {
            scheme: &self.name,
            access: &self.access,
            mac: self.device.mac(),
            link,
            failure: self.failure.as_deref(),
            driver: &self.counters,
            rx_dropped: self.device.rx_dropped(),
            tx_in_flight: self.device.tx_in_flight(),
            nic: self.device.nic_counters(),
            interrupts: self.interrupt_counters,
        }
        .render()
    }

    fn read_frame(&mut self, buf: &mut [u8]) -> Result<usize> {
        let received = self
            .working_device()?
            .receive(buf)
            .ok_or(Error::new(EWOULDBLOCK))?;
        self.counters.rx_frames += 1;
        self.counters.rx_bytes += received.frame_len as u64;
        if received.len < received.frame_len {
            self.counters.rx_truncated += 1;
            log::debug!(
                "{}: a {}-byte frame cut to the reader's {} bytes",
                self.name,
                received.frame_len,
                received.len
            );
        }
        Ok(received.len)
    }

    fn write_frame(&mut self, frame: &[u8]) -> Result<usize> {
        self.queue_frame(frame).map_err(|error| self.refused(error))
    }

    /// Queues `frame` for the NIC, counting it; EINVAL if it is no frame of
    /// a legal size, EWOULDBLOCK while the transmit ring is full.
    fn queue_frame(&mut self, frame: &[u8]) -> Result<usize> {
        if !(ETHERNET_HEADER_LEN..=MAX_FRAME_LEN).contains(&frame.len()) {
            log::debug!(
                "{}: refused a {}-byte frame (a frame is {ETHERNET_HEADER_LEN}..={MAX_FRAME_LEN} bytes)",
                self.name,
                frame.len()
            );
            return Err(Error::new(EINVAL));
        }
        match self.working_device()?.send(frame) {
            Ok(()) => {
                self.counters.tx_frames += 1;
                self.counters.tx_bytes += frame.len() as u64;
                Ok(frame.len())
            }
            Err(TxError::Full) => Err(Error::new(EWOULDBLOCK)),
            Err(TxError::TooLong(_)) => Err(Error::new(EINVAL)),
        }
    }

    /// `up\n` or `down\n`, read from the NIC now; the handle has seen every
    /// link change so far.
    fn read_link(&mut self, id: usize, buf: &mut [u8]) -> Result<usize> {
        let changes = self.interrupt_counters.link_changes;
        let link = match self.working_device()?.read_status() {
            Ok(link) => link,
            Err(error) => {
                self.fail("reading the link", error);
                return Err(Error::new(EIO));
            }
        };
        if let Some(HandleKind::Link { seen }) = self.handles.get_mut(id) {
            *seen = changes;
        }
        let text: &[u8] = if link.up { b"up\n" } else { b"down\n" };
        Ok(copy_at_offset(text, 0, buf))
    }

    /// Counts a write answered with `error`.
    fn refused(&mut self, error: Error) -> Error {
        match error.errno {
            EINVAL => self.counters.tx_rejected += 1,
            EWOULDBLOCK => self.counters.tx_ring_full += 1,
            _ => {}
        }
        error
    }
}

impl NetworkScheme {
    /// As many received frames as `buf` holds with room for a whole frame
    /// each, as records; EINVAL for a buffer that cannot hold one whole frame.
    fn read_batch(&mut self, buf: &mut [u8]) -> Result<usize> {
        const WHOLE: usize = batch::record_len(MAX_FRAME_LEN);
        if buf.len() < WHOLE {
            return Err(Error::new(EINVAL));
        }
        let mut at = 0;
        while buf.len() - at >= WHOLE {
            let record = &mut buf[at..];
            match self.read_frame(&mut record[batch::LEN_BYTES..]) {
                Ok(len) => {
                    batch::put_len(record, len);
                    at += batch::record_len(len);
                }
                Err(error) if at == 0 => return Err(error),
                Err(_) => break,
            }
        }
        Ok(at)
    }

    /// Queues the batch's frames in order until one cannot go; the bytes of
    /// the records taken. The first record's refusal is the answer: EINVAL
    /// (cut short, not a frame of a legal size, or an empty batch) or
    /// EWOULDBLOCK (the transmit ring is full); a later one ends the batch
    /// there, and the client's next write starts with it.
    fn write_batch(&mut self, buf: &[u8]) -> Result<usize> {
        if buf.is_empty() {
            return Err(self.refused(Error::new(EINVAL)));
        }
        let mut taken = 0;
        for record in batch::records(buf) {
            let queued = match record {
                Ok(frame) => self.queue_frame(frame),
                Err(batch::CutShort) => Err(Error::new(EINVAL)),
            };
            match queued {
                Ok(len) => taken += batch::record_len(len),
                Err(error) if taken == 0 => return Err(self.refused(error)),
                Err(_) => break,
            }
        }
        Ok(taken)
    }
}

/// The address, whole: a part of one is no address, so a shorter buffer is EINVAL.
fn read_mac(mac: [u8; MAC_LEN], buf: &mut [u8], offset: u64) -> Result<usize> {
    match offset {
        0 if buf.len() >= MAC_LEN => {
            buf[..MAC_LEN].copy_from_slice(&mac);
            Ok(MAC_LEN)
        }
        // Past the address: end of file, so a read-to-end loop stops.
        offset if offset >= MAC_LEN as u64 => Ok(0),
        _ => Err(Error::new(EINVAL)),
    }
}

impl SchemeSync for NetworkScheme {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(ROOT_ID)
    }

    fn openat(
        &mut self,
        dirfd: usize,
        path: &str,
        _flags: usize,
        _fcntl: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        if dirfd != ROOT_ID {
            return Err(Error::new(EBADF));
        }
        // As in Redox: the network stack, and only it, runs as root.
        if ctx.uid != 0 {
            return Err(Error::new(EACCES));
        }
        let (kind, flags) = match path.trim_matches('/') {
            "" => (HandleKind::Frames, NewFdFlags::empty()),
            "batch" => (HandleKind::Batch, NewFdFlags::empty()),
            "link" => (HandleKind::Link { seen: 0 }, NewFdFlags::empty()),
            "mac" => (HandleKind::Mac, NewFdFlags::POSITIONED),
            "status" => (
                HandleKind::Status(self.status_text().into_bytes()),
                NewFdFlags::POSITIONED,
            ),
            _ => return Err(Error::new(ENOENT)),
        };
        let id = self.handles.insert(kind)?;
        Ok(OpenResult::ThisScheme { number: id, flags })
    }

    fn read(
        &mut self,
        id: usize,
        buf: &mut [u8],
        offset: u64,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        match self.handle(id)? {
            HandleKind::Frames => self.read_frame(buf),
            HandleKind::Batch => self.read_batch(buf),
            HandleKind::Link { .. } => self.read_link(id, buf),
            HandleKind::Mac => read_mac(self.device.mac(), buf, offset),
            HandleKind::Status(text) => Ok(copy_at_offset(text, offset, buf)),
        }
    }

    fn write(
        &mut self,
        id: usize,
        buf: &[u8],
        _offset: u64,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        match self.handle(id)? {
            HandleKind::Frames => self.write_frame(buf),
            HandleKind::Batch => self.write_batch(buf),
            HandleKind::Mac | HandleKind::Status(_) | HandleKind::Link { .. } => {
                Err(Error::new(EINVAL))
            }
        }
    }

    fn fevent(&mut self, id: usize, flags: EventFlags, _ctx: &CallerCtx) -> Result<EventFlags> {
        match self.handle(id)? {
            HandleKind::Frames | HandleKind::Batch if self.failure.is_none() => {}
            &HandleKind::Link { seen } if seen != self.interrupt_counters.link_changes => {
                return Ok(EventFlags::EVENT_READ & flags);
            }
            _ => return Ok(EventFlags::empty()),
        }
        let mut ready = EventFlags::empty();
        if self.device.frame_waiting() {
            ready |= EventFlags::EVENT_READ;
        }
        if self.device.can_send() {
            ready |= EventFlags::EVENT_WRITE;
        }
        Ok(ready & flags)
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], _ctx: &CallerCtx) -> Result<usize> {
        let path = format!("/scheme/{}/{}", self.name, self.handle(id)?.path());
        Ok(copy_at_offset(path.as_bytes(), 0, buf))
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, _ctx: &CallerCtx) -> Result<()> {
        let (mode, size) = match self.handle(id)? {
            HandleKind::Frames | HandleKind::Batch => (0o600, 0),
            HandleKind::Link { .. } => (0o400, 0),
            HandleKind::Mac => (0o400, MAC_LEN),
            HandleKind::Status(text) => (0o400, text.len()),
        };
        stat.st_mode = MODE_FILE | mode;
        stat.st_size = size as u64;
        Ok(())
    }

    fn fsync(&mut self, id: usize, _ctx: &CallerCtx) -> Result<()> {
        self.handle(id).map(drop)
    }

    fn on_close(&mut self, id: usize) {
        self.handles.remove(id);
    }
}

impl SchemeDaemon for NetworkScheme {
    /// Runs after every round of requests, interrupt and tick: takes the
    /// interrupt, frees sent buffers and hands the NIC consumed receive
    /// descriptors and queued frames.
    fn after_round(&mut self) {
        if shutdown::requested() {
            self.shut_down();
            std::process::exit(0);
        }
        if self.failure.is_none() {
            // Read for the replicas as the line fired, the causes are taken
            // in this round whatever else it does: the read cleared them.
            let read_for_us = self
                .relayed_line
                .as_ref()
                .and_then(RelayedLine::take_cause)
                .and_then(|answer| self.device.causes_in_answer(&answer));
            let take_causes = self.causes_due() && read_for_us.is_none();
            match self.device.poll(take_causes) {
                Ok(Some(causes)) => self.take_causes(causes),
                Ok(None) => {}
                Err(error) => self.fail("moving the ring tails", error),
            }
            if let Some(causes) = read_for_us {
                self.take_causes(causes);
            }
        }
        if self.store.keeps_values() && self.pacing.due(std::time::Instant::now) {
            self.publish_counters();
        }
    }

    fn wake_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.interrupt
            .as_ref()
            .and_then(InterruptWait::wake_fd)
            .into_iter()
            .collect()
    }

    fn relayed_line(&self) -> Option<RelayedLine> {
        self.relayed_line.clone()
    }

    /// Frames are taken as they came, whatever the offset: a replica may read
    /// them for the client in the round that found them (which, after an
    /// interrupt, is the round that took them off the ring).
    fn may_read_ahead(&self, id: usize) -> bool {
        matches!(self.handle(id), Ok(HandleKind::Frames | HandleKind::Batch))
    }

    fn next_round_within(&self) -> Option<std::time::Duration> {
        self.interrupt
            .as_ref()
            .and_then(InterruptWait::next_round_within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interrupt::BusyPoll;
    use crate::model::{FakeDma, SoftLine, SoftNic};
    use crate::regs::{ICR, ICR_TXDW, IMS};
    use crate::ring::RING_SLOTS;
    use scheme_runtime::caller_ctx;
    use std::time::Duration;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn root() -> CallerCtx {
        caller_ctx(10, 0, 0)
    }

    struct Fixture {
        scheme: NetworkScheme,
        nic: SoftNic,
        _dma: FakeDma,
    }

    impl Fixture {
        fn new() -> Self {
            let dma = FakeDma::new();
            let nic = SoftNic::new(&dma, MAC);
            let device =
                Device::bring_up(nic.io(), dma.ring(RING_SLOTS), dma.ring(RING_SLOTS)).unwrap();
            Self {
                scheme: NetworkScheme::new("network.e1000", "mmio", device),
                nic,
                _dma: dma,
            }
        }

        fn open(&mut self, path: &str) -> Result<usize> {
            match self.scheme.openat(ROOT_ID, path, 0, 0, &root())? {
                OpenResult::ThisScheme { number, .. } => Ok(number),
                other => panic!("unexpected {other:?}"),
            }
        }

        fn read(&mut self, id: usize, buf: &mut [u8], offset: u64) -> Result<usize> {
            self.scheme.read(id, buf, offset, 0, &root())
        }

        fn write(&mut self, id: usize, buf: &[u8]) -> Result<usize> {
            self.scheme.write(id, buf, 0, 0, &root())
        }

        fn events(&mut self, id: usize) -> Result<EventFlags> {
            let all = EventFlags::EVENT_READ | EventFlags::EVENT_WRITE;
            self.scheme.fevent(id, all, &root())
        }

        fn status(&mut self) -> String {
            let id = self.open("status").unwrap();
            let mut buf = vec![0; 4096];
            let n = self.read(id, &mut buf, 0).unwrap();
            self.scheme.on_close(id);
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    /// `line`, each interrupt taken on its own (no polling after it).
    fn notified(line: &SoftLine) -> InterruptWait {
        let busy_poll = BusyPoll {
            every: Duration::from_micros(100),
            budget: Duration::ZERO,
        };
        InterruptWait::new(Box::new(line.clone()), busy_poll)
    }

    fn errno<T: std::fmt::Debug>(result: Result<T>) -> i32 {
        result.expect_err("an error").errno
    }

    #[test]
    fn stored_counters_continue_and_a_bad_stored_value_counts_from_nought() {
        let mut f = Fixture::new();
        f.scheme
            .restore_counters(Some(b"tx_frames=41 rx_bytes=7 nic.gptc=40".to_vec()));
        let status = f.status();
        assert!(status.contains(" rx_bytes=7 "), "{status}");
        assert!(status.contains(" tx_frames=41 "), "{status}");
        let frames = f.open("").unwrap();
        f.write(frames, &[0u8; 60]).unwrap();
        f.scheme.after_round();
        let status = f.status();
        assert!(status.contains(" tx_frames=42 "), "{status}");
        assert!(status.contains("nic gprc=0 gptc=41 "), "{status}");

        let mut fresh = Fixture::new();
        fresh
            .scheme
            .restore_counters(Some(b"tx_frames=lots".to_vec()));
        fresh.scheme.restore_counters(None);
        assert!(fresh.status().contains(" tx_frames=0 "));
        // A driver run by hand has no store: nothing to restore, nothing published.
        let mut alone = Fixture::new();
        alone.scheme = alone.scheme.with_store(StateStore::absent());
        for _ in 0..1000 {
            alone.scheme.after_round();
        }
        assert!(alone.status().contains(" tx_frames=0 "));
    }

    #[test]
    fn a_frame_raises_the_interrupt_and_its_causes_are_read_once_before_the_line_is_unmasked() {
        let mut f = Fixture::new();
        let line = f.nic.interrupt_line();
        f.scheme = f.scheme.with_interrupt(notified(&line)).unwrap();
        assert_eq!(
            f.nic.reg(IMS),
            HANDLED_CAUSES & !ICR_TXDW,
            "sent frames raise nothing while the ring is far from full"
        );
        let frames = f.open("").unwrap();
        f.scheme.after_round();
        assert!(f
            .status()
            .contains("\ninterrupts mode=line taken=0 cause_reads=0 link_changes=0\n"));

        assert!(f.nic.deliver(&[7u8; 60]));
        assert!(f.nic.interrupt_asserted());
        f.scheme.after_round();
        assert!(!f.nic.interrupt_asserted(), "reading ICR lowered the line");
        assert!(!line.is_masked(), "acknowledged after the causes were read");
        let mut buf = [0u8; 1514];
        assert_eq!(f.read(frames, &mut buf, 0), Ok(60));
        f.scheme.after_round();
        f.write(frames, &[1u8; 60]).unwrap();
        f.scheme.after_round();
        assert_eq!(f.nic.take_sent().len(), 1);
        assert!(!f.nic.interrupt_asserted(), "a sent frame raised nothing");
        f.scheme.after_round();
        let status = f.status();
        assert!(
            status.contains("\ninterrupts mode=line taken=1 cause_reads=1 link_changes=0\n"),
            "{status}"
        );
    }

    #[test]
    fn sent_frames_raise_the_interrupt_only_while_the_transmit_ring_fills() {
        let mut f = Fixture::new();
        let line = f.nic.interrupt_line();
        f.scheme = f.scheme.with_interrupt(notified(&line)).unwrap();
        let frames = f.open("").unwrap();
        // The NIC sends nothing for now: frames stay in flight.
        f.nic.pause_tx(true);
        let half = usize::from(RING_SLOTS / 2);
        for n in 0..half - 1 {
            f.write(frames, &[n as u8; 60]).unwrap();
        }
        f.scheme.after_round();
        assert_eq!(f.nic.reg(IMS) & ICR_TXDW, 0, "{} in flight", half - 1);
        f.write(frames, &[0xff; 60]).unwrap();
        f.scheme.after_round();
        assert_eq!(f.nic.reg(IMS) & ICR_TXDW, ICR_TXDW, "{half} in flight");
        // The NIC sends them all and says so; the round that takes the
        // interrupt frees the slots and turns TXDW off again, in the batch
        // that reads the causes.
        f.nic.pause_tx(false);
        assert!(f.nic.interrupt_asserted());
        let writes = f.nic.writes();
        f.scheme.after_round();
        assert_eq!(f.nic.take_sent().len(), half);
        assert_eq!(f.nic.reg(IMS) & ICR_TXDW, 0);
        assert!(!f.nic.interrupt_asserted(), "the causes were read");
        assert_eq!(f.scheme.device.tx_in_flight(), 0);
        assert!(f.nic.writes() > writes);
    }

    #[test]
    fn a_link_change_is_read_from_status_when_its_interrupt_comes() {
        let mut f = Fixture::new();
        f.scheme = f
            .scheme
            .with_interrupt(notified(&f.nic.interrupt_line()))
            .unwrap();
        f.nic.set_link(false);
        f.scheme.after_round();
        let status = f.status();
        assert!(
            status.contains("\nlink=down speed=1000 duplex=full\n"),
            "{status}"
        );
        assert!(status.contains(" link_changes=1\n"), "{status}");
    }

    #[test]
    fn a_link_handle_hears_of_each_link_change_once_and_reads_the_state() {
        let mut f = Fixture::new();
        f.scheme = f
            .scheme
            .with_interrupt(notified(&f.nic.interrupt_line()))
            .unwrap();
        let link = f.open("link").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(f.events(link), Ok(EventFlags::empty()), "no change yet");
        assert_eq!(f.read(link, &mut buf, 0), Ok(3));
        assert_eq!(&buf[..3], b"up\n");
        f.nic.set_link(false);
        f.scheme.after_round();
        assert_eq!(f.events(link), Ok(EventFlags::EVENT_READ));
        assert_eq!(
            f.scheme.fevent(link, EventFlags::EVENT_WRITE, &root()),
            Ok(EventFlags::empty()),
            "only what was asked"
        );
        assert_eq!(f.read(link, &mut buf, 0), Ok(5));
        assert_eq!(&buf[..5], b"down\n");
        assert_eq!(f.events(link), Ok(EventFlags::empty()), "read: heard of");
        let late = f.open("link").unwrap();
        assert_eq!(
            f.events(late),
            Ok(EventFlags::EVENT_READ),
            "each handle hears"
        );
        assert_eq!(errno(f.write(link, b"up")), EINVAL);
        f.nic.set_link(true);
        f.scheme.after_round();
        assert_eq!(f.events(link), Ok(EventFlags::EVENT_READ));
        assert_eq!(f.read(link, &mut buf, 0), Ok(3));
        assert_eq!(&buf[..3], b"up\n");
    }

    #[test]
    fn after_an_interrupt_the_driver_polls_with_the_line_masked_while_frames_move() {
        let mut f = Fixture::new();
        let line = f.nic.interrupt_line();
        let busy_poll = BusyPoll {
            every: Duration::from_micros(100),
            budget: Duration::from_secs(3600),
        };
        let wait = InterruptWait::new(Box::new(line.clone()), busy_poll);
        f.scheme = f.scheme.with_interrupt(wait).unwrap();
        let frames = f.open("").unwrap();
        f.scheme.after_round();
        assert_eq!(f.scheme.next_round_within(), None, "asleep on the line");

        assert!(f.nic.deliver(&[7u8; 60]));
        f.scheme.after_round();
        assert!(line.is_masked(), "left masked while the driver polls");
        assert_eq!(
            f.scheme.next_round_within(),
            Some(Duration::from_micros(100))
        );
        // Frames keep coming and are found by polling, with no interrupt.
        let mut buf = [0u8; 1514];
        for n in 0..3u8 {
            assert_eq!(f.read(frames, &mut buf, 0), Ok(60));
            assert!(f.nic.deliver(&[n; 60]));
            f.scheme.after_round();
            assert_eq!(
                f.events(frames),
                Ok(EventFlags::EVENT_READ | EventFlags::EVENT_WRITE)
            );
        }
        assert!(line.is_masked());
        let status = f.status();
        assert!(
            status.contains("\ninterrupts mode=line taken=1 cause_reads=0 link_changes=0\n"),
            "{status}"
        );
    }

    #[test]
    fn a_driver_without_its_interrupt_polls_and_never_reads_the_causes() {
        let mut f = Fixture::new();
        let frames = f.open("").unwrap();
        assert!(f.nic.deliver(&[7u8; 60]));
        f.scheme.after_round();
        let mut buf = [0u8; 1514];
        assert_eq!(f.read(frames, &mut buf, 0), Ok(60));
        assert_ne!(
            f.nic.reg(ICR),
            0,
            "the causes stay latched: nobody reads them"
        );
        assert_eq!(f.nic.reg(IMS), 0, "and none is enabled");
        assert!(f
            .status()
            .contains("\ninterrupts mode=polling taken=0 cause_reads=0 link_changes=0\n"));
    }

    #[test]
    fn paths_and_who_may_open_them() {
        let mut f = Fixture::new();
        for path in ["", "/", "mac", "/mac/", "status"] {
            assert!(f.open(path).is_ok(), "{path:?}");
        }
        for path in ["nope", "mac/x", "macs", "status/1"] {
            assert_eq!(errno(f.open(path)), ENOENT, "{path:?}");
        }
        let driver_uid = caller_ctx(10, 1001, 1001);
        assert_eq!(
            errno(f.scheme.openat(ROOT_ID, "", 0, 0, &driver_uid)),
            EACCES
        );
        assert_eq!(errno(f.scheme.openat(7, "mac", 0, 0, &root())), EBADF);
    }

    #[test]
    fn mac_is_read_whole() {
        let mut f = Fixture::new();
        let mac = f.open("mac").unwrap();
        let mut buf = [0; 16];
        assert_eq!(f.read(mac, &mut buf, 0), Ok(6));
        assert_eq!(buf[..6], MAC);
        assert_eq!(f.read(mac, &mut buf, 6), Ok(0), "end of file");
        assert_eq!(errno(f.read(mac, &mut buf[..5], 0)), EINVAL, "short buffer");
        assert_eq!(
            errno(f.read(mac, &mut buf, 3)),
            EINVAL,
            "part of the address"
        );
        assert_eq!(errno(f.write(mac, &MAC)), EINVAL);
        assert_eq!(f.events(mac), Ok(EventFlags::empty()));
        let mut stat = Stat::default();
        f.scheme.fstat(mac, &mut stat, &root()).unwrap();
        assert_eq!((stat.st_size, stat.st_mode), (6, MODE_FILE | 0o400));
        let mut path = [0; 64];
        let n = f.scheme.fpath(mac, &mut path, &root()).unwrap();
        assert_eq!(&path[..n], b"/scheme/network.e1000/mac");
    }

    #[test]
    fn a_write_sends_one_frame_and_a_read_returns_one() {
        let mut f = Fixture::new();
        let nic = f.open("").unwrap();
        let frame: Vec<u8> = (0..60).collect();
        assert_eq!(f.write(nic, &frame), Ok(60));
        f.scheme.after_round();
        assert_eq!(f.nic.take_sent(), std::slice::from_ref(&frame));

        let mut buf = [0; 1514];
        assert_eq!(errno(f.read(nic, &mut buf, 0)), EWOULDBLOCK, "nothing yet");
        f.nic.deliver(&frame);
        f.nic.deliver(&[7; 1514]);
        assert_eq!(f.read(nic, &mut buf, 0), Ok(60));
        assert_eq!(buf[..60], frame[..]);
        assert_eq!(f.read(nic, &mut buf[..20], 0), Ok(20), "truncated");
        assert_eq!(errno(f.read(nic, &mut buf, 0)), EWOULDBLOCK);
        let status = f.status();
        assert!(
            status.contains("driver rx_frames=2 rx_bytes=1574 rx_truncated=1 "),
            "{status}"
        );
        assert!(status.contains(" tx_frames=1 tx_bytes=60 "), "{status}");
        assert!(
            status.contains("\nlink=up speed=1000 duplex=full\n"),
            "{status}"
        );
        assert!(
            status.contains("nic gprc=2 gptc=1 gorc=1574 gotc=60 "),
            "{status}"
        );
    }

    #[test]
    fn bad_frames_are_refused_and_serving_goes_on() {
        let mut f = Fixture::new();
        let nic = f.open("").unwrap();
        assert_eq!(
            errno(f.write(nic, &[0; ETHERNET_HEADER_LEN - 1])),
            EINVAL,
            "short"
        );
        assert_eq!(
            errno(f.write(nic, &[0; MAX_FRAME_LEN + 1])),
            EINVAL,
            "oversized"
        );
        assert_eq!(errno(f.write(nic, &[])), EINVAL, "empty");
        assert_eq!(f.write(nic, &[1; ETHERNET_HEADER_LEN]), Ok(14));
        assert_eq!(f.write(nic, &[2; MAX_FRAME_LEN]), Ok(1514));
        f.scheme.after_round();
        assert_eq!(f.nic.take_sent().len(), 2);
        assert!(f.status().contains(" tx_rejected=3 "));
    }

    /// `frames` as one batch.
    fn batch_of(frames: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            batch::push(&mut out, frame);
        }
        out
    }

    #[test]
    fn a_batch_read_returns_every_waiting_frame_that_fits_whole() {
        let mut f = Fixture::new();
        let nic = f.open("batch").unwrap();
        let whole = batch::record_len(MAX_FRAME_LEN);
        let mut buf = vec![0; 2 * whole];
        assert_eq!(errno(f.read(nic, &mut buf, 0)), EWOULDBLOCK, "nothing yet");
        assert_eq!(f.events(nic), Ok(EventFlags::EVENT_WRITE));
        for frame in [&[1u8; 60][..], &[2; 1514], &[3; 100]] {
            assert!(f.nic.deliver(frame));
        }
        assert_eq!(
            f.events(nic),
            Ok(EventFlags::EVENT_READ | EventFlags::EVENT_WRITE)
        );
        assert_eq!(
            errno(f.read(nic, &mut buf[..whole - 1], 0)),
            EINVAL,
            "no room for a whole frame"
        );
        // Room for two whole frames: the third waits for the next read.
        let n = f.read(nic, &mut buf, 0).unwrap();
        assert!(buf[..n] == batch_of(&[&[1; 60], &[2; 1514]]), "{n} bytes");
        let n = f.read(nic, &mut buf, 0).unwrap();
        assert!(buf[..n] == batch_of(&[&[3; 100]]), "{n} bytes");
        assert_eq!(errno(f.read(nic, &mut buf, 0)), EWOULDBLOCK);
        let status = f.status();
        assert!(
            status.contains("driver rx_frames=3 rx_bytes=1674 rx_truncated=0 "),
            "{status}"
        );
    }

    #[test]
    fn a_batch_write_sends_its_frames_in_order_and_stops_at_the_first_that_cannot_go() {
        let mut f = Fixture::new();
        let nic = f.open("batch").unwrap();
        let good = batch_of(&[&[1; 60], &[2; 1514], &[3; 14]]);
        assert_eq!(f.write(nic, &good), Ok(good.len()));
        f.scheme.after_round();
        assert!(f.nic.take_sent() == [vec![1; 60], vec![2; 1514], vec![3; 14]]);

        // A bad record ends the batch there, and is refused when it comes first.
        let mut with_bad = batch_of(&[&[4; 60], &[5; 13], &[6; 60]]);
        let first = batch::record_len(60);
        assert_eq!(f.write(nic, &with_bad), Ok(first));
        assert_eq!(errno(f.write(nic, &with_bad[first..])), EINVAL, "too short");
        with_bad.truncate(with_bad.len() - 1);
        let last = first + batch::record_len(13);
        assert_eq!(errno(f.write(nic, &with_bad[last..])), EINVAL, "cut short");
        assert_eq!(errno(f.write(nic, &[])), EINVAL, "an empty batch");
        f.scheme.after_round();
        assert_eq!(f.nic.take_sent(), [vec![4; 60]]);
        assert!(f.status().contains(" tx_rejected=3 "), "{}", f.status());
        assert!(f.status().contains(" tx_ring_full=0 "), "{}", f.status());

        // A full ring takes what it can, then would block.
        f.nic.pause_tx(true);
        let many: Vec<Vec<u8>> = (0..RING_IN_FLIGHT + 5).map(|i| vec![i as u8; 60]).collect();
        let refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        let all = batch_of(&refs);
        let taken = f.write(nic, &all).unwrap();
        assert!(
            taken < all.len() && taken.is_multiple_of(batch::record_len(60)),
            "{taken}"
        );
        f.scheme.after_round();
        assert_eq!(errno(f.write(nic, &all[taken..])), EWOULDBLOCK);
        assert!(f.status().contains(" tx_ring_full=1 "), "{}", f.status());
    }

    #[test]
    fn closed_and_unknown_handles_are_ebadf() {
        let mut f = Fixture::new();
        let nic = f.open("").unwrap();
        f.scheme.on_close(nic);
        assert_eq!(errno(f.write(nic, &[0; 60])), EBADF);
        assert_eq!(errno(f.read(nic, &mut [0; 60], 0)), EBADF);
        assert_eq!(errno(f.events(nic)), EBADF);
        assert_eq!(errno(f.scheme.fsync(nic, &root())), EBADF);
        assert_eq!(errno(f.scheme.fpath(nic, &mut [0; 8], &root())), EBADF);
        let other = f.open("").unwrap();
        assert_ne!(other, nic, "ids are not reused");
        assert_eq!(f.write(other, &[0; 60]), Ok(60));
    }

    #[test]
    fn readiness_follows_the_rings() {
        let mut f = Fixture::new();
        let nic = f.open("").unwrap();
        assert_eq!(f.events(nic), Ok(EventFlags::EVENT_WRITE));
        f.nic.deliver(&[0; 60]);
        let both = EventFlags::EVENT_READ | EventFlags::EVENT_WRITE;
        assert_eq!(f.events(nic), Ok(both));
        assert_eq!(
            f.scheme.fevent(nic, EventFlags::EVENT_READ, &root()),
            Ok(EventFlags::EVENT_READ),
            "only what was asked"
        );

        // A NIC that sends nothing: the ring fills, then writes would block.
        f.nic.pause_tx(true);
        for _ in 0..RING_IN_FLIGHT {
            assert_eq!(f.write(nic, &[0; 60]), Ok(60));
        }
        f.scheme.after_round();
        assert_eq!(errno(f.write(nic, &[0; 60])), EWOULDBLOCK);
        assert_eq!(f.events(nic), Ok(EventFlags::EVENT_READ));
        f.nic.pause_tx(false);
        assert_eq!(f.events(nic), Ok(both), "sent buffers come back");
        assert_eq!(f.write(nic, &[0; 60]), Ok(60));
        assert!(f.status().contains(" tx_ring_full=1 "));
    }

    #[test]
    fn a_failed_register_access_turns_frame_io_into_eio() {
        let mut f = Fixture::new();
        let nic = f.open("").unwrap();
        f.nic.fail();
        assert_eq!(
            f.write(nic, &[0; 60]),
            Ok(60),
            "queued before the failure shows"
        );
        f.scheme.after_round();
        assert_eq!(errno(f.write(nic, &[0; 60])), EIO);
        assert_eq!(errno(f.read(nic, &mut [0; 60], 0)), EIO);
        assert_eq!(f.events(nic), Ok(EventFlags::empty()));
        let status = f.status();
        assert!(
            status.contains(
                "\ndevice=failed error=moving the ring tails: model: register access refused\n"
            ),
            "{status}"
        );
        let mac = f.open("mac").unwrap();
        assert_eq!(
            f.read(mac, &mut [0; 6], 0),
            Ok(6),
            "the address is still known"
        );
    }

    /// Frames a full transmit ring holds.
    const RING_IN_FLIGHT: u16 = crate::ring::RING_SLOTS - 1;
}
