//! `romain campaign` runs this crate's program: the campaign is one of romain's
//! subcommands, as the issue tracker and the README name it.

use std::process::Command;

#[test]
fn romain_campaign_runs_the_campaign_program_with_its_arguments() {
    // Integration tests run from target/<profile>/deps; the workspace's binaries
    // sit one level up (cargo test --workspace builds them).
    let exe = std::env::current_exe().unwrap();
    let romain = exe.parent().unwrap().parent().unwrap().join("romain");
    assert!(romain.exists(), "{} is missing", romain.display());
    let refused = Command::new(&romain)
        .args(["campaign", "--replicas", "0"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("romain-campaign: group sizes and --faults must be at least 1"),
        "{said}"
    );
    let help = Command::new(&romain)
        .args(["campaign", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--faults"));
}
