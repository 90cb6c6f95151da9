//! Reading a policy file into validated driver rules.
//!
//! The file is parsed in two steps so that every error names its driver and
//! key: serde reads the document into one TOML table per driver, then each key
//! of a driver's table is taken and checked on its own.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::size::parse_size;
use crate::{DriverRule, PolicyError, PortRange};

/// Highest BAR index of a PCI type 0 header.
const MAX_BAR: u8 = 5;

const KNOWN_KEYS: &[&str] = &[
    "uid",
    "device",
    "bdf",
    "bars",
    "direct_bars",
    "ports",
    "dma_quota",
    "schemes",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    driver: BTreeMap<String, toml::Value>,
}

/// Parses and validates a whole policy: each rule, then the rules against each other.
pub(crate) fn parse_rules(text: &str) -> Result<Vec<DriverRule>, PolicyError> {
    let file: PolicyFile = toml::from_str(text).map_err(PolicyError::Syntax)?;
    let rules = file
        .driver
        .into_iter()
        .map(|(label, value)| match value {
            toml::Value::Table(table) => DriverTable { label, table }.into_rule(),
            other => Err(PolicyError::Rule {
                problem: format!(
                    "must be a table ([driver.{label}]), found {}",
                    other.type_str()
                ),
                driver: label,
                key: None,
            }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_disjoint(&rules)?;
    Ok(rules)
}

/// One driver's table, consumed key by key.
struct DriverTable {
    label: String,
    table: toml::Table,
}

impl DriverTable {
    fn into_rule(mut self) -> Result<DriverRule, PolicyError> {
        self.check_label()?;
        if let Some(unknown) = self
            .table
            .keys()
            .find(|key| !KNOWN_KEYS.contains(&key.as_str()))
        {
            let problem = format!(
                "unknown key `{unknown}` (known keys: {})",
                KNOWN_KEYS.join(", ")
            );
            return Err(self.error(None, problem));
        }
        let uid: u32 = self
            .take("uid")?
            .ok_or_else(|| self.error(None, "missing key `uid`"))?;
        if uid == 0 {
            return Err(self.error(Some("uid"), "uid 0 is the trusted supervisor, not a driver"));
        }
        let rule = DriverRule {
            uid,
            device: self.take_parsed("device")?,
            bdf: self.take_parsed("bdf")?,
            bars: self.take_bars("bars")?,
            direct_bars: self.take_bars("direct_bars")?,
            ports: self.take_ports()?,
            dma_quota: self.take_size("dma_quota")?.unwrap_or(0),
            schemes: self.take_schemes()?,
            label: self.label,
        };
        check_rule(&rule)?;
        Ok(rule)
    }

    fn check_label(&self) -> Result<(), PolicyError> {
        let ok = !self.label.is_empty()
            && self
                .label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if ok {
            Ok(())
        } else {
            Err(self.error(None, "bad driver name (want letters, digits, '_' or '-')"))
        }
    }

    fn take<T: DeserializeOwned>(&mut self, key: &'static str) -> Result<Option<T>, PolicyError> {
        self.table
            .remove(key)
            .map(|value| {
                value
                    .try_into()
                    .map_err(|e: toml::de::Error| self.error(Some(key), e.message()))
            })
            .transpose()
    }

    fn take_parsed<T: std::str::FromStr<Err = crate::ValueError>>(
        &mut self,
        key: &'static str,
    ) -> Result<Option<T>, PolicyError> {
        self.take::<String>(key)?
            .map(|text| text.parse().map_err(|e| self.error(Some(key), e)))
            .transpose()
    }

    fn take_bars(&mut self, key: &'static str) -> Result<Vec<u8>, PolicyError> {
        let bars: Vec<u8> = self.take(key)?.unwrap_or_default();
        for (i, bar) in bars.iter().enumerate() {
            if *bar > MAX_BAR {
                return Err(self.error(
                    Some(key),
                    format!("BAR {bar} does not exist (BARs are 0-{MAX_BAR})"),
                ));
            }
            if bars[..i].contains(bar) {
                return Err(self.error(Some(key), format!("BAR {bar} is listed twice")));
            }
        }
        Ok(bars)
    }

    fn take_ports(&mut self) -> Result<Vec<PortRange>, PolicyError> {
        let texts: Vec<String> = self.take("ports")?.unwrap_or_default();
        let ranges = texts
            .iter()
            .map(|text| {
                text.parse::<PortRange>()
                    .map_err(|e| self.error(Some("ports"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (i, range) in ranges.iter().enumerate() {
            if let Some(other) = ranges[..i].iter().find(|other| other.overlaps(range)) {
                return Err(self.error(Some("ports"), format!("{range} overlaps {other}")));
            }
        }
        Ok(ranges)
    }

    fn take_size(&mut self, key: &'static str) -> Result<Option<u64>, PolicyError> {
        let Some(value) = self.table.remove(key) else {
            return Ok(None);
        };
        let size = match value {
            toml::Value::Integer(bytes) => {
                u64::try_from(bytes).map_err(|_| format!("{bytes} is negative"))
            }
            toml::Value::String(text) => parse_size(&text).map_err(|e| e.to_string()),
            other => Err(format!(
                "want a size such as \"4M\" or 4096, not a {}",
                other.type_str()
            )),
        };
        size.map(Some)
            .map_err(|problem| self.error(Some(key), problem))
    }

    fn take_schemes(&mut self) -> Result<Vec<String>, PolicyError> {
        let schemes: Vec<String> = self.take("schemes")?.unwrap_or_default();
        for (i, name) in schemes.iter().enumerate() {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !ok {
                return Err(self.error(Some("schemes"), format!("`{name}` is not a scheme name")));
            }
            if schemes[..i].contains(name) {
                return Err(self.error(Some("schemes"), format!("scheme {name} is listed twice")));
            }
        }
        Ok(schemes)
    }

    fn error(&self, key: Option<&'static str>, problem: impl std::fmt::Display) -> PolicyError {
        PolicyError::Rule {
            driver: self.label.clone(),
            key,
            problem: problem.to_string(),
        }
    }
}

/// Checks that hold between the keys of one rule.
fn check_rule(rule: &DriverRule) -> Result<(), PolicyError> {
    if !rule.bars.is_empty() && rule.device.is_none() && rule.bdf.is_none() {
        return Err(PolicyError::rule(
            &rule.label,
            "bars",
            "BARs granted without `device` or `bdf`",
        ));
    }
    if let Some(bar) = rule.direct_bars.iter().find(|bar| !rule.bars.contains(bar)) {
        return Err(PolicyError::rule(
            &rule.label,
            "direct_bars",
            format!("BAR {bar} is not in `bars`"),
        ));
    }
    Ok(())
}

/// Two drivers never share a uid (it is how a caller is recognised) nor an I/O port.
fn check_disjoint(rules: &[DriverRule]) -> Result<(), PolicyError> {
    for (i, rule) in rules.iter().enumerate() {
        for earlier in &rules[..i] {
            if earlier.uid == rule.uid {
                let problem = format!("uid {} is also driver {}'s", rule.uid, earlier.label);
                return Err(PolicyError::rule(&rule.label, "uid", problem));
            }
            for range in &rule.ports {
                if let Some(other) = earlier.ports.iter().find(|other| other.overlaps(range)) {
                    let problem = format!("{range} overlaps {other} of driver {}", earlier.label);
                    return Err(PolicyError::rule(&rule.label, "ports", problem));
                }
            }
        }
    }
    Ok(())
}
