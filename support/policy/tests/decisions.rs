//! Who a caller is, and what its rule grants.

use driver_policy::{Bdf, Denial, DeviceId, Policy, PortRange};

const POLICY: &str = r#"
[driver.e1000]
uid = 1001
device = "8086:100e"
bars = [0]
direct_bars = [0]
dma_quota = "4M"
schemes = ["mmio", "dma", "network"]

[driver.uart]
uid = 1002
ports = ["0x2f8-0x2ff"]

[driver.pinned]
uid = 1003
device = "8086:100e"
bdf = "0000:00:04.0"
bars = [0, 1]

[driver.configless]
uid = 1010
device = "8086:100e"
"#;

const E1000: DeviceId = DeviceId {
    vendor: 0x8086,
    device: 0x100e,
};
const OTHER: DeviceId = DeviceId {
    vendor: 0x8086,
    device: 0x100f,
};

fn policy() -> Policy {
    POLICY.parse().unwrap()
}

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

fn ports(s: &str) -> PortRange {
    s.parse().unwrap()
}

#[test]
fn label_lookup_by_uid() {
    let policy = policy();
    assert_eq!(policy.driver_for_uid(1001).unwrap().label(), "e1000");
    assert_eq!(policy.driver_for_uid(1002).unwrap().label(), "uart");
    assert!(policy.driver_for_uid(1004).is_none());
    assert!(policy.driver_for_uid(0).is_none());
}

#[test]
fn resolve_callers() {
    let policy = policy();
    assert_eq!(policy.resolve(1001, None).unwrap().label(), "e1000");
    assert_eq!(
        policy.resolve(1001, Some("e1000")).unwrap().label(),
        "e1000"
    );
    assert_eq!(policy.resolve(0, Some("uart")).unwrap().label(), "uart");

    let denied = |uid, label| policy.resolve(uid, label).unwrap_err();
    assert_eq!(denied(1004, None), Denial::UnknownUid { uid: 1004 });
    assert_eq!(
        denied(1004, None).to_string(),
        "uid 1004 is not a driver in the policy"
    );
    assert_eq!(
        denied(1004, Some("e1000")).to_string(),
        "uid 1004 is not a driver in the policy"
    );
    assert_eq!(
        denied(0, None).to_string(),
        "uid 0 acts for no driver: name one with label=<driver>"
    );
    assert_eq!(
        denied(0, Some("ne2k")).to_string(),
        "no driver named `ne2k` in the policy"
    );
    assert_eq!(
        denied(1002, Some("e1000")).to_string(),
        "uid 1002 may not act for driver e1000 (only uid 0 acts for another driver)"
    );
    assert_eq!(denied(1002, Some("e1000")).driver(), None);
}

#[test]
fn dma_quota_lookup() {
    let policy = policy();
    assert_eq!(policy.dma_quota(1001, None), Ok(4 << 20));
    assert_eq!(policy.dma_quota(1002, None), Ok(0));
    assert_eq!(policy.dma_quota(0, Some("e1000")), Ok(4 << 20));
    assert_eq!(policy.dma_quota(0, None), Err(Denial::RootWithoutLabel));
    assert_eq!(
        policy.dma_quota(1009, None),
        Err(Denial::UnknownUid { uid: 1009 })
    );
}

#[test]
fn bar_decisions() {
    let policy = policy();
    let e1000 = policy.driver("e1000").unwrap();
    assert_eq!(e1000.check_bar(bdf("00:03.0"), 0), Ok(()));
    assert_eq!(
        e1000.check_bar(bdf("00:05.0"), 0),
        Ok(()),
        "any function, if its id is granted"
    );
    let denial = e1000.check_bar(bdf("00:03.0"), 2).unwrap_err();
    assert_eq!(
        denial.to_string(),
        "driver e1000: BAR 2 not granted (bars = [0])"
    );
    assert_eq!(denial.driver(), Some("e1000"));

    let pinned = policy.driver("pinned").unwrap();
    assert_eq!(pinned.check_bar(bdf("00:04.0"), 1), Ok(()));
    assert_eq!(
        pinned.check_bar(bdf("00:03.0"), 1).unwrap_err().to_string(),
        "driver pinned: device 0000:00:03.0 not granted (device = \"8086:100e\", bdf = \"0000:00:04.0\")"
    );

    assert_eq!(
        policy
            .driver("uart")
            .unwrap()
            .check_bar(bdf("00:03.0"), 0)
            .unwrap_err()
            .to_string(),
        "driver uart: device 0000:00:03.0 not granted (no `device` or `bdf`)"
    );
}

#[test]
fn interrupt_decisions() {
    let policy = policy();
    let e1000 = policy.driver("e1000").unwrap();
    assert_eq!(e1000.check_interrupt(bdf("00:03.0")), Ok(()));
    assert_eq!(
        e1000.check_interrupt(bdf("00:07.0")),
        Ok(()),
        "any function; ids decide"
    );
    let pinned = policy.driver("pinned").unwrap();
    assert_eq!(pinned.check_interrupt(bdf("00:04.0")), Ok(()));
    assert_eq!(
        pinned.check_interrupt(bdf("00:03.0")).unwrap_err().to_string(),
        "driver pinned: device 0000:00:03.0 not granted (device = \"8086:100e\", bdf = \"0000:00:04.0\")"
    );
    let uart = policy.driver("uart").unwrap();
    assert!(
        uart.check_interrupt(bdf("00:03.0")).is_err(),
        "no device at all"
    );
    let configless = policy.driver("configless").unwrap();
    assert_eq!(
        configless
            .check_interrupt(bdf("00:03.0"))
            .unwrap_err()
            .to_string(),
        "driver configless: the interrupt of 0000:00:03.0 not granted (bars = [] (the interrupt \
         comes with the registers))"
    );
}

#[test]
fn device_decisions() {
    let policy = policy();
    let e1000 = policy.driver("e1000").unwrap();
    assert_eq!(e1000.check_device(bdf("00:03.0"), E1000), Ok(()));
    assert_eq!(
        e1000
            .check_device(bdf("00:04.0"), OTHER)
            .unwrap_err()
            .to_string(),
        "driver e1000: device 0000:00:04.0 (8086:100f) not granted (device = \"8086:100e\")"
    );

    let pinned = policy.driver("pinned").unwrap();
    assert_eq!(pinned.check_device(bdf("00:04.0"), E1000), Ok(()));
    assert!(
        pinned.check_device(bdf("00:04.0"), OTHER).is_err(),
        "both device and bdf must match"
    );
    assert!(
        pinned.check_device(bdf("00:03.0"), E1000).is_err(),
        "both device and bdf must match"
    );

    assert_eq!(
        policy
            .driver("uart")
            .unwrap()
            .check_device(bdf("00:03.0"), E1000)
            .unwrap_err()
            .to_string(),
        "driver uart: device 0000:00:03.0 (8086:100e) not granted (no `device` or `bdf`)"
    );
}

#[test]
fn direct_bar_decisions() {
    let policy = policy();
    assert_eq!(policy.driver("e1000").unwrap().check_direct_bar(0), Ok(()));
    assert_eq!(
        policy
            .driver("pinned")
            .unwrap()
            .check_direct_bar(0)
            .unwrap_err()
            .to_string(),
        "driver pinned: direct mapping of BAR 0 not granted (direct_bars = [])"
    );
}

#[test]
fn port_decisions() {
    let policy = policy();
    let uart = policy.driver("uart").unwrap();
    assert_eq!(uart.check_ports(ports("0x2f8-0x2ff")), Ok(()));
    assert_eq!(uart.check_ports(ports("0x2fd-0x2fd")), Ok(()));
    assert_eq!(
        uart.check_ports(ports("0x2f8-0x300"))
            .unwrap_err()
            .to_string(),
        "driver uart: ports 0x2f8-0x300 not granted (ports = [\"0x2f8-0x2ff\"])"
    );
    assert_eq!(
        policy
            .driver("e1000")
            .unwrap()
            .check_ports(ports("0x3f8-0x3ff"))
            .unwrap_err()
            .to_string(),
        "driver e1000: ports 0x3f8-0x3ff not granted (ports = [])"
    );
}

#[test]
fn scheme_decisions() {
    let policy = policy();
    let e1000 = policy.driver("e1000").unwrap();
    assert_eq!(e1000.check_scheme("network"), Ok(()));
    assert_eq!(
        e1000.check_scheme("romain").unwrap_err().to_string(),
        "driver e1000: scheme romain not granted (schemes = [\"mmio\", \"dma\", \"network\"])"
    );
    assert!(policy.driver("uart").unwrap().check_scheme("mmio").is_err());
}

#[test]
fn a_denial_quotes_only_a_short_prefix_of_a_label_a_client_sent() {
    let policy = policy();
    let long = format!("{}\nforged line", "x".repeat(64 * 1024));
    for denial in [
        policy.resolve(0, Some(&long)).unwrap_err(),
        policy.resolve(1001, Some(&long)).unwrap_err(),
        policy
            .driver("e1000")
            .unwrap()
            .check_scheme(&long)
            .unwrap_err(),
    ] {
        let message = denial.to_string();
        assert!(
            message.len() < 300,
            "{} bytes: {message:.300}",
            message.len()
        );
        assert!(
            message.contains(&format!("... ({} bytes)", long.len())),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }
    assert_eq!(
        policy.resolve(0, Some("ne2k")).unwrap_err().to_string(),
        "no driver named `ne2k` in the policy",
        "a short label reads as before"
    );
}
