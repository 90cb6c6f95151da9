//! The driver isolation policy (MINIX 3 style, default deny).
//!
//! A TOML file holds one rule per driver label: the uid the driver runs as (how
//! a caller is recognised), its PCI device, the BARs it may use and which of
//! them it may map directly, its I/O port ranges, its DMA quota and the schemes
//! it may open. Whatever a rule does not grant is denied.
//!
//! ```toml
//! [driver.e1000]
//! uid = 1001
//! device = "8086:100e"          # or bdf = "0000:00:03.0", or both
//! bars = [0]
//! direct_bars = [0]
//! dma_quota = "4M"
//! schemes = ["mmio", "dma", "network"]
//!
//! [driver.uart]
//! uid = 1002
//! ports = ["0x2f8-0x2ff"]
//! ```
//!
//! A caller is resolved to its rule by uid ([`Policy::resolve`]). uid 0 (the
//! supervisor) is trusted to act for a driver it names, e.g. with a `label=`
//! query when it opens a resource on the driver's behalf; it holds no grant of
//! its own.
//!
//! `schemes` is enforced by the schemes themselves and by the replication
//! engine: a scheme daemon refuses a driver whose rule does not list its name
//! ([`DriverRule::check_scheme`]; `mmio:` opens no registers without `mmio`),
//! and `romain replicate`, given the rule's list by `romain serve --policy`,
//! lets the replicas connect to no other scheme. An absent `schemes` key
//! grants no scheme.
//!
//! Labels and names in a [`Denial`] come from callers and are logged; they are
//! quoted [`Clipped`].

mod clipped;
mod denial;
mod error;
mod parse;
mod pci;
mod ports;
mod rule;
mod size;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

pub use clipped::{Clipped, CLIPPED_CHARS};
pub use denial::Denial;
pub use error::{PolicyError, ValueError};
pub use pci::{Bdf, DeviceId, PciFunction};
pub use ports::PortRange;
pub use rule::DriverRule;
pub use size::parse_size;

/// The uid trusted to act for any driver.
pub const SUPERVISOR_UID: u32 = 0;

/// A validated policy: the rules, by label and by uid.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: BTreeMap<String, DriverRule>,
    label_of_uid: BTreeMap<u32, String>,
}

impl Policy {
    /// Reads and validates the policy file at `path`.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        text.parse()
    }

    /// The rule of driver `label`.
    pub fn driver(&self, label: &str) -> Option<&DriverRule> {
        self.rules.get(label)
    }

    /// The rule of the driver that runs as `uid`.
    pub fn driver_for_uid(&self, uid: u32) -> Option<&DriverRule> {
        self.label_of_uid
            .get(&uid)
            .and_then(|label| self.driver(label))
    }

    /// All rules, ordered by label.
    pub fn drivers(&self) -> impl Iterator<Item = &DriverRule> {
        self.rules.values()
    }

    /// The rule a caller acts under. A driver acts under its own rule (naming
    /// its own label is allowed, naming another is not); uid 0 acts under the
    /// rule of the driver it names and has none when it names none.
    pub fn resolve(&self, uid: u32, label: Option<&str>) -> Result<&DriverRule, Denial> {
        match (uid, label) {
            (SUPERVISOR_UID, None) => Err(Denial::RootWithoutLabel),
            (SUPERVISOR_UID, Some(label)) => {
                self.driver(label).ok_or_else(|| Denial::UnknownLabel {
                    label: label.to_owned(),
                })
            }
            (uid, label) => {
                let rule = self.driver_for_uid(uid).ok_or(Denial::UnknownUid { uid })?;
                match label {
                    Some(label) if label != rule.label() => Err(Denial::ForeignLabel {
                        uid,
                        label: label.to_owned(),
                    }),
                    _ => Ok(rule),
                }
            }
        }
    }

    /// The DMA quota, in bytes, of the caller `uid` (acting for `label`, see
    /// [`resolve`](Self::resolve)).
    pub fn dma_quota(&self, uid: u32, label: Option<&str>) -> Result<u64, Denial> {
        self.resolve(uid, label).map(DriverRule::dma_quota)
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    /// Parses and validates policy text.
    fn from_str(text: &str) -> Result<Self, PolicyError> {
        let rules = parse::parse_rules(text)?;
        let label_of_uid = rules
            .iter()
            .map(|rule| (rule.uid(), rule.label().to_owned()))
            .collect();
        let rules = rules
            .into_iter()
            .map(|rule| (rule.label().to_owned(), rule))
            .collect();
        Ok(Self {
            rules,
            label_of_uid,
        })
    }
}
