//! A machine made of software register banks, for host tests of the scheme.

use std::collections::BTreeMap;
use std::io;

use driver_policy::{Bdf, DeviceId, PortRange};

use super::Hardware;
use crate::bus::{RegisterBus, SoftBank};

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
        });
        function.id = id;
        function.bars.insert(bar, bank);
    }

    /// The port space that [`open_ports`](Hardware::open_ports) slices.
    pub fn ports(&self) -> &SoftBank {
        &self.ports
    }

    fn function(&self, bdf: Bdf) -> io::Result<&SoftFunction> {
        self.functions.get(&bdf).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no PCI function {bdf}"))
        })
    }
}

impl Hardware for SoftMachine {
    fn device_id(&mut self, bdf: Bdf) -> io::Result<DeviceId> {
        Ok(self.function(bdf)?.id)
    }

    fn open_bar(&mut self, bdf: Bdf, bar: u8) -> io::Result<Box<dyn RegisterBus>> {
        let bank = self.function(bdf)?.bars.get(&bar).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("BAR {bar} of {bdf} is not implemented"),
            )
        })?;
        Ok(Box::new(bank.clone()))
    }

    fn open_ports(&mut self, range: PortRange) -> io::Result<Box<dyn RegisterBus>> {
        Ok(Box::new(
            self.ports.slice(range.first().into(), range.count().into()),
        ))
    }
}
