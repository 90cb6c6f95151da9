//! How the driver reaches the NIC's registers: the [`Io`] trait, and its two
//! implementations, chosen at start.
//!
//! - [`DirectIo`]: BAR 0 mapped into the driver through `mmio:`'s direct mode;
//!   every access is one volatile 32-bit load or store.
//! - [`MmioIo`]: every access is a request to `mmio:`, and a batch of accesses is
//!   one request; the cost is the round trip, so the driver batches what it can.
//!
//! Every access is 32 bits wide, and an offset outside BAR 0 or not 4-byte
//! aligned is refused before anything reaches the device.

mod direct;
mod mmio;

pub use direct::DirectIo;
pub use mmio::MmioIo;

use std::io;

/// Whether a register operation reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// One 32-bit register access of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegOp {
    pub access: Access,
    /// Offset in BAR 0.
    pub reg: u32,
    /// The value written, or the value read once the batch has run.
    pub value: u32,
}

impl RegOp {
    pub const fn read(reg: u32) -> Self {
        Self {
            access: Access::Read,
            reg,
            value: 0,
        }
    }

    pub const fn write(reg: u32, value: u32) -> Self {
        Self {
            access: Access::Write,
            reg,
            value,
        }
    }
}

/// Register access to one NIC.
pub trait Io {
    /// Performs `ops` in order and stores what each read returned in its `value`.
    /// The whole batch is checked first: one bad offset and nothing is performed.
    fn run(&mut self, ops: &mut [RegOp]) -> io::Result<()>;

    fn read32(&mut self, reg: u32) -> io::Result<u32> {
        let mut op = [RegOp::read(reg)];
        self.run(&mut op)?;
        Ok(op[0].value)
    }

    /// Performs `ops` in order, as [`run`](Self::run), where they may also wait
    /// until the driver answers its current request: a replica hands them to
    /// its supervisor with its reply, voted with it, instead of stopping for
    /// them. For the writes that end a round (the rings' tails), which nothing
    /// in the round reads after. A batch that reads is run at once.
    fn run_late(&mut self, ops: &mut [RegOp]) -> io::Result<()> {
        self.run(ops)
    }

    /// A read of `reg` laid out as a call someone else may make for the
    /// driver (its engine, as the interrupt line fires): the connection's
    /// descriptor and the request. `None` where registers are not reached
    /// through calls.
    fn read_request(&mut self, _reg: u32) -> Option<(u32, Vec<u8>)> {
        None
    }

    /// The value the answer to a [`read_request`](Self::read_request) read.
    fn value_in_answer(&self, _answer: &[u8]) -> Option<u32> {
        None
    }

    fn write32(&mut self, reg: u32, value: u32) -> io::Result<()> {
        self.run(&mut [RegOp::write(reg, value)])
    }

    /// Lets the NIC master the bus (DMA), which `mmio:` leaves off at open:
    /// only once the NIC was reset, or its rings were found in buffers this
    /// driver holds.
    fn start_bus_master(&mut self) -> io::Result<()>;
}

/// Refuses a batch with an access outside a register window of `len` bytes or not
/// 4-byte aligned.
pub(crate) fn check_batch(ops: &[RegOp], len: usize) -> io::Result<()> {
    match ops
        .iter()
        .find(|op| op.reg % 4 != 0 || op.reg as usize + 4 > len)
    {
        Some(op) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "register {:#x} is not a 32-bit register of a {len:#x}-byte BAR",
                op.reg
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_check_refuses_out_of_range_and_misaligned() {
        let fine = [RegOp::read(0), RegOp::write(0x1fffc, 1)];
        assert!(check_batch(&fine, 0x20000).is_ok());
        for bad in [0x20000, 0x1fffe, 2] {
            let ops = [RegOp::read(0), RegOp::read(bad)];
            let err = check_batch(&ops, 0x20000).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:#x}");
            assert!(err.to_string().contains(&format!("{bad:#x}")), "{err}");
        }
    }
}
