//! PCI identities a rule names: a function's address (BDF) and its vendor:device pair.

use std::fmt;
use std::str::FromStr;

use crate::ValueError;

/// A PCI function address, `domain:bus:device.function` (`0000:00:03.0`); the
/// domain may be left out (`00:03.0`), as `lspci` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    /// Highest device number on a bus (5 bits).
    pub const MAX_DEVICE: u8 = 0x1f;
    /// Highest function number of a device (3 bits).
    pub const MAX_FUNCTION: u8 = 7;
}

impl FromStr for Bdf {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::new(s, "is not a PCI address (want [dddd:]bb:dd.f, hex)");
        let (rest, function) = s.rsplit_once('.').ok_or_else(bad)?;
        let mut fields = rest.rsplit(':');
        let device = fields.next().ok_or_else(bad)?;
        let bus = fields.next().ok_or_else(bad)?;
        let domain = fields.next().unwrap_or("0000");
        if fields.next().is_some() {
            return Err(bad());
        }
        let bdf = Bdf {
            domain: hex_field(domain, 4).ok_or_else(bad)?,
            bus: hex_field(bus, 2).ok_or_else(bad)?,
            device: hex_field(device, 2).ok_or_else(bad)?,
            function: hex_field(function, 1).ok_or_else(bad)?,
        };
        if bdf.device > Self::MAX_DEVICE || bdf.function > Self::MAX_FUNCTION {
            return Err(ValueError::new(
                s,
                "is not a PCI address (device 00-1f, function 0-7)",
            ));
        }
        Ok(bdf)
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

/// A PCI vendor and device id pair, `8086:100e`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceId {
    pub vendor: u16,
    pub device: u16,
}

impl FromStr for DeviceId {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::new(s, "is not a PCI device id (want vvvv:dddd, hex)");
        let (vendor, device) = s.split_once(':').ok_or_else(bad)?;
        Ok(DeviceId {
            vendor: hex_field(vendor, 4).ok_or_else(bad)?,
            device: hex_field(device, 4).ok_or_else(bad)?,
        })
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

/// A PCI function present on a machine: its address and what it is. As text
/// (what `mmio:pci` lists, a line each): `0000:00:03.0 8086:100e`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciFunction {
    pub bdf: Bdf,
    pub id: DeviceId,
}

impl FromStr for PciFunction {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let (bdf, id) = s.split_once(' ').ok_or_else(|| {
            ValueError::new(s, "is not a PCI function (want <address> <vendor:device>)")
        })?;
        Ok(PciFunction {
            bdf: bdf.parse()?,
            id: id.parse()?,
        })
    }
}

impl fmt::Display for PciFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.bdf, self.id)
    }
}

/// A hex field of at most `max_digits` digits (no sign, no prefix).
fn hex_field<T: TryFrom<u32>>(s: &str, max_digits: usize) -> Option<T> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16)
        .ok()
        .and_then(|v| T::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pci_function_reads_back_as_it_is_written() {
        let function: PciFunction = "00:03.0 8086:100E".parse().unwrap();
        assert_eq!(function.to_string(), "0000:00:03.0 8086:100e");
        assert_eq!(function.to_string().parse(), Ok(function));
        for bad in [
            "",
            "0000:00:03.0",
            "0000:00:03.0  8086:100e",
            "8086:100e 00:03.0",
        ] {
            assert!(bad.parse::<PciFunction>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bdf_long_and_short_forms() {
        let long: Bdf = "0000:00:03.0".parse().unwrap();
        let short: Bdf = "00:03.0".parse().unwrap();
        assert_eq!(long, short);
        assert_eq!(
            long,
            Bdf {
                domain: 0,
                bus: 0,
                device: 3,
                function: 0
            }
        );
        let upper: Bdf = "ABCD:Fe:1F.7".parse().unwrap();
        assert_eq!(upper.to_string(), "abcd:fe:1f.7");
    }

    #[test]
    fn bdf_rejects() {
        for bad in [
            "",
            "00:03",
            "0:0:0:0.0",
            "00:20.0",
            "00:03.8",
            "00:03.",
            "000:00:003.0",
            "-0:03.0",
            "00:03.0 ",
            "12345:00:03.0",
        ] {
            let err = bad.parse::<Bdf>().unwrap_err().to_string();
            assert!(err.contains("is not a PCI address"), "{bad}: {err}");
        }
        assert_eq!(
            "00:20.0".parse::<Bdf>().unwrap_err().to_string(),
            "`00:20.0` is not a PCI address (device 00-1f, function 0-7)"
        );
    }

    #[test]
    fn device_id() {
        let id: DeviceId = "8086:100E".parse().unwrap();
        assert_eq!(
            id,
            DeviceId {
                vendor: 0x8086,
                device: 0x100e
            }
        );
        assert_eq!(id.to_string(), "8086:100e");
        for bad in [
            "8086",
            "8086:",
            "80861:100e",
            "8086:100e:1",
            "x086:100e",
            "+086:100e",
        ] {
            assert_eq!(
                bad.parse::<DeviceId>().unwrap_err().to_string(),
                format!("`{bad}` is not a PCI device id (want vvvv:dddd, hex)")
            );
        }
    }
}
