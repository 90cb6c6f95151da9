//! The messages of Redox `pcid`'s per-function channel that `mmio:` uses.
//!
//! A client opens `/scheme/pci/<function>/channel` (which also makes pcid
//! enable memory and I/O decoding and bus mastering), writes a request, and
//! reads an 8-byte little-endian length followed by the response. Both are
//! `bincode` 1 encodings (fixed-width little-endian integers, `u32` enum
//! variant indices, `u8` option tags) of pcid's `PcidClientRequest` and
//! `PcidClientResponse`. The layout below follows pcid's `driver_interface`
//! of late 2025, where `EnableDevice` is request 0 and `RequestConfig` request
//! 1; the variant checks turn a different pcid into an error, not a misread.
//!
//! Only `RequestConfig` is needed: its answer holds the function's address,
//! its six BARs (address and size) and its vendor and device ids.
//!
//! Listing the functions takes none of them: `/scheme/pci` names one folder per
//! function ([`function_name`]), and root reads any function's configuration
//! space through `/scheme/pci/access` with a call whose two metadata words are
//! a read and the address and offset packed as [`config_read`] builds them.

use std::fmt;

use driver_policy::{Bdf, DeviceId};

/// `PcidClientRequest::RequestConfig`.
pub const REQUEST_CONFIG: [u8; 4] = 1u32.to_le_bytes();

/// `PcidClientResponse::Config`.
const RESPONSE_CONFIG: u32 = 1;

/// The folder pcid lists the functions in.
pub const PCI_ROOT: &str = "/scheme/pci";

/// The handle root reads configuration space through, for any function.
pub const CONFIG_ACCESS_PATH: &str = "/scheme/pci/access";

/// The first metadata word of a configuration-space read on the access handle
/// (2 writes).
const CONFIG_READ: u64 = 1;

/// The metadata of a read of configuration space at `offset` of the function
/// at `bdf` on the access handle.
pub fn config_read(bdf: Bdf, offset: u16) -> [u64; 2] {
    [CONFIG_READ, config_address(bdf, offset)]
}

/// The largest response pcid sends (its own client's limit).
pub const MAX_RESPONSE: u64 = 0x10_0000;

/// One BAR as pcid reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcidBar {
    None,
    Memory {
        address: u64,
        size: u64,
    },
    /// pcid reports an I/O BAR's base port but not its size.
    Port(u16),
}

/// What `RequestConfig` tells about a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionConfig {
    pub bdf: Bdf,
    pub bars: [PcidBar; 6],
    pub id: DeviceId,
    /// The legacy (INTx) interrupt line pcid routed, as `irq:` numbers it.
    pub legacy_irq: Option<u8>,
}

/// A response that is not the expected message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PcidWireError(String);

impl fmt::Display for PcidWireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unexpected pcid response: {}", self.0)
    }
}

impl std::error::Error for PcidWireError {}

/// The path of the channel of the function at `bdf` (pcid names functions
/// `SS-BB--DD.F`: its address with `:` written `--`).
pub fn channel_path(bdf: Bdf) -> String {
    format!(
        "{PCI_ROOT}/{:02x}-{:02x}--{:02x}.{}/channel",
        bdf.domain, bdf.bus, bdf.device, bdf.function
    )
}

/// The function a folder of `/scheme/pci` names (`00-00--03.0`, as
/// [`channel_path`] writes it); `None` for anything else (`access`).
pub fn function_name(name: &str) -> Option<Bdf> {
    let (domain, rest) = name.split_once('-')?;
    let (bus, rest) = rest.split_once("--")?;
    let (device, function) = rest.split_once('.')?;
    let hex = |field: &str, digits: usize| {
        (!field.is_empty() && field.len() <= digits && field.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(field, 16).ok())
            .flatten()
    };
    format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        hex(domain, 4)?,
        hex(bus, 2)?,
        hex(device, 2)?,
        hex(function, 1)?
    )
    .parse()
    .ok()
}

/// The second metadata word of a configuration-space access: the segment at
/// bit 28, the bus at 20, the device at 15, the function at 12, the offset
/// (0-4095) below.
fn config_address(bdf: Bdf, offset: u16) -> u64 {
    u64::from(bdf.domain) << 28
        | u64::from(bdf.bus) << 20
        | u64::from(bdf.device) << 15
        | u64::from(bdf.function) << 12
        | u64::from(offset & 0xfff)
}

/// The ids in the first dword of configuration space (vendor in the low half).
pub fn device_id_of(dword: [u8; 4]) -> DeviceId {
    DeviceId {
        vendor: u16::from_le_bytes([dword[0], dword[1]]),
        device: u16::from_le_bytes([dword[2], dword[3]]),
    }
}

/// The length of the response that follows the 8-byte header.
pub fn response_len(header: [u8; 8]) -> Result<usize, PcidWireError> {
    let len = u64::from_le_bytes(header);
    if len > MAX_RESPONSE {
        return Err(PcidWireError(format!("length {len} over {MAX_RESPONSE}")));
    }
    Ok(len as usize)
}

/// Decodes the response to [`REQUEST_CONFIG`].
pub fn decode_config(response: &[u8]) -> Result<FunctionConfig, PcidWireError> {
    let mut reader = Reader(response);
    let variant = reader.u32()?;
    if variant != RESPONSE_CONFIG {
        return Err(PcidWireError(format!(
            "variant {variant}, want Config ({RESPONSE_CONFIG})"
        )));
    }
    let bdf = Bdf {
        domain: reader.u16()?,
        bus: reader.u8()?,
        device: reader.u8()?,
        function: reader.u8()?,
    };
    let mut bars = [PcidBar::None; 6];
    for bar in &mut bars {
        *bar = match reader.u32()? {
            0 => PcidBar::None,
            1 => PcidBar::Memory {
                address: reader.u32()?.into(),
                size: reader.u32()?.into(),
            },
            2 => PcidBar::Memory {
                address: reader.u64()?,
                size: reader.u64()?,
            },
            3 => PcidBar::Port(reader.u16()?),
            other => return Err(PcidWireError(format!("BAR variant {other}"))),
        };
    }
    // legacy_interrupt_line: Option<{ irq: u8, phandled: Option<(u32, [u32; 3], usize)> }>
    let mut legacy_irq = None;
    if reader.option()? {
        legacy_irq = Some(reader.u8()?);
        if reader.option()? {
            reader.skip(4 + 3 * 4 + 8)?;
        }
    }
    let id = DeviceId {
        vendor: reader.u16()?,
        device: reader.u16()?,
    };
    Ok(FunctionConfig {
        bdf,
        bars,
        id,
        legacy_irq,
    })
}

/// A cursor over bincode fixed-width little-endian fields.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], PcidWireError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| PcidWireError("truncated".into()))?;
        self.0 = rest;
        Ok(*head)
    }

    fn skip(&mut self, n: usize) -> Result<(), PcidWireError> {
        self.0 = self
            .0
            .get(n..)
            .ok_or_else(|| PcidWireError("truncated".into()))?;
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, PcidWireError> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, PcidWireError> {
        self.take().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, PcidWireError> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, PcidWireError> {
        self.take().map(u64::from_le_bytes)
    }

    fn option(&mut self) -> Result<bool, PcidWireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(PcidWireError(format!("option tag {tag}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pcid's answer for QEMU's e1000 at 00:03.0: BAR 0 memory, BAR 1 ports,
    /// IRQ 11 without a phandle.
    fn e1000_config() -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(1u32.to_le_bytes()); // Config
        bytes.extend(0u16.to_le_bytes()); // segment
        bytes.extend([0x00, 0x03, 0x00]); // bus, device, function
        bytes.extend(1u32.to_le_bytes()); // BAR 0: Memory32
        bytes.extend(0xfebc_0000u32.to_le_bytes());
        bytes.extend(0x2_0000u32.to_le_bytes());
        bytes.extend(3u32.to_le_bytes()); // BAR 1: Port
        bytes.extend(0xc000u16.to_le_bytes());
        bytes.extend(2u32.to_le_bytes()); // BAR 2: Memory64
        bytes.extend(0x1_0000_0000u64.to_le_bytes());
        bytes.extend(0x4000u64.to_le_bytes());
        for _ in 3..6 {
            bytes.extend(0u32.to_le_bytes()); // None
        }
        bytes.extend([1, 11, 0]); // Some(irq 11, phandled None)
        bytes.extend(0x8086u16.to_le_bytes());
        bytes.extend(0x100eu16.to_le_bytes());
        bytes.extend([0x02, 0x00, 0x00, 0x03]); // class, subclass, interface, revision
        bytes
    }

    #[test]
    fn decodes_a_config_response() {
        let config = decode_config(&e1000_config()).unwrap();
        assert_eq!(config.bdf, "00:03.0".parse().unwrap());
        assert_eq!(
            config.id,
            DeviceId {
                vendor: 0x8086,
                device: 0x100e
            }
        );
        assert_eq!(
            config.bars[0],
            PcidBar::Memory {
                address: 0xfebc_0000,
                size: 0x2_0000
            }
        );
        assert_eq!(config.bars[1], PcidBar::Port(0xc000));
        assert_eq!(
            config.bars[2],
            PcidBar::Memory {
                address: 0x1_0000_0000,
                size: 0x4000
            }
        );
        assert_eq!(config.bars[5], PcidBar::None);
        assert_eq!(config.legacy_irq, Some(11));
    }

    #[test]
    fn a_function_without_a_legacy_interrupt_has_none() {
        let mut bytes = e1000_config();
        let irq = bytes.len() - 11;
        bytes.splice(irq..irq + 3, [0]);
        let config = decode_config(&bytes).unwrap();
        assert_eq!(config.legacy_irq, None);
        assert_eq!(config.id.device, 0x100e);
    }

    #[test]
    fn skips_a_phandled_interrupt() {
        let mut bytes = e1000_config();
        let irq = bytes.len() - 11;
        bytes.splice(irq..irq + 3, [1, 11, 1].into_iter().chain([0xaa; 24]));
        let config = decode_config(&bytes).unwrap();
        assert_eq!(
            config.id,
            DeviceId {
                vendor: 0x8086,
                device: 0x100e
            }
        );
        assert_eq!(config.legacy_irq, Some(11));
    }

    #[test]
    fn refuses_other_messages_and_garbage() {
        let mut other = e1000_config();
        other[0] = 0; // EnabledDevice
        assert_eq!(
            decode_config(&other).unwrap_err().to_string(),
            "unexpected pcid response: variant 0, want Config (1)"
        );
        let mut bad_bar = e1000_config();
        bad_bar[9] = 7;
        assert_eq!(
            decode_config(&bad_bar).unwrap_err().to_string(),
            "unexpected pcid response: BAR variant 7"
        );
        let full = e1000_config();
        for len in 0..full.len() - 4 {
            assert!(decode_config(&full[..len]).is_err(), "truncated at {len}");
        }
    }

    #[test]
    fn requests_and_lengths() {
        assert_eq!(REQUEST_CONFIG, [1, 0, 0, 0]);
        assert_eq!(
            channel_path("0000:00:03.0".parse().unwrap()),
            "/scheme/pci/00-00--03.0/channel"
        );
        assert_eq!(response_len(57u64.to_le_bytes()), Ok(57));
        let bdf: Bdf = "0000:00:03.0".parse().unwrap();
        assert_eq!(function_name("00-00--03.0"), Some(bdf));
        let far: Bdf = "abcd:fe:1f.7".parse().unwrap();
        assert_eq!(function_name("abcd-fe--1f.7"), Some(far));
        for other in [
            "access",
            "00-00--03",
            "00:00:03.0",
            "00-00--20.0",
            "00-00--03.8",
            "-00--03.0",
        ] {
            assert_eq!(function_name(other), None, "{other}");
        }
        assert_eq!(config_read(bdf, 0), [1, 3 << 15]);
        assert_eq!(
            config_read(far, 0x104),
            [1, 0xabcd << 28 | 0xfe << 20 | 0x1f << 15 | 7 << 12 | 0x104]
        );
        assert!(CONFIG_ACCESS_PATH.starts_with(PCI_ROOT));
        assert_eq!(
            device_id_of([0x86, 0x80, 0x0e, 0x10]),
            DeviceId {
                vendor: 0x8086,
                device: 0x100e
            }
        );
        assert!(response_len((MAX_RESPONSE + 1).to_le_bytes()).is_err());
    }
}
