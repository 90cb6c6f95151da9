//! The state store end to end: `romain serve` in its own process and scheme
//! directory, `romain-testdriver remember` as a driver that counts its starts
//! in its store, and this test as the driver's user (the registry gives the
//! drivers no uid, so they run as the supervisor, as this test does): values
//! outlive the driver's restarts, values written while it restarts are kept,
//! the limits hold over the real transport, and (as root) another user is
//! refused. And the UART driver's line settings through a `romain:` served in
//! this process: published when a client changes them, applied at the next
//! start.
#![cfg(target_os = "linux")]

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use scheme_runtime::StateStore;
use syscall::error::{EACCES, EFBIG, EINVAL, ENOENT, ENOSPC, ESRCH};
use syscall::flag::{O_RDONLY, O_RDWR, O_WRONLY};

#[path = "common/supervised.rs"]
mod supervised;

use supervised::{errno, unique, wait_for, Supervised};

const TEST_DRIVER: &str = env!("CARGO_BIN_EXE_romain-testdriver");
/// The user `remember-asuser` runs as: nobody's on a test machine.
const DRIVER_USER: u32 = 4321;
const LIMIT: Duration = Duration::from_secs(5);

/// `remember` counts its starts; `crashy` exits at once and is backed off;
/// `remember-asuser` counts its starts as [`DRIVER_USER`].
fn registry() -> String {
    format!(
        r#"
        [driver.remember]
        binary = "{TEST_DRIVER}"
        args = ["remember", "remember-scheme"]
        heartbeat = "remember-scheme:"
        period_ms = 200

        [driver.crashy]
        binary = "{TEST_DRIVER}"
        args = ["exit", "3"]
        period_ms = 300
        backoff_cap_periods = 4

        [driver.remember-asuser]
        binary = "{TEST_DRIVER}"
        args = ["remember", "asuser-scheme"]
        period_ms = 200
        uid = {DRIVER_USER}
        gid = {DRIVER_USER}
"#
    )
}

/// What these tests ask of the daemon beyond the shared [`Supervised`].
trait StoreTests {
    /// Starts the daemon on [`registry`].
    fn start() -> Self;
    fn store(&self, driver: &str) -> StateStore;
    /// What the `remember` driver serving `scheme` counted.
    fn starts_counted(&self, scheme: &str) -> String;
}

impl StoreTests for Supervised {
    fn start() -> Self {
        Supervised::serve(None, |_| registry())
    }

    fn store(&self, driver: &str) -> StateStore {
        StateStore::for_driver_in(driver, &self.schemes())
    }

    fn starts_counted(&self, scheme: &str) -> String {
        wait_for("the driver to serve", LIMIT, || {
            self.open(&format!("{scheme}:"), O_RDONLY)
                .and_then(|handle| {
                    let mut buf = [0u8; 64];
                    let n = handle.read_at(&mut buf, 0)?;
                    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_owned())
                })
                .ok()
        })
    }
}

#[test]
fn the_store_survives_a_restart_of_the_driver() {
    let romain = Supervised::start();
    romain.open("romain:remember", O_RDONLY).unwrap();
    let first = romain.wait_for_new_pid("remember", None, LIMIT);
    assert_eq!(romain.starts_counted("remember-scheme"), "starts=1");
    let store = romain.store("remember");
    assert_eq!(store.load("starts").unwrap().as_deref(), Some(&b"1"[..]));

    romain.command("remember", "kill 0").unwrap();
    romain.wait_for_new_pid("remember", Some(first), LIMIT);
    assert_eq!(
        romain.starts_counted("remember-scheme"),
        "starts=2",
        "the new process read what the old one saved"
    );
    assert_eq!(store.load("starts").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(romain.status("remember")["restarts"], "1");
}

#[test]
fn a_value_written_while_the_driver_restarts_is_read_back_after() {
    let romain = Supervised::start();

    // Right after a kill, before the new process runs.
    romain.open("romain:remember", O_RDONLY).unwrap();
    let first = romain.wait_for_new_pid("remember", None, LIMIT);
    let store = romain.store("remember");
    romain.command("remember", "kill 0").unwrap();
    store.save("note", b"written at the kill").unwrap();
    romain.wait_for_new_pid("remember", Some(first), LIMIT);
    assert_eq!(
        store.load("note").unwrap().as_deref(),
        Some(&b"written at the kill"[..])
    );

    // While a driver that keeps failing waits out its backoff.
    romain.open("romain:crashy", O_RDONLY).unwrap();
    let crashy = romain.store("crashy");
    let restarts = wait_for("a backoff", LIMIT, || {
        let status = romain.status("crashy");
        (status["state"] == "backoff" && status["restarts"] != "0")
            .then(|| status["restarts"].clone())
    });
    crashy.save("during-backoff", b"kept").unwrap();
    wait_for("the next restart", LIMIT, || {
        (romain.status("crashy")["restarts"] != restarts).then_some(())
    });
    assert_eq!(
        crashy.load("during-backoff").unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        store.load("note").unwrap().as_deref(),
        Some(&b"written at the kill"[..]),
        "another driver's restarts leave this one's values"
    );
}

#[test]
fn the_size_limits_hold_over_the_real_transport_with_their_errors() {
    let romain = Supervised::start();
    let store = romain.store("crashy");
    let page = vec![0xa5u8; 4096];
    store.save("page", &page).unwrap();
    assert_eq!(store.load("page").unwrap(), Some(page.clone()));
    assert_eq!(errno(store.save("page", &[0; 4097])), Some(EFBIG));
    assert_eq!(store.load("page").unwrap(), Some(page.clone()), "unchanged");

    for i in 1..16 {
        store.save(&format!("page{i}"), &page).unwrap();
    }
    assert_eq!(errno(store.save("one-more", b"x")), Some(ENOSPC), "64 KiB");
    for i in 1..64 {
        store.save(&format!("page{i}"), b"").unwrap();
    }
    assert_eq!(errno(store.save("key64", b"x")), Some(ENOSPC), "64 keys");

    assert_eq!(errno(store.save("Bad Key", b"x")), Some(EINVAL));
    assert_eq!(errno(romain.store("nosuch").save("k", b"x")), Some(ENOENT));
    assert_eq!(
        errno(romain.open("romain:store/nosuch/k", O_RDONLY)),
        Some(ENOENT)
    );
    assert_eq!(store.load("unset").unwrap(), None);
    assert_eq!(
        errno(romain.open("romain:store/crashy/unset", O_WRONLY)),
        Some(ENOENT),
        "creating takes O_CREAT"
    );
    assert_eq!(
        errno(romain.open("romain:crashy?attach", O_RDONLY)),
        Some(ESRCH),
        "the store starts no driver"
    );
}

#[test]
fn another_user_is_refused_the_store_and_the_drivers_own_user_is_not() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: a driver running as another user cannot be started; the refusal is checked at the scheme level only");
        return;
    }
    let romain = Supervised::start();
    romain.open("romain:remember-asuser", O_RDONLY).unwrap();
    let first = romain.wait_for_new_pid("remember-asuser", None, LIMIT);
    assert_eq!(romain.starts_counted("asuser-scheme"), "starts=1");
    romain.command("remember-asuser", "kill 0").unwrap();
    romain.wait_for_new_pid("remember-asuser", Some(first), LIMIT);
    assert_eq!(
        romain.starts_counted("asuser-scheme"),
        "starts=2",
        "the driver's own user reads and writes its store"
    );

    // Root supervises it, but is not its user.
    let store = romain.store("remember-asuser");
    assert_eq!(errno(store.load("starts")), Some(EACCES));
    assert_eq!(errno(store.save("starts", b"99")), Some(EACCES));
    let log = romain.log();
    assert!(
        log.contains("open store/remember-asuser/starts by pid")
            && log.contains("only the driver's own user (uid 4321) may open its store"),
        "{log}"
    );
    romain.command("remember-asuser", "kill 0").unwrap();
    wait_for("a third start", LIMIT, || {
        (romain.starts_counted("asuser-scheme") == "starts=3").then_some(())
    });
}

/// `romain:` served on a thread of this process, with `registry`, for drivers
/// built in-process (the UART driver's scheme on a software chip); stopped on
/// drop.
struct InProcess {
    dir: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    fn start(registry: &str) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = std::env::temp_dir().join(format!(
            "romain-store-inprocess-{}-{:x}",
            std::process::id(),
            unique()
        ));
        fs::create_dir_all(&dir).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let registry: romain_scheme::Registry = registry.parse().unwrap();
        let mut server = scheme_runtime::HostServer::bind(&dir, "romain").unwrap();
        server.set_tick(Some(Duration::from_millis(5)));
        let stopping = stop.clone();
        let server = std::thread::spawn(move || {
            let supervisor =
                romain_scheme::Supervisor::new(registry, Some("/nonexistent/romain".into()));
            let mut scheme = romain_scheme::RomainScheme::new(supervisor, romain_scheme::own_uid());
            while !stopping.load(Ordering::Relaxed) {
                server.run_round(&mut scheme).unwrap();
            }
        });
        Self {
            dir,
            stop,
            server: Some(server),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_uart_drivers_line_settings_outlive_its_restart() {
    use redox_scheme::scheme::SchemeSync;
    use redox_scheme::OpenResult;
    use uart16550::poll::PollPolicy;
    use uart16550::soft::Soft16550;
    use uart16550::{state, LineSettings, UartScheme};

    let romain = InProcess::start("[driver.uart]\nbinary = \"/nonexistent/uart16550\"\n");
    let store = || StateStore::for_driver_in("uart", &romain.dir);
    let configured = LineSettings::default();
    let policy = PollPolicy {
        linger: Duration::ZERO,
        budget: Duration::from_millis(1),
    };

    // The first start finds nothing stored and takes the configured settings.
    let chip = Soft16550::new();
    let port = state::open_port(chip.clone(), configured, &store()).unwrap();
    let mut scheme = UartScheme::new("uart.test", "soft".into(), port, policy).with_store(store());
    let ctx = scheme_runtime::caller_ctx(1, 0, 0);
    let OpenResult::ThisScheme { number, .. } =
        scheme.openat(0, "settings", O_RDWR, 0, &ctx).unwrap()
    else {
        panic!("not a handle")
    };
    scheme
        .write(number, b"baud=9600 parity=even", 0, 0, &ctx)
        .unwrap();
    assert_eq!(
        store().load(state::SETTINGS_KEY).unwrap().as_deref(),
        Some(&b"baud=9600 data=8 parity=even stop=1\n"[..]),
        "a change is published"
    );
    drop(scheme);

    // The restarted driver programs a fresh chip with what a client set.
    let chip = Soft16550::new();
    let port = state::open_port(chip.clone(), configured, &store()).unwrap();
    assert_eq!(
        port.settings().to_string(),
        "baud=9600 data=8 parity=even stop=1"
    );
    assert_eq!(chip.divisor(), 12);
}
