//! The NIC brought up and kept running: reset, link, address, filters, masked
//! interrupts, the two rings (manual chapter 14, "General Initialization and Reset
//! Operation"), and the per-round work of moving the rings' tails.
//!
//! Interrupts stay masked until the driver waits on its line
//! ([`Device::enable_interrupts`]); without one it polls the descriptors' DD
//! bits in memory, which costs no register access while nothing happens. With
//! one, each round's register work is one batch: the tails, the transmit
//! interrupt's mask, and the causes when the line fired ([`Device::poll`]).

use std::io;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::io::{Io, RegOp};
use crate::regs::*;
use crate::ring::{Received, RingRegions, RxRing, TxError, TxRing, RING_SLOTS};
use crate::stats::{Link, NicCounters};
use crate::takeover::{LeftRunning, NotTakenOver};

/// CTRL.RST clears itself within microseconds on the 82540EM.
const RESET_TIMEOUT: Duration = Duration::from_millis(100);
/// Auto-negotiation takes up to a few seconds on a real link; the driver serves
/// either way, a late link simply starts moving frames later.
const LINK_TIMEOUT: Duration = Duration::from_secs(2);
/// The EEPROM answers within microseconds.
const EERD_TIMEOUT: Duration = Duration::from_millis(100);
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// Frames in flight from which the driver wants TXDW, the interrupt for sent
/// frames. Below it the slots of sent frames are taken back at the rounds
/// traffic brings anyway (an emulated NIC has sent them by the time TDT is
/// written), so a burst costs no interrupt, which under replication is a round
/// and a voted cause read; from it on, a ring filling up must not wait for
/// such a round.
const TX_WATCHED_FROM: u16 = RING_SLOTS / 2;

/// What the receiver is set to, written once per bring-up: on, broadcasts
/// accepted, CRC stripped, 2 KiB buffers (BSIZE 00), no long packets.
///
/// QEMU's e1000 holds back incoming frames for a second after every RCTL write,
/// so RCTL is written only here and when quiescing, never while serving.
const RCTL_SERVING: u32 = RCTL_EN | RCTL_BAM | RCTL_SECRC;
/// Transmitter on, short frames padded, the manual's collision settings.
const TCTL_SERVING: u32 = TCTL_EN | TCTL_PSP | TCTL_CT | TCTL_COLD_FULL_DUPLEX;

/// A running 82540EM.
pub struct Device {
    io: Box<dyn Io>,
    rx: RxRing,
    tx: TxRing,
    mac: [u8; 6],
    nic_counters: NicCounters,
    /// The causes enabled while the driver waits on its line; none before.
    interrupts: Option<EnabledCauses>,
}

/// The interrupt causes the driver handles, and whether TXDW, which is enabled
/// only while the transmit ring fills ([`TX_WATCHED_FROM`]), is on now.
#[derive(Clone, Copy, Debug)]
struct EnabledCauses {
    handled: u32,
    tx_watched: bool,
}

impl Device {
    /// Resets the NIC and starts it with its rings in `rx_memory` and `tx_memory`
    /// ([`crate::ring::DESCRIPTORS_LEN`] and [`crate::ring::PACKETS_LEN`] bytes
    /// at least).
    pub fn bring_up(
        mut io: Box<dyn Io>,
        rx_memory: RingRegions,
        tx_memory: RingRegions,
    ) -> io::Result<Self> {
        reset(&mut *io).map_err(|e| context("resetting the NIC", e))?;
        set_link_up(&mut *io).map_err(|e| context("setting the link up", e))?;
        let mac = read_mac(&mut *io).map_err(|e| context("reading the Ethernet address", e))?;
        // Only now, with the NIC quiet, is the rings' memory written: a NIC left
        // running by a driver that died may still have pointed into it.
        let rx = RxRing::new(rx_memory, RING_SLOTS)?;
        let tx = TxRing::new(tx_memory, RING_SLOTS)?;
        io.start_bus_master()
            .map_err(|e| context("starting bus mastering", e))?;
        let mut device = Self {
            io,
            rx,
            tx,
            mac,
            nic_counters: NicCounters::default(),
            interrupts: None,
        };
        device
            .start()
            .map_err(|e| context("starting the rings", e))?;
        Ok(device)
    }

    /// Takes over the NIC a predecessor left running with its rings in
    /// `rx_memory` and `tx_memory`, kept `dma:` buffers this driver adopted
    /// (`kept`), as [`crate::takeover`] says: nothing is written, so frames keep
    /// flowing. A NIC in any other state, or fresh buffers, is brought up as
    /// [`Device::bring_up`] does; the reason comes back with it.
    pub fn take_over_or_bring_up(
        mut io: Box<dyn Io>,
        rx_memory: RingRegions,
        tx_memory: RingRegions,
        kept: bool,
    ) -> io::Result<(Self, Option<NotTakenOver>)> {
        if !kept {
            let device = Self::bring_up(io, rx_memory, tx_memory)?;
            return Ok((device, Some(NotTakenOver::FreshBuffers)));
        }
        let mut ops = LeftRunning::read_ops();
        io.run(&mut ops)
            .map_err(|e| context("reading how the NIC was left", e))?;
        let left = LeftRunning::from_ops(&ops);
        let ring_bytes = u32::from(RING_SLOTS) * crate::ring::DESCRIPTOR_LEN as u32;
        if let Err(why) = left.check(
            (RCTL_SERVING, TCTL_SERVING),
            &*rx_memory.descriptors,
            &*tx_memory.descriptors,
            ring_bytes,
        ) {
            let device = Self::bring_up(io, rx_memory, tx_memory)?;
            return Ok((device, Some(why)));
        }
        let rx = match RxRing::adopt(rx_memory, RING_SLOTS, left.rx_head, left.rx_tail) {
            Ok(rx) => rx,
            Err(rx_memory) => {
                let device = Self::bring_up(io, rx_memory, tx_memory)?;
                return Ok((device, Some(NotTakenOver::NotLaidOut("receive"))));
            }
        };
        let tx = match TxRing::adopt(tx_memory, RING_SLOTS, left.tx_head, left.tx_tail) {
            Ok(tx) => tx,
            Err(tx_memory) => {
                let device = Self::bring_up(io, rx.into_regions(), tx_memory)?;
                return Ok((device, Some(NotTakenOver::NotLaidOut("transmit"))));
            }
        };
        let mac = read_mac(&mut *io).map_err(|e| context("reading the Ethernet address", e))?;
        // The rings are in this driver's buffers: the NIC may write into them.
        io.start_bus_master()
            .map_err(|e| context("starting bus mastering", e))?;
        // The statistics registers keep what they counted since the predecessor
        // last read them; the next status read adds it to the restored totals.
        let device = Self {
            io,
            rx,
            tx,
            mac,
            nic_counters: NicCounters::default(),
            interrupts: None,
        };
        Ok((device, None))
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// A received frame is waiting.
    pub fn frame_waiting(&mut self) -> bool {
        self.rx.frame_waiting()
    }

    /// Takes the next received frame into `buf`; `None` when none is waiting.
    pub fn receive(&mut self, buf: &mut [u8]) -> Option<Received> {
        self.rx.take(buf)
    }

    /// A frame can be queued for sending now.
    pub fn can_send(&mut self) -> bool {
        self.tx.has_room()
    }

    /// Queues `frame`; it goes out at the next [`poll`](Self::poll).
    pub fn send(&mut self, frame: &[u8]) -> Result<(), TxError> {
        self.tx.push(frame)
    }

    /// Frames the receive ring dropped because the NIC flagged errors.
    pub fn rx_dropped(&self) -> u64 {
        self.rx.dropped()
    }

    pub fn tx_in_flight(&self) -> u16 {
        self.tx.in_flight()
    }

    /// The per-round work, in one batch: frees sent buffers, hands consumed
    /// receive descriptors (RDT) and queued frames (TDT) to the NIC, turns TXDW
    /// on or off as the transmit ring fills or empties, and last, if
    /// `take_causes`, reads (and so clears) the interrupt causes (ICR), which
    /// come back: its line goes low. No register access at all when there is
    /// nothing to do.
    pub fn poll(&mut self, take_causes: bool) -> io::Result<Option<u32>> {
        self.tx.reclaim();
        let sending = self.tx.take_tail_update();
        let mut ops: Vec<RegOp> = [
            self.rx
                .take_tail_update()
                .map(|tail| RegOp::write(RDT, tail)),
            sending.map(|tail| RegOp::write(TDT, tail)),
            self.tx_interrupt_change(),
            take_causes.then(|| RegOp::read(ICR)),
        ]
        .into_iter()
        .flatten()
        .collect();
        if ops.is_empty() {
            return Ok(None);
        }
        if take_causes {
            self.io.run(&mut ops)?;
        } else {
            // Only tails and masks: the last the round does with the NIC.
            self.io.run_late(&mut ops)?;
        }
        if sending.is_some() {
            // The slots of frames the NIC sent already are free this round.
            self.tx.reclaim();
        }
        Ok(take_causes.then(|| ops[ops.len() - 1].value))
    }

    /// The write that turns TXDW on (IMS) or off (IMC) if the transmit ring
    /// crossed [`TX_WATCHED_FROM`] since it was last set.
    fn tx_interrupt_change(&mut self) -> Option<RegOp> {
        let causes = self
            .interrupts
            .as_mut()
            .filter(|causes| causes.handled & ICR_TXDW != 0)?;
        let filling = self.tx.in_flight() >= TX_WATCHED_FROM;
        if filling == causes.tx_watched {
            return None;
        }
        causes.tx_watched = filling;
        Some(RegOp::write(if filling { IMS } else { IMC }, ICR_TXDW))
    }

    /// The read of ICR laid out as a call the engine may make for the driver
    /// as its line fires; `None` where registers are not reached through
    /// calls.
    pub fn cause_read_request(&mut self) -> Option<(u32, Vec<u8>)> {
        self.io.read_request(ICR)
    }

    /// The causes the answer to [`cause_read_request`](Self::cause_read_request) read.
    pub fn causes_in_answer(&self, answer: &[u8]) -> Option<u32> {
        self.io.value_in_answer(answer)
    }

    /// Reads the link state and the statistics registers in one batch; the
    /// counters add up in [`nic_counters`](Self::nic_counters).
    pub fn read_status(&mut self) -> io::Result<Link> {
        let mut ops = vec![Link::read_op()];
        ops.extend(NicCounters::read_ops());
        self.io.run(&mut ops)?;
        self.nic_counters.absorb(&ops[1..]);
        Ok(Link::from_status(ops[0].value))
    }

    /// The NIC's counters as of the last [`read_status`](Self::read_status).
    pub fn nic_counters(&self) -> &NicCounters {
        &self.nic_counters
    }

    /// Continues from `counters` (a predecessor's totals) instead of nought.
    pub fn restore_nic_counters(&mut self, counters: NicCounters) {
        self.nic_counters = counters;
    }

    /// Enables the interrupt `causes` (IMS); the others stay masked. TXDW, if
    /// among them, is on only while the transmit ring fills.
    pub fn enable_interrupts(&mut self, causes: u32) -> io::Result<()> {
        self.io.run(&mut [RegOp::write(IMS, causes & !ICR_TXDW)])?;
        self.interrupts = Some(EnabledCauses {
            handled: causes,
            tx_watched: false,
        });
        Ok(())
    }

    /// Stops all DMA and masks interrupts, so the rings' memory may be freed.
    pub fn stop(&mut self) -> io::Result<()> {
        self.io.run(&mut quiesce_ops())
    }

    /// Programs filters, rings and the transmitter and receiver, and clears the
    /// statistics, in one batch.
    fn start(&mut self) -> io::Result<()> {
        let (ral0, rah0) = ral_rah_from_address(self.mac);
        let mut ops: Vec<RegOp> = (0..MTA_LEN).map(|i| RegOp::write(MTA + 4 * i, 0)).collect();
        ops.extend([
            RegOp::write(ral(0), ral0),
            RegOp::write(rah(0), rah0),
            RegOp::write(RDBAL, low32(self.rx.bus_addr())),
            RegOp::write(RDBAH, high32(self.rx.bus_addr())),
            RegOp::write(RDLEN, self.rx.bytes()),
            RegOp::write(RDH, 0),
            RegOp::write(RDT, self.rx.initial_tail()),
            RegOp::write(RDTR, 0),
            RegOp::write(TDBAL, low32(self.tx.bus_addr())),
            RegOp::write(TDBAH, high32(self.tx.bus_addr())),
            RegOp::write(TDLEN, self.tx.bytes()),
            RegOp::write(TDH, 0),
            RegOp::write(TDT, 0),
            RegOp::write(TIPG, TIPG_82540EM_COPPER),
            RegOp::write(TCTL, TCTL_SERVING),
            RegOp::write(RCTL, RCTL_SERVING),
        ]);
        // Reading the counters clears what a predecessor left in them.
        ops.extend(NicCounters::read_ops());
        self.io.run(&mut ops)
    }
}

/// Masks interrupts and stops both DMA engines.
fn quiesce_ops() -> [RegOp; 3] {
    [
        RegOp::write(IMC, IMC_ALL),
        RegOp::write(RCTL, 0),
        RegOp::write(TCTL, 0),
    ]
}

/// Quiesces the NIC and resets it (manual section 14.9). The receiver and
/// transmitter are switched off explicitly as well: a reset clears them on the
/// 82540EM, but QEMU's model ignores CTRL.RST and would go on with the rings of
/// whoever ran it before.
fn reset(io: &mut dyn Io) -> io::Result<()> {
    let mut ops = quiesce_ops().to_vec();
    ops.push(RegOp::write(CTRL, CTRL_RST));
    io.run(&mut ops)?;
    wait_for(io, CTRL, |ctrl| ctrl & CTRL_RST == 0, RESET_TIMEOUT)?.map_err(|ctrl| {
        timed_out(format!(
            "CTRL {ctrl:#010x}: RST still set after {RESET_TIMEOUT:?}"
        ))
    })?;
    // The reset unmasks nothing on the 82540EM, but a cause latched before it
    // would linger in ICR: mask again and clear.
    io.run(&mut [RegOp::write(IMC, IMC_ALL), RegOp::read(ICR)])
}

/// Sets the link up with auto-negotiated speed and duplex (manual section 14.3)
/// and waits a while for STATUS.LU.
fn set_link_up(io: &mut dyn Io) -> io::Result<()> {
    let ctrl = io.read32(CTRL)?;
    let ctrl = (ctrl | CTRL_SLU | CTRL_ASDE) & !(CTRL_LRST | CTRL_PHY_RST | CTRL_ILOS | CTRL_VME);
    io.write32(CTRL, ctrl)?;
    match wait_for(io, STATUS, |status| status & STATUS_LU != 0, LINK_TIMEOUT)? {
        Ok(status) => log::info!("link up (STATUS {status:#010x})"),
        Err(status) => log::warn!(
            "link still down after {LINK_TIMEOUT:?} (STATUS {status:#010x}); serving anyway"
        ),
    }
    Ok(())
}

/// The station address: receive address entry 0, which the NIC loads from the
/// EEPROM at reset, or the EEPROM itself when that entry is not valid.
fn read_mac(io: &mut dyn Io) -> io::Result<[u8; 6]> {
    let mut ops = [RegOp::read(ral(0)), RegOp::read(rah(0))];
    io.run(&mut ops)?;
    if ops[1].value & RAH_AV != 0 {
        return Ok(address_from_ral_rah(ops[0].value, ops[1].value));
    }
    log::info!("receive address 0 not valid; reading the address from the EEPROM");
    let mut words = [0; EEPROM_ETHERNET_ADDRESS_WORDS as usize];
    for (address, word) in (0..).zip(&mut words) {
        *word = read_eeprom(io, address)?;
    }
    Ok(address_from_eeprom(words))
}

/// One EEPROM word through EERD: the start and the first poll in one batch.
fn read_eeprom(io: &mut dyn Io, address: u32) -> io::Result<u16> {
    let mut ops = [
        RegOp::write(EERD, address << EERD_ADDR_SHIFT | EERD_START),
        RegOp::read(EERD),
    ];
    io.run(&mut ops)?;
    let eerd = if ops[1].value & EERD_DONE != 0 {
        ops[1].value
    } else {
        wait_for(io, EERD, |eerd| eerd & EERD_DONE != 0, EERD_TIMEOUT)?.map_err(|eerd| {
            timed_out(format!(
                "EEPROM word {address}: EERD {eerd:#010x} not done after {EERD_TIMEOUT:?}"
            ))
        })?
    };
    Ok((eerd >> EERD_DATA_SHIFT) as u16)
}

/// Reads `reg` until `done` holds: `Ok(value)` then, `Err(last value)` after
/// `timeout`; the outer error is a failed read.
fn wait_for(
    io: &mut dyn Io,
    reg: u32,
    done: impl Fn(u32) -> bool,
    timeout: Duration,
) -> io::Result<Result<u32, u32>> {
    let started = Instant::now();
    loop {
        let value = io.read32(reg)?;
        if done(value) {
            return Ok(Ok(value));
        }
        if started.elapsed() > timeout {
            return Ok(Err(value));
        }
        sleep(POLL_INTERVAL);
    }
}

fn timed_out(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, why)
}

fn low32(value: u64) -> u32 {
    value as u32
}

fn high32(value: u64) -> u32 {
    (value >> 32) as u32
}

fn context(what: &str, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FakeDma, SoftNic};

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    fn bring_up(nic: &SoftNic, dma: &FakeDma) -> io::Result<Device> {
        Device::bring_up(nic.io(), dma.ring(RING_SLOTS), dma.ring(RING_SLOTS))
    }

    /// A successor on `nic`, with the buffers of `predecessor` adopted, after
    /// `mmio:` stopped the bus mastering of the dead one.
    fn successor(
        nic: &SoftNic,
        dma: &FakeDma,
        predecessor: &Device,
    ) -> (Device, Option<NotTakenOver>) {
        nic.stop_bus_master();
        let rx = dma.alias_ring(predecessor.rx.bus_addr());
        let tx = dma.alias_ring(predecessor.tx.bus_addr());
        Device::take_over_or_bring_up(nic.io(), rx, tx, true).unwrap()
    }

    #[test]
    fn a_successor_takes_over_a_running_nic_without_a_write_and_loses_no_frame() {
        let (mut first, nic, dma) = running();
        let frames: Vec<Vec<u8>> = (1..=4u8).map(|n| vec![n; 60]).collect();
        assert!(nic.deliver(&frames[0]));
        let mut buf = [0; 1514];
        first.receive(&mut buf).unwrap();
        first.poll(false).unwrap();
        // Sent and received while the driver dies and its successor starts.
        first.send(&[9; 60]).unwrap();
        first.poll(false).unwrap();
        assert!(nic.deliver(&frames[1]));
        assert!(nic.deliver(&frames[2]));
        nic.pause_tx(true);
        first.send(&[10; 60]).unwrap();
        first.poll(false).unwrap();
        let writes_before = nic.writes();
        nic.stop_bus_master();
        assert!(
            !nic.deliver(&frames[3]),
            "between the death and the successor's start the NIC writes no memory"
        );

        let (mut second, not_taken) = successor(&nic, &dma, &first);
        assert_eq!(not_taken, None);
        assert_eq!(nic.writes(), writes_before, "no register written");
        assert_eq!(
            nic.bus_master_started_after(),
            Some(writes_before),
            "bus mastering started again by the successor"
        );
        assert_eq!(second.mac(), MAC);
        assert!(nic.deliver(&frames[3]));
        for frame in &frames[1..] {
            let received = second.receive(&mut buf).expect("the frame");
            assert_eq!(&buf[..received.len], &frame[..]);
        }
        assert_eq!(second.receive(&mut buf), None);
        nic.pause_tx(false);
        second.send(&[11; 60]).unwrap();
        second.poll(false).unwrap();
        let sent: Vec<u8> = nic.take_sent().iter().map(|frame| frame[0]).collect();
        assert_eq!(sent, [9, 10, 11], "the frame in flight went out first");
    }

    #[test]
    fn a_stopped_nic_or_fresh_buffers_are_brought_up_afresh() {
        let (mut first, nic, dma) = running();
        first.stop().unwrap();
        let (_, not_taken) = successor(&nic, &dma, &first);
        assert!(
            matches!(not_taken, Some(NotTakenOver::Stopped { rctl: 0, .. })),
            "{not_taken:?}"
        );
        assert_eq!(nic.reg(RCTL), RCTL_SERVING, "brought up again");

        let fresh = Device::take_over_or_bring_up(
            nic.io(),
            dma.ring(RING_SLOTS),
            dma.ring(RING_SLOTS),
            true,
        );
        let (device, not_taken) = fresh.unwrap();
        assert!(matches!(
            not_taken,
            Some(NotTakenOver::RingMoved {
                ring: "receive",
                ..
            })
        ));
        assert_eq!(nic.reg(RDBAL), low32(device.rx.bus_addr()));
    }

    fn running() -> (Device, SoftNic, FakeDma) {
        let dma = FakeDma::new();
        let nic = SoftNic::new(&dma, MAC);
        (bring_up(&nic, &dma).unwrap(), nic, dma)
    }

    #[test]
    fn bring_up_quiesces_resets_and_programs_the_rings() {
        let (device, nic, _dma) = running();
        assert_eq!(device.mac(), MAC);
        // The receiver is written twice, microseconds apart (off, then on), so
        // QEMU's one-second receive pause starts once.
        assert_eq!(nic.writes_to(RCTL), [0, RCTL_SERVING]);
        assert_eq!(nic.writes_to(TCTL), [0, TCTL_SERVING]);
        assert_eq!(nic.writes_to(CTRL)[0], CTRL_RST);
        assert_eq!(nic.reg(CTRL) & (CTRL_SLU | CTRL_RST), CTRL_SLU);
        // Bus mastering only once the NIC was reset, before its rings are set.
        let started = nic
            .bus_master_started_after()
            .expect("bus mastering started");
        assert!(nic.writes_before_first(CTRL).unwrap() < started);
        assert!(nic.writes_before_first(RDBAL).unwrap() >= started);
        assert_eq!(nic.writes_to(IMC), [IMC_ALL, IMC_ALL]);
        let rx_ring = device.rx.bus_addr();
        assert_ne!(high32(rx_ring), 0, "the model's buffers lie above 4 GiB");
        assert_eq!(
            (nic.reg(RDBAL), nic.reg(RDBAH)),
            (low32(rx_ring), high32(rx_ring))
        );
        assert_eq!(nic.reg(TDBAL), low32(device.tx.bus_addr()));
        assert_eq!((nic.reg(RDLEN), nic.reg(TDLEN)), (2048, 2048));
        assert_eq!((nic.reg(RDH), nic.reg(RDT)), (0, 127));
        assert_eq!((nic.reg(TDH), nic.reg(TDT)), (0, 0));
        assert_eq!(nic.reg(TIPG), TIPG_82540EM_COPPER);
        assert!((0..MTA_LEN).all(|i| nic.writes_to(MTA + 4 * i) == [0]));
        assert_eq!(nic.reg(GPRC), 0, "a predecessor's counts are cleared");
        // Reset, its poll, the re-mask, the link (read, write, poll), the address,
        // and everything else in one: what mmio: mode pays in round trips.
        assert_eq!(nic.runs(), 8);
    }

    #[test]
    fn address_comes_from_the_eeprom_when_receive_address_0_is_not_valid() {
        let dma = FakeDma::new();
        let nic = SoftNic::new(&dma, MAC).without_receive_address();
        let device = bring_up(&nic, &dma).unwrap();
        assert_eq!(device.mac(), MAC);
        assert_eq!(
            (nic.reg(ral(0)), nic.reg(rah(0))),
            ral_rah_from_address(MAC),
            "the address is put where the NIC filters on it"
        );
    }

    #[test]
    fn a_reset_that_never_completes_is_a_timeout_error() {
        let dma = FakeDma::new();
        let nic = SoftNic::new(&dma, MAC).with_stuck_reset();
        let error = bring_up(&nic, &dma).err().expect("bring-up fails");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(
            error
                .to_string()
                .starts_with("resetting the NIC: CTRL 0x04000000: RST still set"),
            "{error}"
        );
        assert!(nic.writes_to(RDBAL).is_empty(), "no ring was programmed");
    }

    #[test]
    fn frames_go_out_at_poll_and_come_in_from_the_ring() {
        let (mut device, nic, _dma) = running();
        let frame = [0xab; 60];
        device.send(&frame).unwrap();
        assert!(nic.take_sent().is_empty(), "TDT not moved before the poll");
        device.poll(false).unwrap();
        assert_eq!(nic.take_sent(), [frame.to_vec()]);
        let runs = nic.runs();
        device.poll(false).unwrap();
        assert_eq!(nic.runs(), runs, "an idle poll touches no register");

        assert!(!device.frame_waiting());
        assert!(nic.deliver(&[0xcd; 64]));
        assert!(device.frame_waiting());
        let mut buf = [0; 1514];
        assert_eq!(device.receive(&mut buf).map(|r| r.len), Some(64));
        device.poll(false).unwrap();
        assert_eq!(nic.writes_to(RDT), [127, 0]);
        assert_eq!(device.tx_in_flight(), 0);
    }

    #[test]
    fn status_reads_link_and_adds_up_counters() {
        let (mut device, nic, _dma) = running();
        device.send(&[1; 60]).unwrap();
        device.poll(false).unwrap();
        nic.deliver(&[2; 100]);
        let link = device.read_status().unwrap();
        assert!(link.up && link.full_duplex && link.mbps == 1000, "{link:?}");
        device.send(&[1; 80]).unwrap();
        device.poll(false).unwrap();
        device.read_status().unwrap();
        let counters = device.nic_counters();
        assert_eq!(counters.get("gptc"), Some(2));
        assert_eq!(counters.get("gotc"), Some(140));
        assert_eq!(counters.get("gprc"), Some(1));
        assert_eq!(counters.get("gorc"), Some(100));
    }

    #[test]
    fn stop_switches_both_engines_off() {
        let (mut device, nic, _dma) = running();
        device.stop().unwrap();
        assert_eq!((nic.reg(RCTL), nic.reg(TCTL)), (0, 0));
        assert!(!nic.deliver(&[0; 60]), "the receiver is off");
    }
}
