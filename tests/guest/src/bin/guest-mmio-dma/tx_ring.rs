//! Transmitting one frame as a driver does: a legacy transmit descriptor ring and the
//! frame in `dma:` buffers, the ring set up and the tail moved through `mmio:` in one
//! batch, and the descriptor's write-back polled in DMA memory.

use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use dma_scheme::{BufferFlags, DmaBuffer};
use guest_harness::guest::e1000::{TCTL, TCTL_EN, TCTL_PSP, TDBAH, TDBAL, TDH, TDLEN, TDT};
use guest_harness::guest::mmio::Registers;
use guest_harness::guest::report::StepResult;
use mmio_scheme::wire::{Batch, Width};

// Legacy transmit descriptor (manual section 3.3.3): buffer address, length, CSO, CMD,
// STA, CSS, special.
const DESC_LEN: usize = 16;
const DESC_LENGTH: usize = 8;
const DESC_CMD: usize = 11;
const DESC_STA: usize = 12;
const CMD_EOP: u8 = 1 << 0;
const CMD_IFCS: u8 = 1 << 1;
/// Report status: the NIC sets STA.DD when it is done with the descriptor.
const CMD_RS: u8 = 1 << 3;
const STA_DD: u8 = 1 << 0;
/// TDLEN must be a multiple of 128 bytes.
const RING_DESCS: usize = 8;
const TX_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `frame` through a ring with one used descriptor; returns how long after the
/// tail write the NIC reported it done.
pub fn transmit(bar0: &Registers, frame: &[u8]) -> StepResult<Duration> {
    let ring = DmaBuffer::alloc(RING_DESCS * DESC_LEN, BufferFlags::SHARED)?;
    let packet = DmaBuffer::alloc(frame.len(), BufferFlags::SHARED)?;
    let ring_bus = bus_address(&ring)?;
    store(&packet, 0, frame)?;
    store(&ring, 0, &descriptor(bus_address(&packet)?, frame.len())?)?;
    // The descriptor and frame are in memory before the NIC learns of them.
    fence(Ordering::SeqCst);

    let mut setup = Batch::new();
    setup.write(u64::from(TDBAL), Width::U32, ring_bus & 0xffff_ffff)?;
    setup.write(u64::from(TDBAH), Width::U32, ring_bus >> 32)?;
    setup.write(u64::from(TDLEN), Width::U32, (RING_DESCS * DESC_LEN) as u64)?;
    setup.write(u64::from(TDH), Width::U32, 0)?;
    setup.write(u64::from(TDT), Width::U32, 0)?;
    setup.write(u64::from(TCTL), Width::U32, (TCTL_EN | TCTL_PSP).into())?;
    setup.write(u64::from(TDT), Width::U32, 1)?;
    let started = Instant::now();
    bar0.run(&mut setup)?;
    let done = loop {
        if load(&ring, DESC_STA)? & STA_DD != 0 {
            break Ok(started.elapsed());
        }
        if started.elapsed() > TX_TIMEOUT {
            break Err(format!(
                "descriptor not done {TX_TIMEOUT:?} after the tail write, TDH {}",
                bar0.read32(TDH)?
            ));
        }
        std::hint::spin_loop();
    };
    // Stop the transmitter before the ring's memory goes back to the daemon.
    bar0.write32(TCTL, 0)?;
    Ok(done?)
}

/// A descriptor that sends `len` bytes at `address` as one whole frame, the NIC adding
/// the frame check sequence and reporting completion.
fn descriptor(address: u64, len: usize) -> StepResult<[u8; DESC_LEN]> {
    let mut desc = [0; DESC_LEN];
    desc[..8].copy_from_slice(&address.to_le_bytes());
    desc[DESC_LENGTH..DESC_LENGTH + 2].copy_from_slice(&u16::try_from(len)?.to_le_bytes());
    desc[DESC_CMD] = CMD_EOP | CMD_IFCS | CMD_RS;
    Ok(desc)
}

fn bus_address(buffer: &DmaBuffer) -> StepResult<u64> {
    Ok(buffer
        .bus_addr()
        .ok_or("the dma: buffer has no bus address")?)
}

/// Copies `bytes` into `buffer` at `offset` with volatile stores (the NIC reads them).
fn store(buffer: &DmaBuffer, offset: usize, bytes: &[u8]) -> StepResult<()> {
    check_range(buffer, offset, bytes.len())?;
    for (i, byte) in bytes.iter().enumerate() {
        // SAFETY: check_range proved offset..offset+len lies inside the mapping.
        unsafe { buffer.as_ptr().add(offset + i).write_volatile(*byte) };
    }
    Ok(())
}

/// Reads one byte the NIC may have written.
fn load(buffer: &DmaBuffer, offset: usize) -> StepResult<u8> {
    check_range(buffer, offset, 1)?;
    // SAFETY: check_range proved the byte lies inside the mapping.
    Ok(unsafe { buffer.as_ptr().add(offset).read_volatile() })
}

fn check_range(buffer: &DmaBuffer, offset: usize, len: usize) -> StepResult<()> {
    match offset.checked_add(len) {
        Some(end) if end <= buffer.len() => Ok(()),
        _ => Err(format!(
            "{len} bytes at {offset:#x} do not fit a {}-byte buffer",
            buffer.len()
        )
        .into()),
    }
}
