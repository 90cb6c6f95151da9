//! Redox init's unit files (`/usr/lib/init.d/NN_name.service`, TOML): what each
//! starts and how init waits for it. Unknown keys are errors, so that a
//! misspelt key fails the packaging tests instead of being ignored at boot.
//!
//! ```toml
//! [unit]
//! description = "mmio: device registers"   # optional
//! requires_weak = ["00_pcid-spawner.service"]
//!
//! [service]
//! cmd = "mmio"
//! args = ["--policy", "/etc/drivers/policy.toml"]
//! type = { scheme = "mmio" }                # or "oneshot", "oneshot_async", "notify"
//! ```
//!
//! Init runs the units in the order of their file names; a unit's
//! `requires_weak` names units that sort before it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::{ConfigError, ImageFile};

/// Where the image's own units live.
pub const INIT_DIR: &str = "/usr/lib/init.d";

/// One unit file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    pub unit: UnitInfo,
    pub service: Service,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UnitInfo {
    pub description: Option<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub requires_weak: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub envs: BTreeMap<String, String>,
    #[serde(default)]
    pub inherit_envs: BTreeSet<String>,
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    pub priority: Option<i32>,
}

/// How init waits for a service before the next unit.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    /// Until the daemon says it is ready.
    Notify,
    /// Until the daemon serves this scheme.
    Scheme(String),
    /// Until the program ends.
    Oneshot,
    /// Not at all.
    OneshotAsync,
}

impl Unit {
    /// Parses a unit file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }
}

/// The units among `files` (those under [`INIT_DIR`]), by file name, which is
/// the order init runs them in.
pub fn units(files: &[ImageFile]) -> Result<BTreeMap<String, Unit>, ConfigError> {
    let prefix = format!("{INIT_DIR}/");
    files
        .iter()
        .filter_map(|file| Some((file.path.strip_prefix(&prefix)?, file)))
        .map(|(name, file)| {
            if !name.ends_with(".service") || name.contains('/') {
                return Err(ConfigError(format!(
                    "{}: init only reads TOML units named *.service",
                    file.path
                )));
            }
            let unit =
                Unit::parse(&file.data).map_err(|e| ConfigError(format!("{}: {e}", file.path)))?;
            Ok((name.to_owned(), unit))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_file(name: &str, data: &str) -> ImageFile {
        ImageFile {
            path: format!("{INIT_DIR}/{name}"),
            data: data.to_owned(),
            postinstall: false,
        }
    }

    const SCHEME_UNIT: &str = r#"
[unit]
description = "d"
[service]
cmd = "mmio"
args = ["--policy", "/p"]
type = { scheme = "mmio" }
"#;

    #[test]
    fn units_are_ordered_by_name_and_their_kinds_read() {
        let files = [
            unit_file(
                "03_up.service",
                "[unit]\nrequires_weak = [\"01_mmio.service\"]\n[service]\ncmd = \"romain\"\ntype = \"oneshot\"\n",
            ),
            unit_file("01_mmio.service", SCHEME_UNIT),
            ImageFile {
                path: "/etc/other".into(),
                data: "not a unit".into(),
                postinstall: false,
            },
        ];
        let units = units(&files).unwrap();
        let names: Vec<&str> = units.keys().map(String::as_str).collect();
        assert_eq!(names, ["01_mmio.service", "03_up.service"]);
        let mmio = &units["01_mmio.service"];
        assert_eq!(mmio.service.kind, ServiceKind::Scheme("mmio".into()));
        assert_eq!(mmio.service.args, ["--policy", "/p"]);
        assert_eq!(units["03_up.service"].service.kind, ServiceKind::Oneshot);
        assert_eq!(
            units["03_up.service"].unit.requires_weak,
            ["01_mmio.service"]
        );
    }

    #[test]
    fn a_misspelt_key_or_a_unit_not_named_service_is_an_error() {
        let misspelt = SCHEME_UNIT.replace("args", "arg");
        assert!(units(&[unit_file("01_mmio.service", &misspelt)]).is_err());
        assert!(units(&[unit_file("01_mmio.toml", SCHEME_UNIT)]).is_err());
        assert!(units(&[unit_file("x/01_mmio.service", SCHEME_UNIT)]).is_err());
    }
}
