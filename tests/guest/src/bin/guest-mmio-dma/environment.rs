//! What the tests know about the guest before they start: the drivers of the guest's
//! policy (their uids, grants and quota), where the devices are, and the MAC address
//! QEMU gave the e1000.

use std::path::Path;

use driver_policy::{Bdf, DriverRule, Policy, PortRange};
use guest_harness::guest::pci;
use guest_harness::guest::report::StepResult;
use guest_harness::protocol::{E1000_DRIVER_LABEL, UART_DRIVER_LABEL};
use mmio_scheme::open_path::RegisterTarget;

#[derive(Debug, Clone)]
pub struct Environment {
    pub mac: [u8; 6],
    pub e1000: Bdf,
    /// A PCI function that is not the e1000, which its driver may not open.
    pub other_function: Bdf,
    pub e1000_uid: u32,
    pub e1000_dma_quota: u64,
    pub uart_uid: u32,
    /// The ports of COM2, as the uart driver's rule grants them.
    pub com2: PortRange,
    /// A uid the policy has no rule for.
    pub stranger_uid: u32,
}

impl Environment {
    pub fn discover(policy: &Path, pci_devices: &Path, mac: [u8; 6]) -> StepResult<Environment> {
        let policy = Policy::load(policy)?;
        let e1000 = rule(&policy, E1000_DRIVER_LABEL)?;
        let uart = rule(&policy, UART_DRIVER_LABEL)?;
        let e1000_id = e1000
            .device()
            .ok_or("the e1000 rule names no vendor:device")?;
        let functions = pci::list(pci_devices)?;
        let nic = functions.iter().find(|function| function.id == e1000_id);
        let other = functions.iter().find(|function| function.id != e1000_id);
        let com2 = *uart
            .ports()
            .first()
            .ok_or("the uart rule grants no ports")?;
        let stranger_uid = policy.drivers().map(DriverRule::uid).max().unwrap_or(1000) + 1;
        Ok(Environment {
            mac,
            e1000: nic.ok_or(format!("no PCI function {e1000_id}"))?.bdf,
            other_function: other.ok_or("no PCI function but the e1000")?.bdf,
            e1000_uid: e1000.uid(),
            e1000_dma_quota: e1000.dma_quota(),
            uart_uid: uart.uid(),
            com2,
            stranger_uid,
        })
    }

    /// BAR `bar` of the e1000.
    pub fn e1000_bar(&self, bar: u8) -> RegisterTarget {
        RegisterTarget::Bar {
            bdf: self.e1000,
            bar,
        }
    }

    pub fn com2_ports(&self) -> RegisterTarget {
        RegisterTarget::Ports(self.com2)
    }
}

fn rule<'a>(policy: &'a Policy, label: &str) -> StepResult<&'a DriverRule> {
    Ok(policy
        .driver(label)
        .ok_or(format!("the guest policy has no driver {label}"))?)
}
