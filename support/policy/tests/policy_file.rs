//! Loading policy files: a good one, and one bad file per error message.

use driver_policy::{Bdf, DeviceId, Policy, PortRange};

const GOOD: &str = r#"
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
bdf = "00:04.0"
bars = [1, 0]
dma_quota = 65536
"#;

fn error_of(text: &str) -> String {
    text.parse::<Policy>()
        .expect_err("policy must be refused")
        .to_string()
}

#[test]
fn good_file() {
    let policy: Policy = GOOD.parse().unwrap();
    let labels: Vec<&str> = policy.drivers().map(|rule| rule.label()).collect();
    assert_eq!(labels, ["e1000", "pinned", "uart"]);

    let e1000 = policy.driver("e1000").unwrap();
    assert_eq!(e1000.uid(), 1001);
    assert_eq!(
        e1000.device(),
        Some(DeviceId {
            vendor: 0x8086,
            device: 0x100e
        })
    );
    assert_eq!(e1000.bdf(), None);
    assert_eq!((e1000.bars(), e1000.direct_bars()), (&[0][..], &[0][..]));
    assert_eq!(e1000.dma_quota(), 4 << 20);
    assert_eq!(e1000.schemes(), ["mmio", "dma", "network"]);
    assert!(e1000.ports().is_empty());

    let uart = policy.driver("uart").unwrap();
    assert_eq!(uart.ports(), [PortRange::new(0x2f8, 0x2ff).unwrap()]);
    assert_eq!(
        (uart.dma_quota(), uart.bars(), uart.schemes().len()),
        (0, &[][..], 0)
    );

    let pinned = policy.driver("pinned").unwrap();
    assert_eq!(pinned.bdf(), Some("0000:00:04.0".parse::<Bdf>().unwrap()));
    assert_eq!((pinned.bars(), pinned.dma_quota()), (&[1, 0][..], 65536));
}

#[test]
fn empty_file_denies_everything() {
    let policy: Policy = "".parse().unwrap();
    assert_eq!(policy.drivers().count(), 0);
    assert!(policy.driver_for_uid(1001).is_none());
}

#[test]
fn load_reads_a_file_and_names_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("driver-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.toml");
    std::fs::write(&path, GOOD).unwrap();
    assert!(Policy::load(&path).unwrap().driver("uart").is_some());
    std::fs::remove_file(&path).unwrap();
    let err = Policy::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("cannot read policy {}: ", path.display())),
        "{err}"
    );
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn syntax_and_top_level_errors() {
    let err = error_of("[driver.e1000\nuid = 1");
    assert!(
        err.starts_with("policy is not a valid policy file: TOML parse error at line 1"),
        "{err}"
    );
    let err = error_of("[drivers.e1000]\nuid = 1\n");
    assert!(
        err.contains("unknown field `drivers`, expected `driver`"),
        "{err}"
    );
    assert_eq!(
        error_of("[driver]\ne1000 = 5\n"),
        "driver e1000: must be a table ([driver.e1000]), found integer"
    );
}

#[test]
fn rule_errors_name_driver_and_key() {
    let cases: &[(&str, &str)] = &[
        ("[driver.e1000]\nuid = 1001\nbar = [0]\n",
         "driver e1000: unknown key `bar` (known keys: uid, device, bdf, bars, direct_bars, ports, dma_quota, schemes)"),
        ("[driver.e1000]\ndevice = \"8086:100e\"\n", "driver e1000: missing key `uid`"),
        ("[driver.e1000]\nuid = \"x\"\n", "driver e1000, key `uid`: invalid type: string \"x\", expected u32"),
        ("[driver.e1000]\nuid = -1\n", "driver e1000, key `uid`: invalid value: integer `-1`, expected u32"),
        ("[driver.e1000]\nuid = 0\n", "driver e1000, key `uid`: uid 0 is the trusted supervisor, not a driver"),
        ("[driver.\"e 1000\"]\nuid = 1\n", "driver e 1000: bad driver name (want letters, digits, '_' or '-')"),
        ("[driver.e1000]\nuid = 1\ndevice = \"8086\"\n",
         "driver e1000, key `device`: `8086` is not a PCI device id (want vvvv:dddd, hex)"),
        ("[driver.e1000]\nuid = 1\nbdf = \"00:03\"\n",
         "driver e1000, key `bdf`: `00:03` is not a PCI address (want [dddd:]bb:dd.f, hex)"),
        ("[driver.e1000]\nuid = 1\nbdf = \"00:03.9\"\n",
         "driver e1000, key `bdf`: `00:03.9` is not a PCI address (device 00-1f, function 0-7)"),
        ("[driver.e1000]\nuid = 1\ndevice = \"8086:100e\"\nbars = [6]\n",
         "driver e1000, key `bars`: BAR 6 does not exist (BARs are 0-5)"),
        ("[driver.e1000]\nuid = 1\ndevice = \"8086:100e\"\nbars = [0, 0]\n",
         "driver e1000, key `bars`: BAR 0 is listed twice"),
        ("[driver.e1000]\nuid = 1\ndevice = \"8086:100e\"\nbars = [256]\n",
         "driver e1000, key `bars`: invalid value: integer `256`, expected u8"),
        ("[driver.e1000]\nuid = 1\nbars = [0]\n", "driver e1000, key `bars`: BARs granted without `device` or `bdf`"),
        ("[driver.e1000]\nuid = 1\ndevice = \"8086:100e\"\nbars = [0]\ndirect_bars = [1]\n",
         "driver e1000, key `direct_bars`: BAR 1 is not in `bars`"),
        ("[driver.uart]\nuid = 1\nports = [\"0x2ff-0x2f8\"]\n",
         "driver uart, key `ports`: `0x2ff-0x2f8` runs backwards (first port after last)"),
        ("[driver.uart]\nuid = 1\nports = [\"2f8-2ff\"]\n",
         "driver uart, key `ports`: `2f8-2ff` is not a port range (want 0xFIRST-0xLAST, hex)"),
        ("[driver.uart]\nuid = 1\nports = [\"0x2f8-0x2ff\", \"0x2f0-0x2f8\"]\n",
         "driver uart, key `ports`: 0x2f0-0x2f8 overlaps 0x2f8-0x2ff"),
        ("[driver.uart]\nuid = 1\nports = \"0x2f8-0x2ff\"\n",
         "driver uart, key `ports`: invalid type: string \"0x2f8-0x2ff\", expected a sequence"),
        ("[driver.e1000]\nuid = 1\ndma_quota = \"4MB\"\n",
         "driver e1000, key `dma_quota`: `4MB` is not a size (want a number of bytes, or with K, M or G)"),
        ("[driver.e1000]\nuid = 1\ndma_quota = -5\n", "driver e1000, key `dma_quota`: -5 is negative"),
        ("[driver.e1000]\nuid = 1\ndma_quota = 1.5\n",
         "driver e1000, key `dma_quota`: want a size such as \"4M\" or 4096, not a float"),
        ("[driver.e1000]\nuid = 1\nschemes = [\"mmio\", \"\"]\n", "driver e1000, key `schemes`: `` is not a scheme name"),
        ("[driver.e1000]\nuid = 1\nschemes = [\"dma\", \"dma\"]\n", "driver e1000, key `schemes`: scheme dma is listed twice"),
        ("[driver.a]\nuid = 7\n[driver.b]\nuid = 7\n", "driver b, key `uid`: uid 7 is also driver a's"),
        ("[driver.com1]\nuid = 1\nports = [\"0x3f8-0x3ff\"]\n[driver.uart]\nuid = 2\nports = [\"0x3f0-0x3f8\"]\n",
         "driver uart, key `ports`: 0x3f0-0x3f8 overlaps 0x3f8-0x3ff of driver com1"),
    ];
    for (text, message) in cases {
        assert_eq!(&error_of(text), message, "policy:\n{text}");
    }
}
