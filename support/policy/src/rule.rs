//! One driver's rule and the decisions taken on it.

use std::fmt::Display;

use crate::{Bdf, Clipped, Denial, DeviceId, PortRange};

/// What one driver may use. Everything not listed is denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverRule {
    pub(crate) label: String,
    pub(crate) uid: u32,
    pub(crate) device: Option<DeviceId>,
    pub(crate) bdf: Option<Bdf>,
    pub(crate) bars: Vec<u8>,
    pub(crate) direct_bars: Vec<u8>,
    pub(crate) ports: Vec<PortRange>,
    pub(crate) dma_quota: u64,
    pub(crate) schemes: Vec<String>,
}

impl DriverRule {
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The unprivileged user the driver runs as; how the driver is recognised.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn device(&self) -> Option<DeviceId> {
        self.device
    }

    pub fn bdf(&self) -> Option<Bdf> {
        self.bdf
    }

    pub fn bars(&self) -> &[u8] {
        &self.bars
    }

    pub fn direct_bars(&self) -> &[u8] {
        &self.direct_bars
    }

    pub fn ports(&self) -> &[PortRange] {
        &self.ports
    }

    /// Bytes of DMA memory the driver may hold at once.
    pub fn dma_quota(&self) -> u64 {
        self.dma_quota
    }

    pub fn schemes(&self) -> &[String] {
        &self.schemes
    }

    /// May the driver use BAR `bar` of the PCI function at `bdf`? Decided
    /// without the function's ids, so before touching the hardware; the
    /// function must then pass [`check_device`](Self::check_device).
    pub fn check_bar(&self, bdf: Bdf, bar: u8) -> Result<(), Denial> {
        let located = match (self.device, self.bdf) {
            (None, None) => false,
            (_, at) => at.is_none_or(|a| a == bdf),
        };
        if !located {
            return Err(self.denial(format!("device {bdf}"), self.device_grant()));
        }
        if self.bars.contains(&bar) {
            Ok(())
        } else {
            Err(self.denial(format!("BAR {bar}"), format!("bars = {}", list(&self.bars))))
        }
    }

    /// May the driver take the interrupt of the PCI function at `bdf`? It comes
    /// with the function's registers: granted where some BAR of it is. Decided
    /// without the function's ids, like [`check_bar`](Self::check_bar).
    pub fn check_interrupt(&self, bdf: Bdf) -> Result<(), Denial> {
        let located = match (self.device, self.bdf) {
            (None, None) => false,
            (_, at) => at.is_none_or(|a| a == bdf),
        };
        if !located {
            return Err(self.denial(format!("device {bdf}"), self.device_grant()));
        }
        if self.bars.is_empty() {
            return Err(self.denial(
                format!("the interrupt of {bdf}"),
                "bars = [] (the interrupt comes with the registers)".to_owned(),
            ));
        }
        Ok(())
    }

    /// May the driver use the PCI function at `bdf`, which reports `id`?
    pub fn check_device(&self, bdf: Bdf, id: DeviceId) -> Result<(), Denial> {
        let granted = match (self.device, self.bdf) {
            (None, None) => false,
            (device, at) => device.is_none_or(|d| d == id) && at.is_none_or(|a| a == bdf),
        };
        if granted {
            Ok(())
        } else {
            Err(self.denial(format!("device {bdf} ({id})"), self.device_grant()))
        }
    }

    /// May the driver map BAR `bar` into its own address space? (Asked once
    /// [`check_bar`](Self::check_bar) granted the BAR itself.)
    pub fn check_direct_bar(&self, bar: u8) -> Result<(), Denial> {
        if self.direct_bars.contains(&bar) {
            Ok(())
        } else {
            Err(self.denial(
                format!("direct mapping of BAR {bar}"),
                format!("direct_bars = {}", list(&self.direct_bars)),
            ))
        }
    }

    /// May the driver use every port of `range`? It must lie inside one granted range.
    pub fn check_ports(&self, range: PortRange) -> Result<(), Denial> {
        if self.ports.iter().any(|granted| granted.contains(&range)) {
            Ok(())
        } else {
            Err(self.denial(
                format!("ports {range}"),
                format!("ports = {}", quoted_list(&self.ports)),
            ))
        }
    }

    /// May the driver open scheme `name`? (`mmio:` asks for itself; the
    /// replication engine for each scheme its replicas connect to, whose name
    /// comes from a replica, so the denial quotes only a prefix of it.)
    pub fn check_scheme(&self, name: &str) -> Result<(), Denial> {
        if self.schemes.iter().any(|s| s == name) {
            Ok(())
        } else {
            Err(self.denial(
                format!("scheme {}", Clipped::new(name)),
                format!("schemes = {}", quoted_list(&self.schemes)),
            ))
        }
    }

    fn device_grant(&self) -> String {
        match (self.device, self.bdf) {
            (None, None) => "no `device` or `bdf`".to_owned(),
            (Some(device), None) => format!("device = \"{device}\""),
            (None, Some(bdf)) => format!("bdf = \"{bdf}\""),
            (Some(device), Some(bdf)) => format!("device = \"{device}\", bdf = \"{bdf}\""),
        }
    }

    fn denial(&self, resource: String, granted: String) -> Denial {
        Denial::NotGranted {
            driver: self.label.clone(),
            resource,
            granted,
        }
    }
}

/// `[0, 2]`, as the policy file writes it.
fn list(items: &[u8]) -> String {
    format!("{items:?}")
}

/// `["a", "b"]`, as the policy file writes it.
fn quoted_list<T: Display>(items: &[T]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("\"{item}\"")).collect();
    format!("[{}]", quoted.join(", "))
}
