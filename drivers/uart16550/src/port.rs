//! The serial line as clients see it: a bounded receive buffer filled from the chip,
//! a bounded transmit queue drained into it, the counters, and whether the device
//! currently answers.
//!
//! Back-pressure: when the receive buffer holds [`RX_CAPACITY`] bytes the driver
//! stops reading RBR, so further bytes stay in the chip's 16-byte FIFO. QEMU's 16550
//! then stops taking bytes from its character device and the peer's writes wait; a
//! real line without flow control overruns after those 16 bytes, which the
//! `overruns` counter shows. Writes beyond [`TX_CAPACITY`] queued bytes are cut short,
//! or refused with EWOULDBLOCK when the queue is full.

use std::collections::VecDeque;

use syscall::error::{Error, Result, EIO, EWOULDBLOCK};
use syscall::flag::EventFlags;

use crate::access::PortIo;
use crate::line::LineSettings;
use crate::status::{Statistics, StatusView};
use crate::uart::Uart;

/// Bytes received and not yet read that the driver keeps.
pub const RX_CAPACITY: usize = 64 * 1024;
/// Bytes written and not yet transmitted that the driver accepts.
pub const TX_CAPACITY: usize = 64 * 1024;

/// One UART's line: what its clients read and write, and the chip behind it.
pub struct SerialPort<P> {
    uart: Uart<P>,
    settings: LineSettings,
    rx: VecDeque<u8>,
    tx: VecDeque<u8>,
    statistics: Statistics,
    /// The last device error, from the first failed step until one succeeds.
    failure: Option<String>,
}

impl<P: PortIo> SerialPort<P> {
    /// `uart` was opened with `settings`.
    pub fn new(uart: Uart<P>, settings: LineSettings) -> Self {
        Self {
            uart,
            settings,
            rx: VecDeque::with_capacity(RX_CAPACITY),
            tx: VecDeque::with_capacity(TX_CAPACITY),
            statistics: Statistics::default(),
            failure: None,
        }
    }

    /// Takes received bytes; EWOULDBLOCK when there are none, EIO when there are
    /// none and the device fails.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.rx.is_empty() && !buf.is_empty() {
            let errno = if self.failure.is_some() {
                EIO
            } else {
                EWOULDBLOCK
            };
            return Err(Error::new(errno));
        }
        let n = buf.len().min(self.rx.len());
        for (slot, byte) in buf.iter_mut().zip(self.rx.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }

    /// Queues bytes for the transmitter, as many as fit; EWOULDBLOCK when none fit,
    /// EIO while the device fails.
    pub fn write(&mut self, buf: &[u8]) -> Result<usize> {
        if self.failure.is_some() {
            return Err(Error::new(EIO));
        }
        let n = buf.len().min(TX_CAPACITY - self.tx.len());
        if n == 0 && !buf.is_empty() {
            return Err(Error::new(EWOULDBLOCK));
        }
        self.tx.extend(&buf[..n]);
        Ok(n)
    }

    /// READ while received bytes wait, WRITE while the transmit queue has room.
    pub fn readiness(&self) -> EventFlags {
        let mut ready = EventFlags::empty();
        if !self.rx.is_empty() {
            ready |= EventFlags::EVENT_READ;
        }
        if self.tx.len() < TX_CAPACITY {
            ready |= EventFlags::EVENT_WRITE;
        }
        ready
    }

    pub fn settings(&self) -> LineSettings {
        self.settings
    }

    /// Programs new settings into the chip (EIO if it cannot be reached).
    pub fn set_settings(&mut self, settings: LineSettings) -> Result<()> {
        self.uart.set_line(settings).map_err(|error| {
            log::error!("setting the line to {settings} failed: {error}");
            Error::new(EIO)
        })?;
        log::info!("line settings now {settings}");
        self.settings = settings;
        Ok(())
    }

    /// One step of the chip: a received byte into the buffer if it has room, the
    /// front of the queue into the transmit FIFO. Returns whether bytes moved or
    /// the chip, as this step left it, lets the next step move some. A failed step
    /// leaves the queue as it was: bytes of a batch that ran in part go out again.
    pub fn step(&mut self) -> bool {
        let can_receive = self.rx.len() < RX_CAPACITY;
        let (front, _) = self.tx.as_slices();
        self.statistics.steps += 1;
        let step = match self.uart.step(can_receive, front) {
            Ok(step) => step,
            Err(error) => {
                self.statistics.device_errors += 1;
                if self.failure.is_none() {
                    log::error!("the UART fails: {error}; retrying on every poll");
                }
                self.failure = Some(error.to_string());
                return false;
            }
        };
        if self.failure.take().is_some() {
            log::info!("the UART answers again");
        }
        if let Some(byte) = step.received {
            self.rx.push_back(byte);
            self.statistics.rx_bytes += 1;
            if self.rx.len() == RX_CAPACITY {
                self.statistics.rx_buffer_full += 1;
                log::debug!("receive buffer full: further bytes wait in the chip");
            }
        }
        self.tx.drain(..step.sent);
        self.statistics.tx_bytes += step.sent as u64;
        self.statistics.count(step.line_errors);
        if step.line_errors.overrun {
            log::warn!("the UART overran: received bytes were lost");
        }
        step.moved()
            || self
                .uart
                .ready(self.rx.len() < RX_CAPACITY, !self.tx.is_empty())
    }

    pub fn status(&self, device: &str) -> String {
        StatusView {
            device,
            settings: self.settings.to_string(),
            transmit_burst: self.uart.transmit_burst(),
            rx_buffered: self.rx.len(),
            rx_capacity: RX_CAPACITY,
            tx_queued: self.tx.len(),
            tx_capacity: TX_CAPACITY,
            failure: self.failure.as_deref(),
            statistics: self.statistics,
        }
        .render()
    }
}
