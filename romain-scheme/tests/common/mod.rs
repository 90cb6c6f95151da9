//! What the engine's integration tests share: the workspace's other programs and
//! private scheme directories.
//!
//! Beside it, `supervised.rs` is the harness of the supervisor's tests (a real
//! `romain serve`); only `supervision.rs` and `state_store.rs` declare it, by path.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A binary of another package of the workspace.
pub fn workspace_binary(name: &str) -> PathBuf {
    // Integration tests run from target/<profile>/deps; the workspace's binaries sit
    // one level up.
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        binary.exists(),
        "{} is missing: build the workspace's binaries first (cargo test --workspace does)",
        binary.display()
    );
    binary
}

/// A new, empty directory for one test's schemes.
pub fn unique_dir(what: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "romain-test-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the scheme socket at `path` takes connections: its file appears a
/// moment before it does. The connection is closed unused.
pub fn takes_connections(path: &std::path::Path) -> bool {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let Ok(socket) = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return false;
    };
    UnixAddr::new(path).is_ok_and(|address| connect(socket.as_raw_fd(), &address).is_ok())
}
