//! Giving a guest interface its address and default route with busybox `ip`, the
//! same way for the TAP device over our driver and for Linux's own `eth0`.

use std::fmt;
use std::net::Ipv4Addr;
use std::process::Command;
use std::str::FromStr;

/// The guest's address on QEMU's user network, which QEMU's port forwards reach.
pub const QEMU_GUEST_ADDRESS: &str = "10.0.2.15/24";
/// QEMU's user-network gateway.
pub const QEMU_GATEWAY: &str = "10.0.2.2";

/// An IPv4 address with its prefix length, as `ip addr add` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub address: Ipv4Addr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("{text:?} is not an address with a prefix, like 10.0.2.15/24");
        let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
        let address = address.parse().map_err(|_| invalid())?;
        let prefix = prefix
            .parse()
            .ok()
            .filter(|&p| p <= 32)
            .ok_or_else(invalid)?;
        Ok(Cidr { address, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// How one interface is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub name: String,
    /// The Ethernet address to give it, if it must differ from its own (a TAP
    /// device takes the address of the NIC it stands in for).
    pub mac: Option<String>,
    pub address: Cidr,
    pub gateway: Ipv4Addr,
}

impl InterfaceConfig {
    /// The `ip` invocations, in order: address, bring up, route.
    pub fn commands(&self) -> Vec<Vec<String>> {
        let name = self.name.as_str();
        let mut commands = Vec::new();
        if let Some(mac) = &self.mac {
            commands.push(words(&["link", "set", "dev", name, "address", mac]));
        }
        let address = self.address.to_string();
        commands.push(words(&["addr", "add", &address, "dev", name]));
        commands.push(words(&["link", "set", "dev", name, "up"]));
        let gateway = self.gateway.to_string();
        commands.push(words(&[
            "route", "add", "default", "via", &gateway, "dev", name,
        ]));
        commands
    }

    /// Runs the commands; the first that fails stops it with what `ip` said.
    pub fn apply(&self) -> Result<(), String> {
        for args in self.commands() {
            let shown = format!("ip {}", args.join(" "));
            log::debug!("{shown}");
            let output = Command::new("ip")
                .args(&args)
                .output()
                .map_err(|e| format!("cannot run {shown}: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "{shown} failed ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
        }
        Ok(())
    }
}

fn words(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_prefixes_parse_and_bad_ones_say_why() {
        let cidr: Cidr = "10.0.2.15/24".parse().unwrap();
        assert_eq!(cidr.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(cidr.prefix, 24);
        assert_eq!(cidr.to_string(), "10.0.2.15/24");
        for bad in ["10.0.2.15", "10.0.2/24", "10.0.2.15/33", "10.0.2.15/x"] {
            let err = bad.parse::<Cidr>().unwrap_err();
            assert!(err.contains("not an address with a prefix"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_tap_device_gets_the_nics_address_first() {
        let config = InterfaceConfig {
            name: "tap0".into(),
            mac: Some("52:54:00:12:34:56".into()),
            address: "10.0.2.15/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 0, 2, 2),
        };
        let lines: Vec<String> = config.commands().iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "link set dev tap0 address 52:54:00:12:34:56",
                "addr add 10.0.2.15/24 dev tap0",
                "link set dev tap0 up",
                "route add default via 10.0.2.2 dev tap0",
            ]
        );
        let eth0 = InterfaceConfig {
            name: "eth0".into(),
            mac: None,
            ..config
        };
        assert_eq!(eth0.commands().len(), 3, "eth0 keeps its own address");
        assert!(eth0.commands()[0].contains(&"eth0".to_string()));
    }
}
