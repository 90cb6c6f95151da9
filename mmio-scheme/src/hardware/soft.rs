//! A machine made of software register banks, for host tests of the scheme.
//!
//! Each function also has a command register, which opening a BAR and
//! stopping bus mastering change as the real machines do, so that tests can see
//! when the scheme stops a device's DMA.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use driver_policy::{Bdf, DeviceId, PciFunction, PortRange};

use super::command::{BUS_MASTER, MEMORY_SPACE};
use super::Hardware;
use crate::bus::{RegisterBus, SoftBank};
use crate::interrupt::{InterruptLine, SoftInterrupt};

/// PCI functions whose BARs are [`SoftBank`]s, and a software port space.
#[derive(Clone, Debug)]
pub struct SoftMachine {
    functions: BTreeMap<Bdf, SoftFunction>,
    ports: SoftBank,
}

#[derive(Clone, Debug)]
struct SoftFunction {
    id: DeviceId,
    bars: BTreeMap<u8, SoftBank>,
    /// The PCI command register, shared by every clone of the machine (as
    /// the banks are), so a test keeps a clone to watch it.
    command: Arc<AtomicU16>,
    /// How often bus mastering was stopped.
    bus_master_stops: Arc<AtomicU16>,
    /// The function's interrupt line, which a test fires.
    interrupt: SoftInterrupt,
}

impl Default for SoftMachine {
    fn default() -> Self {
        Self {
            functions: BTreeMap::new(),
            ports: SoftBank::port_space(),
        }
    }
}

impl SoftMachine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs `bank` as BAR `bar` of the function at `bdf`, which reports `id`.
    pub fn add_bar(&mut self, bdf: Bdf, id: DeviceId, bar: u8, bank: SoftBank) {
        let function = self.functions.entry(bdf).or_insert_with(|| SoftFunction {
            id,
            bars: BTreeMap::new(),
            command: Arc::default(),
            bus_master_stops: Arc::default(),
            interrupt: SoftInterrupt::default(),
        });
        function.id = id;
        function.bars.insert(bar, bank);
    }

    /// The port space that [`open_ports`](Hardware::open_ports) slices.
    pub fn ports(&self) -> &SoftBank {
        &self.ports
    }

    /// The command register of the function at `bdf` (0 until a BAR is opened).
    pub fn command(&self, bdf: Bdf) -> Option<u16> {
        let function = self.functions.get(&bdf)?;
        Some(function.command.load(Ordering::SeqCst))
    }

    /// How often bus mastering of the function at `bdf` was stopped.
    pub fn bus_master_stops(&self, bdf: Bdf) -> Option<u16> {
        let function = self.functions.get(&bdf)?;
        Some(function.bus_master_stops.load(Ordering::SeqCst))
    }

    /// The interrupt line of the function at `bdf`, shared with every line
    /// the scheme opens for it.
    pub fn interrupt(&self, bdf: Bdf) -> Option<SoftInterrupt> {
        Some(self.functions.get(&bdf)?.interrupt.clone())
    }

    fn function(&self, bdf: Bdf) -> io::Result<&SoftFunction> {
        self.functions.get(&bdf).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no PCI function {bdf}"))
        })
    }
}

impl Hardware for SoftMachine {
    fn functions(&mut self) -> io::Result<Vec<PciFunction>> {
        Ok(self
            .functions
            .iter()
            .map(|(&bdf, function)| PciFunction {
                bdf,
                id: function.id,
            })
            .collect())
    }

    fn device_id(&mut self, bdf: Bdf) -> io::Result<DeviceId> {
        Ok(self.function(bdf)?.id)
    }

    fn open_bar(&mut self, bdf: Bdf, bar: u8) -> io::Result<Box<dyn RegisterBus>> {
        let function = self.function(bdf)?;
        let bank = function.bars.get(&bar).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("BAR {bar} of {bdf} is not implemented"),
            )
        })?;
        // As the Linux layer does for a memory BAR.
        function.command.fetch_or(MEMORY_SPACE, Ordering::SeqCst);
        Ok(Box::new(bank.clone()))
    }

    fn open_ports(&mut self, range: PortRange) -> io::Result<Box<dyn RegisterBus>> {
        Ok(Box::new(
            self.ports.slice(range.first().into(), range.count().into()),
        ))
    }

    fn open_interrupt(&mut self, bdf: Bdf) -> io::Result<Box<dyn InterruptLine>> {
        Ok(Box::new(self.function(bdf)?.interrupt.clone()))
    }

    fn stop_bus_master(&mut self, bdf: Bdf) -> io::Result<()> {
        let function = self.function(bdf)?;
        function.command.fetch_and(!BUS_MASTER, Ordering::SeqCst);
        function.bus_master_stops.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn start_bus_master(&mut self, bdf: Bdf) -> io::Result<()> {
        self.function(bdf)?
            .command
            .fetch_or(BUS_MASTER, Ordering::SeqCst);
        Ok(())
    }
}
