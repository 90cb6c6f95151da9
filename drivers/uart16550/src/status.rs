//! What the `status` path reports: the device, the line settings, the buffers and
//! the counters since start, as `key: value` lines.

use crate::uart::LineErrors;

/// Counters since the driver started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Bytes taken from the receiver.
    pub rx_bytes: u64,
    /// Bytes given to the transmitter.
    pub tx_bytes: u64,
    /// LSR reads that showed an Overrun Error: received bytes the chip lost.
    pub overruns: u64,
    pub parity_errors: u64,
    pub framing_errors: u64,
    pub breaks: u64,
    /// Times the receive buffer filled up, leaving further bytes in the chip.
    pub rx_buffer_full: u64,
    /// Register batches run (one per step of the poll loop).
    pub steps: u64,
    /// Steps that failed at the device or its access layer.
    pub device_errors: u64,
}

impl Statistics {
    pub fn count(&mut self, errors: LineErrors) {
        self.overruns += u64::from(errors.overrun);
        self.parity_errors += u64::from(errors.parity);
        self.framing_errors += u64::from(errors.framing);
        self.breaks += u64::from(errors.break_received);
    }
}

/// Everything the status text shows.
pub struct StatusView<'a> {
    pub device: &'a str,
    pub settings: String,
    pub transmit_burst: usize,
    pub rx_buffered: usize,
    pub rx_capacity: usize,
    pub tx_queued: usize,
    pub tx_capacity: usize,
    /// The last device error, while the device keeps failing.
    pub failure: Option<&'a str>,
    pub statistics: Statistics,
}

impl StatusView<'_> {
    pub fn render(&self) -> String {
        let s = &self.statistics;
        let state = self
            .failure
            .map_or_else(|| "ok".to_owned(), |error| format!("failing: {error}"));
        [
            ("device", self.device.to_owned()),
            ("settings", self.settings.clone()),
            ("transmit_burst", self.transmit_burst.to_string()),
            ("state", state),
            ("rx_buffered", self.rx_buffered.to_string()),
            ("rx_capacity", self.rx_capacity.to_string()),
            ("tx_queued", self.tx_queued.to_string()),
            ("tx_capacity", self.tx_capacity.to_string()),
            ("rx_bytes", s.rx_bytes.to_string()),
            ("tx_bytes", s.tx_bytes.to_string()),
            ("overruns", s.overruns.to_string()),
            ("parity_errors", s.parity_errors.to_string()),
            ("framing_errors", s.framing_errors.to_string()),
            ("breaks", s.breaks.to_string()),
            ("rx_buffer_full", s.rx_buffer_full.to_string()),
            ("steps", s.steps.to_string()),
            ("device_errors", s.device_errors.to_string()),
        ]
        .iter()
        .map(|(key, value)| format!("{key}: {value}\n"))
        .collect()
    }
}
