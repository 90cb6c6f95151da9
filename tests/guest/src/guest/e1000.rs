//! The e1000 (82540EM) registers the guest programs use: the driver's own
//! definitions (`e1000::regs`, named as in the Software Developer's Manual), so the
//! tests and the driver cannot disagree about a register.

pub use e1000::regs::{
    address_from_eeprom, address_from_ral_rah, rah, ral, BAR0_SIZE, EEPROM_ETHERNET_ADDRESS_WORDS,
    EERD, EERD_ADDR_SHIFT, EERD_DATA_SHIFT, EERD_DONE, EERD_START, RAH_AV, STATUS, STATUS_LU, TCTL,
    TCTL_EN, TCTL_PSP, TDBAH, TDBAL, TDH, TDLEN, TDT,
};

use std::path::Path;

use driver_policy::{Bdf, Policy};

use crate::guest::pci;
use crate::guest::report::StepResult;
use crate::protocol::E1000_DRIVER_LABEL;

/// The e1000 driver of the guest policy: the uid it runs as, and where its NIC is.
pub struct E1000Driver {
    pub uid: u32,
    pub nic: Bdf,
}

impl E1000Driver {
    /// Reads the policy's e1000 rule and finds its device among the PCI functions.
    pub fn find(policy: &Path, pci_devices: &Path) -> StepResult<Self> {
        let policy = Policy::load(policy)?;
        let rule = policy
            .driver(E1000_DRIVER_LABEL)
            .ok_or("the guest policy has no e1000 driver")?;
        let id = rule
            .device()
            .ok_or("the e1000 rule names no vendor:device")?;
        Ok(Self {
            uid: rule.uid(),
            nic: pci::find(pci_devices, id)?,
        })
    }
}
