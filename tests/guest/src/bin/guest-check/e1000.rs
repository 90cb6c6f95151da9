//! e1000 (82540EM) checks: find the function, enable it, map BAR0, read STATUS and the
//! receive address, and transmit one frame through a DMA descriptor ring.

use std::path::Path;
use std::time::{Duration, Instant};

use guest_harness::guest::dma::DmaPage;
use guest_harness::guest::pci::{Mmio, PciFunction, COMMAND_BUS_MASTER, COMMAND_MEMORY_SPACE};
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::{TEST_FRAME_ETHERTYPE, TEST_FRAME_PAYLOAD};

const VENDOR_INTEL: u16 = 0x8086;
const DEVICE_82540EM: u16 = 0x100e;
const BAR0_SIZE: usize = 128 << 10;

// Registers (82540EM manual, section 13.4).
const STATUS: usize = 0x0008;
const STATUS_LU: u32 = 1 << 1;
const TCTL: usize = 0x0400;
const TCTL_EN: u32 = 1 << 1;
const TCTL_PSP: u32 = 1 << 3;
const TDBAL: usize = 0x3800;
const TDBAH: usize = 0x3804;
const TDLEN: usize = 0x3808;
const TDH: usize = 0x3810;
const TDT: usize = 0x3818;
const RAL0: usize = 0x5400;
const RAH0: usize = 0x5404;
const RAH_AV: u32 = 1 << 31;

// Legacy transmit descriptor (section 3.3.3): address, length, CSO, CMD, STA, CSS, special.
const TX_DESC_LEN: usize = 16;
const TX_DESC_CMD: usize = 11;
const TX_DESC_STA: usize = 12;
const TXD_CMD_EOP: u8 = 1 << 0;
const TXD_CMD_IFCS: u8 = 1 << 1;
const TXD_CMD_RS: u8 = 1 << 3;
const TXD_STA_DD: u8 = 1 << 0;
/// TDLEN must be a multiple of 128 bytes.
const TX_RING_DESCS: usize = 8;
/// Where the frame sits in the DMA page, after the ring.
const FRAME_OFFSET: usize = 4096;
const MIN_FRAME_LEN: usize = 60;
const TX_TIMEOUT: Duration = Duration::from_secs(1);

pub fn check(report: &mut Report, pci_devices: &Path, mac: [u8; 6]) {
    let nic = report.run("e1000-find", || {
        let nic = PciFunction::find(pci_devices, VENDOR_INTEL, DEVICE_82540EM)?;
        log::info!("e1000 is PCI function {}", nic.address());
        Ok(nic)
    });
    let nic = report.run_after("e1000-enable-memory-and-bus-master", nic, |nic| {
        let wanted = COMMAND_MEMORY_SPACE | COMMAND_BUS_MASTER;
        let command = nic.set_command_bits(wanted)?;
        log::info!("command register {command:#06x}");
        if command & wanted != wanted {
            return Err(
                format!("command register reads {command:#06x} after setting {wanted:#x}").into(),
            );
        }
        Ok(nic)
    });
    let bar = report.run_after("e1000-map-bar0", nic, |nic| {
        let bar = nic.map_bar(0)?;
        if bar.len() != BAR0_SIZE {
            return Err(format!("BAR0 is {:#x} bytes, expected {BAR0_SIZE:#x}", bar.len()).into());
        }
        Ok(bar)
    });
    report.run_after("e1000-status-link-up", bar.as_ref(), |bar| {
        let status = bar.read32(STATUS)?;
        log::info!("STATUS {status:#010x}");
        if status & STATUS_LU == 0 {
            return Err(format!("STATUS {status:#010x} has link up (bit 1) clear").into());
        }
        Ok(())
    });
    report.run_after("e1000-mac-in-ral0-rah0", bar.as_ref(), |bar| {
        let (ral, rah) = (bar.read32(RAL0)?, bar.read32(RAH0)?);
        log::info!("RAL0 {ral:#010x} RAH0 {rah:#010x}");
        let mut found = [0u8; 6];
        found[..4].copy_from_slice(&ral.to_le_bytes());
        found[4..].copy_from_slice(&rah.to_le_bytes()[..2]);
        if rah & RAH_AV == 0 || found != mac {
            return Err(format!(
                "RAL0/RAH0 hold {found:02x?} (valid: {}), expected {mac:02x?}",
                rah & RAH_AV != 0
            )
            .into());
        }
        Ok(())
    });
    report.run_after("e1000-transmit-frame", bar.as_ref(), |bar| {
        let took = transmit(bar, mac)?;
        log::info!("transmit descriptor done {took:?} after the tail write");
        Ok(())
    });
}

/// Sends one test frame through a one-descriptor ring and waits for its write-back.
fn transmit(bar: &Mmio, mac: [u8; 6]) -> StepResult<Duration> {
    let page = DmaPage::allocate()?;
    let frame = test_frame(mac);
    page.write(FRAME_OFFSET, &frame)?;
    let mut desc = [0u8; TX_DESC_LEN];
    desc[..8].copy_from_slice(&(page.physical_address() + FRAME_OFFSET as u64).to_le_bytes());
    desc[8..10].copy_from_slice(&(frame.len() as u16).to_le_bytes());
    desc[TX_DESC_CMD] = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS;
    page.write(0, &desc)?;

    let ring = page.physical_address();
    bar.write32(TDBAL, ring as u32)?;
    bar.write32(TDBAH, (ring >> 32) as u32)?;
    bar.write32(TDLEN, (TX_RING_DESCS * TX_DESC_LEN) as u32)?;
    bar.write32(TDH, 0)?;
    bar.write32(TDT, 0)?;
    bar.write32(TCTL, TCTL_EN | TCTL_PSP)?;
    let start = Instant::now();
    bar.write32(TDT, 1)?;
    let done = loop {
        if page.read8(TX_DESC_STA)? & TXD_STA_DD != 0 {
            break Ok(start.elapsed());
        }
        if start.elapsed() > TX_TIMEOUT {
            break Err(format!(
                "descriptor not done {TX_TIMEOUT:?} after the tail write, TDH {}",
                bar.read32(TDH)?
            ));
        }
        std::hint::spin_loop();
    };
    // Stop the transmitter before the ring's memory goes back to the kernel.
    bar.write32(TCTL, 0)?;
    Ok(done?)
}

/// Broadcast frame from `mac` carrying the payload the host looks for in the capture.
fn test_frame(mac: [u8; 6]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&TEST_FRAME_ETHERTYPE.to_be_bytes());
    frame.extend_from_slice(TEST_FRAME_PAYLOAD);
    frame.resize(frame.len().max(MIN_FRAME_LEN), 0);
    frame
}
