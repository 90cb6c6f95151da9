//! The paths `mmio:` serves, as its `openat` receives them:
//!
//! - `pci/<bdf>/bar<N>`: BAR `N` (0-5) of the PCI function at `<bdf>`
//!   (`0000:00:03.0` or `00:03.0`);
//! - `port/<first>-<last>`: the I/O ports `first..=last` (hex, `0x2f8-0x2ff`);
//! - `pci/<bdf>/irq`: the interrupt of the PCI function at `<bdf>`;
//! - `pci`: the PCI functions the opener's rule grants, a line each
//!   (`0000:00:03.0 8086:100e`): how a driver whose rule names its device by
//!   id finds where the device is;
//! - `status`: counters and open handles, as text.
//!
//! A register or interrupt path may end in `?label=<driver>`: uid 0 (the supervisor) opens
//! on behalf of that driver; anyone else may name only its own label.

use std::fmt;

use driver_policy::{Bdf, Clipped, PortRange};
use syscall::error::{Error, EINVAL, ENOENT};

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Status,
    /// The list of the PCI functions the opener's rule grants.
    Functions,
    Registers(RegisterTarget),
    /// The interrupt of the PCI function at `bdf`.
    Interrupt {
        bdf: Bdf,
    },
}

/// Registers a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterTarget {
    Bar { bdf: Bdf, bar: u8 },
    Ports(PortRange),
}

/// A parsed open path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenRequest<'a> {
    pub target: Target,
    /// The driver the opener acts for (`?label=`).
    pub label: Option<&'a str>,
}

/// Why a path cannot be opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// The path names nothing this scheme serves (ENOENT).
    NoSuchResource,
    /// The query is malformed (EINVAL).
    BadQuery(String),
}

impl PathError {
    pub fn errno(&self) -> Error {
        Error::new(match self {
            Self::NoSuchResource => ENOENT,
            Self::BadQuery(_) => EINVAL,
        })
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchResource => f.write_str(
                "no such resource (want pci/<bdf>/bar<N>, pci/<bdf>/irq, pci, port/<first>-<last> or status)",
            ),
            Self::BadQuery(why) => write!(f, "bad query: {why}"),
        }
    }
}

impl<'a> OpenRequest<'a> {
    pub fn parse(path: &'a str) -> Result<Self, PathError> {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        let target = parse_target(path.trim_matches('/')).ok_or(PathError::NoSuchResource)?;
        let label = query.map(parse_label).transpose()?;
        if target == Target::Status && label.is_some() {
            return Err(PathError::BadQuery("status takes no label".into()));
        }
        Ok(Self { target, label })
    }
}

fn parse_target(path: &str) -> Option<Target> {
    let mut parts = path.split('/');
    let target = match (parts.next()?, parts.next(), parts.next()) {
        ("status", None, None) => Target::Status,
        ("pci", None, None) => Target::Functions,
        ("port", Some(range), None) => {
            Target::Registers(RegisterTarget::Ports(range.parse().ok()?))
        }
        ("pci", Some(bdf), Some("irq")) => Target::Interrupt {
            bdf: bdf.parse().ok()?,
        },
        ("pci", Some(bdf), Some(bar)) => Target::Registers(RegisterTarget::Bar {
            bdf: bdf.parse().ok()?,
            bar: parse_bar(bar)?,
        }),
        _ => return None,
    };
    parts.next().is_none().then_some(target)
}

fn parse_bar(name: &str) -> Option<u8> {
    match name.strip_prefix("bar")?.as_bytes() {
        [digit @ b'0'..=b'5'] => Some(digit - b'0'),
        _ => None,
    }
}

fn parse_label(query: &str) -> Result<&str, PathError> {
    let mut label = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("label", value)) if !value.is_empty() && label.is_none() => label = Some(value),
            Some(("label", "")) => return Err(PathError::BadQuery("empty label".into())),
            Some(("label", _)) => return Err(PathError::BadQuery("label given twice".into())),
            // The message is logged: quote only the start of what the client sent.
            _ => {
                return Err(PathError::BadQuery(format!(
                    "unknown parameter `{}` (only label=<driver>)",
                    Clipped::new(pair)
                )))
            }
        }
    }
    label.ok_or_else(|| PathError::BadQuery("empty query".into()))
}

impl fmt::Display for Target {
    /// The canonical path, without the scheme.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status => f.write_str("status"),
            Self::Functions => f.write_str("pci"),
            Self::Registers(registers) => registers.fmt(f),
            Self::Interrupt { bdf } => write!(f, "pci/{bdf}/irq"),
        }
    }
}

impl fmt::Display for RegisterTarget {
    /// The canonical path, without the scheme.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bar { bdf, bar } => write!(f, "pci/{bdf}/bar{bar}"),
            Self::Ports(range) => write!(f, "port/{range}"),
        }
    }
}

impl fmt::Display for OpenRequest<'_> {
    /// The path to open, without the scheme (`pci/0000:00:03.0/bar0?label=e1000`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.target)?;
        match self.label {
            Some(label) => write!(f, "?label={label}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(bdf: &str, bar: u8) -> Target {
        Target::Registers(RegisterTarget::Bar {
            bdf: bdf.parse().unwrap(),
            bar,
        })
    }

    #[test]
    fn parses_targets() {
        let parse = |p| OpenRequest::parse(p).map(|r| (r.target, r.label));
        assert_eq!(
            parse("pci/0000:00:03.0/bar0"),
            Ok((bar("00:03.0", 0), None))
        );
        assert_eq!(parse("/pci/00:03.0/bar5/"), Ok((bar("00:03.0", 5), None)));
        assert_eq!(
            parse("port/0x2f8-0x2ff"),
            Ok((
                Target::Registers(RegisterTarget::Ports(PortRange::new(0x2f8, 0x2ff).unwrap())),
                None
            ))
        );
        assert_eq!(parse("status"), Ok((Target::Status, None)));
        assert_eq!(parse("/pci/"), Ok((Target::Functions, None)));
        assert_eq!(
            parse("pci?label=e1000"),
            Ok((Target::Functions, Some("e1000")))
        );
        assert_eq!(Target::Functions.to_string(), "pci");
        assert_eq!(
            parse("pci/00:03.0/bar0?label=e1000"),
            Ok((bar("00:03.0", 0), Some("e1000")))
        );
        assert_eq!(
            parse("port/0x2f8-0x2ff?label=uart").unwrap().1,
            Some("uart")
        );
        let irq = Target::Interrupt {
            bdf: "00:03.0".parse().unwrap(),
        };
        assert_eq!(parse("pci/00:03.0/irq"), Ok((irq, None)));
        assert_eq!(
            parse("pci/00:03.0/irq?label=e1000"),
            Ok((irq, Some("e1000")))
        );
        assert_eq!(irq.to_string(), "pci/0000:00:03.0/irq");
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            "",
            "/",
            "pcix",
            "pci/00:03.0",
            "pci/00:03.0/bar6",
            "pci/00:03.0/bar",
            "pci/00:03.0/bar01",
            "pci/00:03.0/rom",
            "pci/00:03.0/irq0",
            "pci/00:03.0/irq/x",
            "pci/x/irq",
            "pci/00:3.0.1/bar0",
            "pci/00:03.0/bar0/x",
            "port",
            "port/0x2ff-0x2f8",
            "port/2f8-2ff",
            "status/x",
            "statusx",
            "dma",
            "../pci/00:03.0/bar0",
        ] {
            assert_eq!(
                OpenRequest::parse(path),
                Err(PathError::NoSuchResource),
                "{path:?}"
            );
        }
        assert_eq!(PathError::NoSuchResource.errno(), Error::new(ENOENT));
    }

    #[test]
    fn bad_queries_are_invalid() {
        let error = |path| OpenRequest::parse(path).unwrap_err().to_string();
        assert_eq!(error("pci/00:03.0/bar0?label="), "bad query: empty label");
        assert_eq!(
            error("pci/00:03.0/bar0?"),
            "bad query: unknown parameter `` (only label=<driver>)"
        );
        assert_eq!(
            error("pci/00:03.0/bar0?label=a&label=b"),
            "bad query: label given twice"
        );
        assert_eq!(
            error("pci/00:03.0/bar0?replicas=3"),
            "bad query: unknown parameter `replicas=3` (only label=<driver>)"
        );
        assert_eq!(
            error("status?label=e1000"),
            "bad query: status takes no label"
        );
        assert_eq!(
            OpenRequest::parse("status?x").unwrap_err().errno(),
            Error::new(EINVAL)
        );
    }

    #[test]
    fn prints_canonical_paths() {
        let request = OpenRequest::parse("/pci/00:03.0/bar0?label=e1000").unwrap();
        assert_eq!(request.to_string(), "pci/0000:00:03.0/bar0?label=e1000");
        assert_eq!(request.target.to_string(), "pci/0000:00:03.0/bar0");
        assert_eq!(
            OpenRequest::parse("port/0x2F8-0x2FF").unwrap().to_string(),
            "port/0x2f8-0x2ff"
        );
    }
}
