//! The Redox packaging: every recipe has what the cookbook needs and points at a
//! crate of this workspace with a binary (but the kernel's, which patches
//! upstream's kernel), and `filesystem.toml` parses with the installer's own config
//! types, builds the patched kernel and starts the stack from init.
//!
//! The cookbook is not a crate we can depend on, so its format is mirrored here
//! with `deny_unknown_fields` (init's units are read by `image-config`, which
//! does the same): a misspelt key fails the test instead of being ignored by
//! the image build.
//!
//! The mirror follows the cookbook as it is in the redox-os/redox repository (the
//! cookbook was merged into it in November 2025), checked at commit 81bc5bf1
//! (2026-08-21): `src/recipe.rs` for the recipe format, `config/` for the image
//! configs. Nothing here reaches the network, so when the cookbook changes again
//! this mirror and the lists below must be updated by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use image_config::init_unit::{self, ServiceKind, Unit};
use image_config::ImageFile;
use redox_installer::{Config, PackageConfig};
use serde::Deserialize;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The cookbook's `recipe.toml`, as far as a path-sourced cargo recipe uses it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recipe {
    source: PathSource,
    build: CargoBuild,
    /// Accepted (a recipe may declare runtime dependencies), not checked.
    #[serde(default, rename = "package")]
    _package: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathSource {
    path: String,
}

/// The `[build]` table of the cookbook's cargo template (`BuildKind::Cargo` in the
/// cookbook's `src/recipe.rs`). Since redox-os/redox 2d899ca1 (2026-03-06) the
/// crate's folder is `cargopath` (it was `package_path`) and `cargoflags` is a
/// list of strings (it was one string). The cookbook ignores keys it does not know,
/// so an old `package_path` would be dropped silently and cargo run at the
/// workspace root; an old string `cargoflags` fails to parse.
///
/// The template has more keys (`cargopackages`, `cargoexamples`, `clearlocked`,
/// `cargopackagesprefixed`); our recipes use none of them, so they are rejected
/// here until a recipe needs one and this mirror learns what it means.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CargoBuild {
    template: String,
    /// The crate's folder, relative to the source (this workspace).
    cargopath: Option<String>,
    /// Extra arguments to `cargo install`, one or more words per item: the
    /// cookbook appends the items unquoted, so `"--bin romain"` and
    /// `["--bin", "romain"]` both reach cargo as two arguments.
    #[serde(default)]
    cargoflags: Vec<String>,
    /// Accepted (the cookbook knows this key), not checked.
    #[serde(default, rename = "dependencies")]
    _dependencies: Vec<String>,
}

/// The keys of the cargo template the cookbook renamed or retyped, and what
/// replaced them, named so that a recipe written for the older cookbook fails with
/// a message saying what to write instead.
fn old_cargo_keys(build: &toml::Table) -> Vec<String> {
    let mut found = Vec::new();
    if build.contains_key("package_path") {
        found.push("`package_path` is now `cargopath`".to_owned());
    }
    if let Some(flags @ toml::Value::String(_)) = build.get("cargoflags") {
        found.push(format!(
            "`cargoflags` is now a list of strings, not {flags}"
        ));
    }
    found
}

/// The binaries a crate builds: its `[[bin]]` names, or the package name for
/// `src/main.rs`.
fn binaries_of(crate_dir: &Path) -> Vec<String> {
    let manifest: toml::Table = std::fs::read_to_string(crate_dir.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut bins: Vec<String> = manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("name")?.as_str().map(str::to_owned))
        .collect();
    if bins.is_empty() && crate_dir.join("src/main.rs").exists() {
        bins.push(manifest["package"]["name"].as_str().unwrap().to_owned());
    }
    bins
}

/// Recipes that build an upstream Redox package with our patches rather than a crate
/// of this workspace; each has its own checks below.
const PATCHED_UPSTREAM: &[&str] = &["kernel"];

/// Every recipe of this workspace's crates, checked, with the binaries its package
/// installs.
fn recipes() -> BTreeMap<String, Vec<String>> {
    let recipes_dir = workspace_root().join("recipes");
    let mut found = BTreeMap::new();
    for entry in std::fs::read_dir(&recipes_dir).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        if PATCHED_UPSTREAM.contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(dir.join("recipe.toml"))
            .unwrap_or_else(|e| panic!("recipes/{name}: no recipe.toml: {e}"));
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("recipes/{name}/recipe.toml: {e}"));
        if let Some(build) = table.get("build").and_then(toml::Value::as_table) {
            let old = old_cargo_keys(build);
            assert!(
                old.is_empty(),
                "recipes/{name}/recipe.toml uses the older cookbook's cargo keys: {}",
                old.join("; ")
            );
        }
        let recipe: Recipe =
            toml::from_str(&text).unwrap_or_else(|e| panic!("recipes/{name}/recipe.toml: {e}"));
        assert_eq!(
            recipe.build.template, "cargo",
            "recipes/{name}: cargo template"
        );
        let source = dir.join(&recipe.source.path).canonicalize().unwrap();
        assert_eq!(
            source,
            workspace_root(),
            "recipes/{name}: the source is this workspace"
        );
        // Without `cargopath` the cookbook runs `cargo install` at the source's
        // root, which is this workspace's virtual manifest: it has no package.
        let cargopath = recipe.build.cargopath.unwrap_or_else(|| {
            panic!("recipes/{name}: `cargopath` must name the crate's folder in this workspace")
        });
        let crate_dir = source.join(&cargopath);
        assert!(
            crate_dir.join("Cargo.toml").is_file(),
            "recipes/{name}: cargopath {cargopath} is not a crate of this workspace"
        );
        let mut bins = binaries_of(&crate_dir);
        // `cargo install --bin X` installs only the binaries named.
        let flags: Vec<&str> = recipe
            .build
            .cargoflags
            .iter()
            .flat_map(|item| item.split_whitespace())
            .collect();
        let chosen: Vec<&str> = flags
            .iter()
            .enumerate()
            .filter_map(|(i, flag)| match flag.strip_prefix("--bin") {
                Some("") => flags.get(i + 1).copied(),
                Some(rest) => rest.strip_prefix('='),
                None => None,
            })
            .collect();
        if !chosen.is_empty() {
            for bin in &chosen {
                assert!(
                    bins.iter().any(|b| b == bin),
                    "recipes/{name}: cargoflags name {bin}, which {cargopath} does not build"
                );
            }
            bins.retain(|b| chosen.contains(&b.as_str()));
        }
        assert!(
            !bins.is_empty(),
            "recipes/{name}: {cargopath} builds no binary"
        );
        found.insert(name, bins);
    }
    found
}

#[test]
fn every_recipe_builds_a_binary_of_this_workspace() {
    let recipes = recipes();
    for package in [
        "mmio-scheme",
        "dma-scheme",
        "romain-scheme",
        "e1000",
        "uart16550",
    ] {
        assert!(recipes.contains_key(package), "no recipe for {package}");
    }
}

/// The programs the image starts itself: every init unit's command, and
/// every binary the romain registry names (by its file name, as installed in
/// `/usr/bin`).
fn started_programs(config: &Config) -> BTreeMap<String, String> {
    let mut started: BTreeMap<String, String> = units(config)
        .into_iter()
        .map(|(name, unit)| (unit.service.cmd, format!("init unit {name}")))
        .collect();
    let registry: romain_scheme::Registry = file(config, "/etc/romain/drivers.toml")
        .data
        .parse()
        .unwrap_or_else(|e| panic!("/etc/romain/drivers.toml: {e}"));
    for driver in registry.drivers() {
        assert_eq!(
            driver.binary.parent(),
            Some(Path::new("/usr/bin")),
            "driver {}: recipes install into /usr/bin",
            driver.name
        );
        let program = driver.binary.file_name().unwrap().to_str().unwrap();
        started.insert(
            program.to_owned(),
            format!("registry driver {}", driver.name),
        );
    }
    started
}

#[test]
fn every_program_the_image_starts_is_installed_by_one_of_our_recipes() {
    let config = image();
    let installed: BTreeSet<String> = recipes().into_values().flatten().collect();
    let started = started_programs(&config);
    for program in ["mmio", "dma", "romain", "e1000"] {
        assert!(
            started.contains_key(program),
            "the image never starts {program}"
        );
    }
    for (program, by) in &started {
        assert!(
            installed.contains(program),
            "{by} starts {program}, which none of recipes/ installs"
        );
    }
}

/// The cookbook's `recipe.toml` for an upstream package built from a pinned git
/// commit with patches of ours.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchedRecipe {
    source: GitSource,
    build: CustomBuild,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GitSource {
    git: String,
    rev: String,
    patches: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomBuild {
    template: String,
    script: String,
}

#[test]
fn the_kernel_recipe_pins_an_upstream_commit_and_applies_our_patch() {
    let dir = workspace_root().join("recipes/kernel");
    let text = std::fs::read_to_string(dir.join("recipe.toml")).unwrap();
    let recipe: PatchedRecipe =
        toml::from_str(&text).unwrap_or_else(|e| panic!("recipes/kernel/recipe.toml: {e}"));
    assert_eq!(
        recipe.source.git,
        "https://gitlab.redox-os.org/redox-os/kernel.git"
    );
    let rev = &recipe.source.rev;
    assert!(
        rev.len() == 40 && rev.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "rev must be a full commit hash, so that the patch always meets the same source: {rev}"
    );
    assert!(
        !recipe.source.patches.is_empty(),
        "the recipe applies no patch"
    );
    for patch in &recipe.source.patches {
        let text = std::fs::read_to_string(dir.join(patch))
            .unwrap_or_else(|e| panic!("recipes/kernel: patch {patch}: {e}"));
        // The cookbook applies patches with `patch --strip=1` from the source root.
        assert!(
            text.contains("\n--- a/src/") && text.contains("\n+++ b/src/"),
            "recipes/kernel/{patch} is empty or not a diff of the kernel's src/"
        );
    }
    assert_eq!(recipe.build.template, "custom");
    assert!(
        recipe.build.script.contains("make install"),
        "the kernel is built by its own Makefile"
    );
}

#[test]
fn the_image_builds_the_patched_kernel_from_source() {
    let config = image();
    // The package keeps upstream's name, so the image's kernel is ours; "source"
    // makes the cookbook build it from the recipe even when it takes other packages
    // prebuilt (the prebuilt kernel lacks the patch).
    match config.packages.get("kernel") {
        Some(PackageConfig::Build(rule)) => assert_eq!(rule, "source"),
        other => panic!("filesystem.toml must ask for kernel = \"source\", not {other:?}"),
    }
}

fn image() -> Config {
    let text = std::fs::read_to_string(workspace_root().join("filesystem.toml")).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("filesystem.toml: {e}"))
}

fn file<'a>(config: &'a Config, path: &str) -> &'a redox_installer::FileConfig {
    config
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("filesystem.toml writes no {path}"))
}

/// The init units among the image's files, parsed as init reads them.
fn units(config: &Config) -> BTreeMap<String, Unit> {
    let files: Vec<ImageFile> = config
        .files
        .iter()
        .map(|f| ImageFile {
            path: f.path.clone(),
            data: f.data.clone(),
            postinstall: f.postinstall,
        })
        .collect();
    init_unit::units(&files).unwrap_or_else(|e| panic!("{e}"))
}

/// The upstream image configs `filesystem.toml` may include, from the build tree's
/// `config/` folder (where the README puts it): each is a bootable system with a
/// console, and each has the network stack, since every upstream config builds on
/// `base.toml`, which installs the `base` package (its init units start `smolnetd`
/// and `dhcpd`), `netutils` and `netdb`. `minimal.toml` is the smallest of them and
/// the one we use; the others add a server toolset or a desktop.
///
/// Checked against redox-os/redox 81bc5bf1 (2026-08-21), `config/`.
const UPSTREAM_BASE_CONFIGS: &[&str] = &[
    "minimal.toml",
    "server.toml",
    "desktop-minimal.toml",
    "desktop.toml",
];

/// Configs upstream has removed, which the build would fail to find. `net.toml`
/// and `minimal-net.toml` went on 2026-03-01 (redox-os/redox 85b62fd8 and
/// 62429864), when networking moved into `base.toml` and so into every config.
const REMOVED_UPSTREAM_CONFIGS: &[&str] = &["minimal-net.toml", "net.toml"];

#[test]
fn the_image_builds_on_a_current_upstream_config_with_networking() {
    let config = image();
    assert!(
        !config.include.is_empty(),
        "filesystem.toml must include a Redox base config"
    );
    for include in &config.include {
        let name = include.to_str().unwrap();
        assert!(
            !REMOVED_UPSTREAM_CONFIGS.contains(&name),
            "filesystem.toml includes {name}, which upstream has removed; include \
             minimal.toml, which has networking now"
        );
        assert!(
            UPSTREAM_BASE_CONFIGS.contains(&name),
            "filesystem.toml includes {name}, which is none of the upstream configs \
             we have checked ({UPSTREAM_BASE_CONFIGS:?}); check it in the redox \
             repository's config/ folder and add it to the list"
        );
    }
}

#[test]
fn the_image_installs_our_packages() {
    let config = image();
    for package in recipes().keys() {
        assert!(
            config.packages.contains_key(package),
            "filesystem.toml does not install {package}"
        );
    }
}

#[test]
fn init_starts_the_daemons_as_schemes_and_brings_up_the_replicated_e1000() {
    let config = image();
    let units = units(&config);
    let installed: BTreeSet<String> = recipes().into_values().flatten().collect();

    for (scheme, binary) in [("mmio", "mmio"), ("dma", "dma"), ("romain", "romain")] {
        let (name, unit) = units
            .iter()
            .find(|(_, u)| u.service.kind == ServiceKind::Scheme(scheme.to_owned()))
            .unwrap_or_else(|| panic!("no init unit serves scheme {scheme}"));
        assert_eq!(unit.service.cmd, binary, "{name}");
        assert!(
            installed.contains(binary),
            "{name}: {binary} is built by none of our recipes"
        );
        assert!(
            unit.unit.description.is_some(),
            "{name}: a description helps whoever reads the boot log"
        );
    }

    let (name, bring_up) = units
        .iter()
        .find(|(_, u)| {
            u.service.cmd == "romain" && u.service.args.first().map(String::as_str) == Some("up")
        })
        .expect("a unit that brings up the replicated e1000");
    assert_eq!(bring_up.service.kind, ServiceKind::Oneshot, "{name}");
    assert_eq!(
        bring_up.service.args,
        ["up", "e1000", "--replicas", "3"],
        "{name}"
    );
    let romain_unit = units
        .iter()
        .find(|(_, u)| u.service.kind == ServiceKind::Scheme("romain".into()))
        .unwrap()
        .0;
    assert!(
        bring_up.unit.requires_weak.contains(romain_unit),
        "{name} must start after {romain_unit}"
    );
    for (name, unit) in &units {
        for dependency in unit.unit.requires.iter().chain(&unit.unit.requires_weak) {
            assert!(
                units.contains_key(dependency) || dependency.starts_with("00_"),
                "{name} depends on {dependency}, which neither this image nor the base's early units provide"
            );
        }
        assert!(
            unit.service.envs.is_empty()
                && unit.service.inherit_envs.is_empty()
                && unit.service.priority.is_none()
        );
    }
}

#[test]
fn the_stock_e1000d_is_kept_off_the_replicated_nic() {
    let config = image();
    let matcher = file(&config, "/usr/lib/pcid.d/e1000d.toml");
    assert!(
        matcher.postinstall,
        "the override must be written after the e1000d package installs its own"
    );
    let table: toml::Table = matcher.data.parse().unwrap();
    let drivers = table["drivers"].as_array().unwrap();
    for driver in drivers {
        let intel = driver["ids"]["0x8086"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(
            !intel.iter().any(|id| id.as_integer() == Some(0x100e)),
            "e1000d still matches 8086:100e"
        );
    }
}

#[test]
fn the_image_policy_is_valid_and_grants_the_e1000_driver_its_nic() {
    let config = image();
    let policy: driver_policy::Policy = file(&config, "/etc/drivers/policy.toml")
        .data
        .parse()
        .unwrap_or_else(|e| panic!("/etc/drivers/policy.toml: {e}"));
    let e1000 = policy.driver("e1000").expect("a rule for the e1000 driver");
    let nic = e1000.device().expect("the e1000 rule names its device");
    assert_eq!((nic.vendor, nic.device), (0x8086, 0x100e));
    assert!(e1000.bars().contains(&0), "the e1000 registers are BAR 0");
    assert!(
        e1000.dma_quota() > 0,
        "the e1000 needs DMA memory for its rings"
    );
}

#[test]
fn the_image_registry_is_valid_and_names_the_e1000_driver() {
    let config = image();
    let registry: romain_scheme::Registry = file(&config, "/etc/romain/drivers.toml")
        .data
        .parse()
        .unwrap_or_else(|e| panic!("/etc/romain/drivers.toml: {e}"));
    let e1000 = registry
        .driver("e1000")
        .expect("the bring-up unit starts e1000, so the registry must know it");
    assert_eq!(
        e1000.policy, "e1000",
        "the driver runs under its policy rule"
    );
    assert!(
        !e1000.args.iter().any(|arg| arg.starts_with("--pci")),
        "the driver finds its NIC by the policy's device id (mmio:pci), as pcid \
         matches drivers: an address in the registry would tie the image to one machine"
    );
    let policy: driver_policy::Policy = file(&config, "/etc/drivers/policy.toml")
        .data
        .parse()
        .unwrap();
    let rule = policy
        .driver(&e1000.policy)
        .expect("the registry's policy label has a rule");
    assert_eq!(
        e1000.uid,
        Some(rule.uid()),
        "romain starts the driver as the user its rule is for"
    );
}
