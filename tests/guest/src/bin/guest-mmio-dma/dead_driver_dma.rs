//! A driver killed under a receive flood: its NIC must write nothing into the
//! buffers `dma:` freed for it once `mmio:` has stopped the NIC's bus mastering.
//!
//! The driver (a child under the e1000 rule's uid) sets up a receive ring as the
//! e1000 driver does, but long (16,384 descriptors, all free), so that the NIC
//! could go on receiving for seconds after its driver is gone. The host floods
//! the NIC with UDP through QEMU's user network. Once frames arrive, the test
//! SIGKILLs the driver and checks, as root:
//!
//! - `mmio:` cleared Bus Master Enable in the NIC's command register (read from
//!   sysfs `config`), and how long after the kill;
//! - `dma:` (started with `--quarantine-poison`) released the dead driver's
//!   buffer with its poison intact: nothing wrote into it between one hold after
//!   the free and two;
//! - the ring had room for frames well past that window at the flood's measured
//!   rate, so without the stop the NIC would have written into the poison (a
//!   run with the stop disabled saw `poison_dirty=1`).
//!
//! The next opener of the BAR finds bus mastering still off: the NIC still
//! points at the dead driver's ring. It writes RCTL = 0 first, then asks
//! `mmio:` to start bus mastering again.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::sync::atomic::{fence, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use dma_scheme::{BufferFlags, DmaBuffer};
use e1000::regs::{RCTL, RCTL_BAM, RCTL_EN, RCTL_SECRC, RDBAH, RDBAL, RDH, RDLEN, RDT};
use guest_harness::guest::daemons::{read_status, DMA_STATUS};
use guest_harness::guest::mmio::Registers;
use guest_harness::guest::pci::SYSFS_PCI_DEVICES;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::guest::roles;
use guest_harness::protocol::{
    TestLine, E1000_DRIVER_LABEL, FLOOD_START_LINE, FLOOD_STOP_LINE, GUEST_TEST_PREFIX,
};
use mmio_scheme::wire::{Batch, Width};
use nix::sys::signal::Signal;

use crate::environment::Environment;
use crate::Role;

/// The role's step once frames arrive; its next line is a [`Received`].
const READY_STEP: &str = "rx-flood-driver-receiving";
/// Legacy receive descriptor (manual section 3.2.3): buffer address, length,
/// checksum, status, errors, special.
const DESC_LEN: usize = 16;
const DESC_STATUS: usize = 12;
const STATUS_DD: u8 = 1 << 0;
/// Descriptors in the ring: at the flood's rate, seconds of free ones.
const RING_DESCS: usize = 16384;
const RING_BYTES: usize = RING_DESCS * DESC_LEN;
/// Receive buffers (RCTL.BSIZE 00: 2048 bytes each); descriptors share them,
/// the test needs DMA, not the frames.
const RX_BUFFER: usize = 2048;
const RX_BUFFERS: usize = 32;
/// RCTL Unicast and Multicast Promiscuous Enable: every frame of the flood,
/// whatever QEMU's ARP cache says, is received.
const RCTL_UPE: u32 = 1 << 3;
const RCTL_MPE: u32 = 1 << 4;
/// How long the role waits for frames: QEMU holds them back for a second after
/// an RCTL write, and the host starts when it reads the request.
const FIRST_FRAMES_TIMEOUT: Duration = Duration::from_secs(30);
/// After the first frame: QEMU delivers the frames it held back during the
/// second after the RCTL write at once, then the flood's own rate, which the
/// role measures over [`RATE_WINDOW`].
const BACKLOG_SETTLE: Duration = Duration::from_millis(500);
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// The PCI command register in configuration space, and Bus Master Enable.
const COMMAND_OFFSET: u64 = 0x04;
const COMMAND_BUS_MASTER: u16 = 1 << 2;
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// `dma:`'s hold (its default) and the poison check's: the buffer is released
/// two holds after the free; the wait allows for slack.
const HOLD: Duration = Duration::from_secs(1);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the role reports with its ready line.
struct Received {
    /// Frames in the measured window, and its length.
    frames: usize,
    elapsed: Duration,
    /// Descriptors filled when the role reported.
    filled: usize,
}

impl Received {
    fn line(&self) -> String {
        format!(
            "rx-flood-driver frames={} micros={} filled={}",
            self.frames,
            self.elapsed.as_micros(),
            self.filled
        )
    }

    fn parse(line: &str) -> Option<Received> {
        let mut words = line.split_whitespace();
        (words.next()? == "rx-flood-driver").then_some(())?;
        let frames = words.next()?.strip_prefix("frames=")?.parse().ok()?;
        let micros = words.next()?.strip_prefix("micros=")?.parse().ok()?;
        let filled = words.next()?.strip_prefix("filled=")?.parse().ok()?;
        Some(Received {
            frames,
            elapsed: Duration::from_micros(micros),
            filled,
        })
    }

    /// Frames a second while the role watched.
    fn rate(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-6)
    }
}

/// The role: the ring, the NIC receiving into it, a ready line once frames
/// come, then nothing until it is killed.
pub fn receive_until_killed(report: &mut Report, env: &Environment) {
    let held = report.run(READY_STEP, || {
        let bar0 = Registers::open(env.e1000_bar(0))?;
        bar0.start_bus_master()?;
        // QEMU's user network sends a datagram for an unknown guest as an ARP
        // request, one at a time; an ARP from the guest teaches it the MAC, and
        // the flood then arrives as frames for it. Sent first: its buffers
        // count against the driver's quota (two huge pages) until freed.
        crate::tx_ring::transmit(&bar0, &arp_request(env.mac))?;
        let memory = DmaBuffer::alloc(RING_BYTES + RX_BUFFERS * RX_BUFFER, BufferFlags::SHARED)?;
        let bus = memory
            .bus_addr()
            .ok_or("the dma: buffer has no bus address")?;
        for i in 0..RING_DESCS {
            let buffer = bus + (RING_BYTES + (i % RX_BUFFERS) * RX_BUFFER) as u64;
            for (j, byte) in buffer.to_le_bytes().into_iter().enumerate() {
                // SAFETY: descriptor i lies within the ring, the first RING_BYTES
                // of the mapping.
                unsafe { memory.as_ptr().add(i * DESC_LEN + j).write_volatile(byte) };
            }
        }
        fence(Ordering::SeqCst);
        let mut setup = Batch::new();
        setup.write(u64::from(RCTL), Width::U32, 0)?;
        setup.write(u64::from(RDBAL), Width::U32, bus & 0xffff_ffff)?;
        setup.write(u64::from(RDBAH), Width::U32, bus >> 32)?;
        setup.write(u64::from(RDLEN), Width::U32, RING_BYTES as u64)?;
        setup.write(u64::from(RDH), Width::U32, 0)?;
        setup.write(u64::from(RDT), Width::U32, (RING_DESCS - 1) as u64)?;
        let rctl = RCTL_EN | RCTL_BAM | RCTL_UPE | RCTL_MPE | RCTL_SECRC;
        setup.write(u64::from(RCTL), Width::U32, rctl.into())?;
        bar0.run(&mut setup)?;
        let done = |i: usize| {
            // SAFETY: descriptor i's status byte lies within the ring.
            let status = unsafe {
                memory
                    .as_ptr()
                    .add(i * DESC_LEN + DESC_STATUS)
                    .read_volatile()
            };
            status & STATUS_DD != 0
        };
        let waited = Instant::now();
        while !done(0) {
            if waited.elapsed() > FIRST_FRAMES_TIMEOUT {
                return Err(format!("no frame in {FIRST_FRAMES_TIMEOUT:?}").into());
            }
            sleep(Duration::from_millis(5));
        }
        // Descriptors the NIC has filled, in ring order from the first.
        let filled = || (0..RING_DESCS - 1).take_while(|&i| done(i)).count();
        sleep(BACKLOG_SETTLE);
        let (first, started) = (filled(), Instant::now());
        sleep(RATE_WINDOW);
        let (last, elapsed) = (filled(), started.elapsed());
        if last <= first {
            return Err(format!("no frame in {RATE_WINDOW:?} after the backlog").into());
        }
        let received = Received {
            frames: last - first,
            elapsed,
            filled: last,
        };
        Ok((memory, bar0, received))
    });
    let Some((_memory, _bar0, received)) = held else {
        return;
    };
    println!("{}", received.line());
    loop {
        std::thread::park();
    }
}

/// An ARP request from the guest (10.0.2.15, `mac`) for QEMU's gateway
/// (10.0.2.2), padded to the 60-byte minimum frame.
fn arp_request(mac: [u8; 6]) -> [u8; 60] {
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet, IPv4, address lengths 6 and 4, operation 1 (request).
    frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&[10, 0, 2, 15]);
    frame[38..42].copy_from_slice(&[10, 0, 2, 2]);
    frame
}

/// Kills the child however the test goes.
struct FloodDriver(Child);

impl Drop for FloodDriver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The parent's side, as root.
pub fn check(report: &mut Report, env: &Environment) {
    println!("{FLOOD_START_LINE}");
    let started = report.run("dead-driver-dma-driver-receives-flood", || start(env));
    let started = report.run_after(
        "dead-driver-dma-ring-outlasts-quarantine",
        started,
        |(driver, received)| {
            // Without the stop, the NIC fills the free descriptors left at the
            // kill; it must still be writing when the poison is checked.
            let free = (RING_DESCS - 1).saturating_sub(received.filled) as f64;
            let lasts = Duration::from_secs_f64(free / received.rate());
            log::info!(
                "flood {:.0} frames/s, {} descriptors filled; the free ones last {lasts:.2?}",
                received.rate(),
                received.filled
            );
            if lasts < 3 * HOLD {
                return Err(format!(
                    "at {:.0} frames/s the ring fills in {lasts:?}: the check could not fail",
                    received.rate()
                )
                .into());
            }
            Ok(driver)
        },
    );
    let before = report.run_after("dead-driver-dma-status-read", started, |driver| {
        Ok((driver, Poison::read()?))
    });
    let killed = report.run_after(
        "dead-driver-dma-driver-sigkilled",
        before,
        |(mut driver, before)| {
            driver.0.kill()?;
            let killed_at = Instant::now();
            let status = driver.0.wait()?;
            if status.signal() != Some(Signal::SIGKILL as i32) {
                return Err(format!("the driver ended with {status}, not by SIGKILL").into());
            }
            Ok((killed_at, before))
        },
    );
    report.run_after(
        "mmio-stops-bus-mastering-of-killed-driver",
        killed,
        |(killed_at, _)| {
            let config = File::open(format!("{SYSFS_PCI_DEVICES}/{}/config", env.e1000))?;
            loop {
                let mut command = [0; 2];
                config.read_exact_at(&mut command, COMMAND_OFFSET)?;
                if u16::from_le_bytes(command) & COMMAND_BUS_MASTER == 0 {
                    log::info!(
                        "bus mastering off {:.2?} after the kill",
                        killed_at.elapsed()
                    );
                    return Ok(());
                }
                if killed_at.elapsed() > STOP_TIMEOUT {
                    return Err(format!(
                        "command register {:#06x} {STOP_TIMEOUT:?} after the kill",
                        u16::from_le_bytes(command)
                    )
                    .into());
                }
                sleep(Duration::from_millis(1));
            }
        },
    );
    report.run_after(
        "dma-quarantined-buffers-get-no-dma-after-driver-killed",
        killed,
        |(killed_at, before)| {
            let after = loop {
                let now = Poison::read()?;
                if now.released > before.released {
                    break now;
                }
                if killed_at.elapsed() > RELEASE_TIMEOUT {
                    return Err(
                        format!("nothing released {RELEASE_TIMEOUT:?} after the kill").into(),
                    );
                }
                sleep(Duration::from_millis(20));
            };
            log::info!("released {:.2?} after the kill", killed_at.elapsed());
            if after.dirty != before.dirty || after.clean <= before.clean {
                return Err(format!(
                    "poison_dirty {} -> {}, poison_clean {} -> {}: DMA reached freed memory",
                    before.dirty, after.dirty, before.clean, after.clean
                )
                .into());
            }
            Ok(())
        },
    );
    println!("{FLOOD_STOP_LINE}");
    report.run_after(
        "mmio-leaves-bus-mastering-off-until-the-next-driver-starts-it",
        killed,
        |_| {
            let command = || -> StepResult<u16> {
                let config = File::open(format!("{SYSFS_PCI_DEVICES}/{}/config", env.e1000))?;
                let mut command = [0; 2];
                config.read_exact_at(&mut command, COMMAND_OFFSET)?;
                Ok(u16::from_le_bytes(command))
            };
            let bar0 = Registers::open_for(env.e1000_bar(0), E1000_DRIVER_LABEL)?;
            let opened = command()?;
            if opened & COMMAND_BUS_MASTER != 0 {
                return Err(format!(
                    "command register {opened:#06x} after a new open: the NIC may write \
                     into the dead driver's freed ring"
                )
                .into());
            }
            // What the next driver does, as the e1000 driver does: stop the
            // receiver pointing at the dead driver's ring, then start mastering.
            bar0.write32(RCTL, 0)?;
            bar0.start_bus_master()?;
            let started = command()?;
            if started & COMMAND_BUS_MASTER == 0 {
                return Err(format!("command register {started:#06x} after the start").into());
            }
            Ok(())
        },
    );
}

/// Starts the driver and waits until it receives the flood.
fn start(env: &Environment) -> StepResult<(FloodDriver, Received)> {
    let mut driver = FloodDriver(roles::spawn(&Role::RxFloodDriver.name(), env.e1000_uid)?);
    let output = driver
        .0
        .stdout
        .take()
        .ok_or("the driver's output is not piped")?;
    let mut lines = BufReader::new(output).lines();
    let line = lines.next().transpose()?.unwrap_or_default();
    match TestLine::parse(GUEST_TEST_PREFIX, &line) {
        Some(ready) if ready.name == READY_STEP && ready.passed() => {}
        _ => return Err(format!("the driver said {line:?}, not that it receives").into()),
    }
    let line = lines.next().transpose()?.unwrap_or_default();
    let received = Received::parse(&line).ok_or(format!("the driver said {line:?}"))?;
    Ok((driver, received))
}

/// The quarantine's counters in `dma:status`.
#[derive(Clone, Copy)]
struct Poison {
    released: u64,
    clean: u64,
    dirty: u64,
}

impl Poison {
    fn read() -> StepResult<Poison> {
        let status = read_status(DMA_STATUS)?;
        let value = |key: &str| -> StepResult<u64> {
            let prefix = format!("{key}=");
            Ok(status
                .lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .ok_or(format!("dma:status has no {key}:\n{status}"))?
                .parse()?)
        };
        Ok(Poison {
            released: value("quarantine_released")?,
            clean: value("poison_clean")?,
            dirty: value("poison_dirty")?,
        })
    }
}
