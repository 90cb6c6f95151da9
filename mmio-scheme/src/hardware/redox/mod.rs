//! Redox: PCI functions through pcid's channel, BARs through the `memory`
//! scheme, ports through the thread's I/O privilege.

mod irq;
mod pcid;
mod physical_bar;

use std::collections::btree_map::{BTreeMap, Entry};
use std::io;

use driver_policy::{Bdf, DeviceId, PciFunction, PortRange};
use libredox::Fd;
use syscall::flag::{CallFlags, ProcSchemeVerb};

use super::pcid_wire::{self, PcidBar};
use super::Hardware;
use crate::bus::{PortBus, RegisterBus};
use crate::interrupt::InterruptLine;
use irq::IrqLine;
use pcid::PcidFunction;

extern "C" {
    /// relibc: the calling thread's handle in the `proc` scheme.
    fn redox_cur_thrfd_v0() -> usize;
}

/// The Redox machine this process runs on (needs uid 0: pcid channels,
/// `physical@` memory and I/O privilege).
#[derive(Default)]
pub struct RedoxHardware {
    functions: BTreeMap<Bdf, PcidFunction>,
    port_rights: bool,
}

impl RedoxHardware {
    pub fn new() -> Self {
        Self::default()
    }

    /// The function at `bdf`, taken from pcid on first use and kept.
    fn function(&mut self, bdf: Bdf) -> io::Result<&PcidFunction> {
        Ok(match self.functions.entry(bdf) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(PcidFunction::open(bdf)?),
        })
    }

    /// Redox grants port I/O to a thread all at once (the TSS I/O bitmap is
    /// all or nothing); the scheme's own checks keep each driver to its range.
    fn acquire_port_rights(&mut self) -> io::Result<()> {
        if self.port_rights {
            return Ok(());
        }
        // SAFETY: relibc's accessor for this thread's proc handle; no arguments.
        let thread = unsafe { redox_cur_thrfd_v0() };
        let kernel = Fd::new(libredox::call::dup(thread, b"open_via_dup")?);
        kernel.call_wo(&[], CallFlags::empty(), &[ProcSchemeVerb::Iopl as u64])?;
        self.port_rights = true;
        log::info!("acquired I/O port rights");
        Ok(())
    }
}

impl Hardware for RedoxHardware {
    fn functions(&mut self) -> io::Result<Vec<PciFunction>> {
        // The ids come through pcid's access handle, not the functions'
        // channels: taking a channel would take the function from its driver.
        let access = Fd::open(
            pcid_wire::CONFIG_ACCESS_PATH,
            libredox::flag::O_CLOEXEC | libredox::flag::O_RDWR,
            0,
        )?;
        let mut functions = Vec::new();
        for entry in std::fs::read_dir(pcid_wire::PCI_ROOT)? {
            let Some(bdf) = entry?
                .file_name()
                .to_str()
                .and_then(pcid_wire::function_name)
            else {
                continue;
            };
            let mut dword = [0; 4];
            access.call_ro(
                &mut dword,
                CallFlags::empty(),
                &pcid_wire::config_read(bdf, 0),
            )?;
            functions.push(PciFunction {
                bdf,
                id: pcid_wire::device_id_of(dword),
            });
        }
        functions.sort_by_key(|function| function.bdf);
        Ok(functions)
    }

    fn device_id(&mut self, bdf: Bdf) -> io::Result<DeviceId> {
        Ok(self.function(bdf)?.config.id)
    }

    fn open_bar(&mut self, bdf: Bdf, bar: u8) -> io::Result<Box<dyn RegisterBus>> {
        let config = self.function(bdf)?.config;
        match config.bars.get(usize::from(bar)).copied().unwrap_or(PcidBar::None) {
            PcidBar::Memory { address, size } => Ok(Box::new(physical_bar::map(address, size)?)),
            PcidBar::Port(base) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("BAR {bar} of {bdf} is ports from {base:#x}: pcid does not tell their count; grant them as a port range"),
            )),
            PcidBar::None => Err(io::Error::new(io::ErrorKind::NotFound, format!("BAR {bar} of {bdf} is not implemented"))),
        }
    }

    fn open_ports(&mut self, range: PortRange) -> io::Result<Box<dyn RegisterBus>> {
        self.acquire_port_rights()?;
        // SAFETY: this thread, the one that serves the scheme, has I/O privilege.
        Ok(Box::new(unsafe { PortBus::new(range) }))
    }

    fn open_interrupt(&mut self, bdf: Bdf) -> io::Result<Box<dyn InterruptLine>> {
        let irq = self.function(bdf)?.config.legacy_irq.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{bdf}: pcid routed no legacy interrupt line"),
            )
        })?;
        Ok(Box::new(IrqLine::open(irq)?))
    }

    fn stop_bus_master(&mut self, bdf: Bdf) -> io::Result<()> {
        // pcid owns the command register on Redox: it set Bus Master Enable
        // when this scheme took the function's channel, and the only request
        // of pcid's channel this crate speaks is `RequestConfig`. Clearing the
        // bit needs pcid's configuration-write request, whose encoding is not
        // checked against a running pcid yet; until it is, say so rather than
        // write a guessed message. `dma:`'s quarantine still holds the memory.
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{bdf}: pcid owns the command register; bus mastering not stopped"),
        ))
    }

    fn start_bus_master(&mut self, _bdf: Bdf) -> io::Result<()> {
        // pcid set Bus Master Enable when this scheme took the function's
        // channel, and nothing here clears it (see `stop_bus_master`).
        Ok(())
    }
}
