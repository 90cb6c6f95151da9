//! A PCI function owned through pcid's channel. pcid lets one process at a
//! time hold a function's channel, so `mmio:` holds it for as long as it runs
//! and no driver (nor the stock driver for the device) can take the function.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};

use driver_policy::Bdf;

use crate::hardware::pcid_wire::{self, FunctionConfig};

pub(super) struct PcidFunction {
    /// Held open: closing it would hand the function back to pcid.
    _channel: File,
    pub config: FunctionConfig,
}

impl PcidFunction {
    /// Takes the function at `bdf` (pcid enables its decoding and bus
    /// mastering) and asks for its configuration.
    pub fn open(bdf: Bdf) -> io::Result<Self> {
        let mut channel = OpenOptions::new()
            .read(true)
            .write(true)
            .open(pcid_wire::channel_path(bdf))?;
        channel.write_all(&pcid_wire::REQUEST_CONFIG)?;
        let mut header = [0; 8];
        channel.read_exact(&mut header)?;
        let mut response = vec![0; pcid_wire::response_len(header).map_err(invalid)?];
        channel.read_exact(&mut response)?;
        let config = pcid_wire::decode_config(&response).map_err(invalid)?;
        if config.bdf != bdf {
            return Err(invalid(format!(
                "pcid answered for {} when asked for {bdf}",
                config.bdf
            )));
        }
        log::info!("took PCI function {bdf} ({}) from pcid", config.id);
        Ok(Self {
            _channel: channel,
            config,
        })
    }
}

fn invalid(error: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}
