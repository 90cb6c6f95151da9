//! The hostile-client suite: every daemon's scheme against a local user who
//! means harm.
//!
//! Each [`Daemon`] is served by its own scheme code over the real host transport
//! in a process of its own ([`serve`], `hostile-target serve`), so the test can
//! watch the daemon's descriptors, memory and log from outside while an
//! unprivileged process sends every [`AttackClass`] ([`attack`]) and a well-behaved
//! client keeps asking for service ([`target::Prober`]).

use std::io;
use std::time::Duration;

pub mod attack;
pub mod target;

pub use attack::AttackClass;

/// A daemon whose scheme the suite attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Daemon {
    /// The scheme runtime's own test scheme (queues, calls, shared memory).
    Testbed,
    /// `dma:` over memfd memory, quotas from a policy.
    Dma,
    /// `mmio:` over a software e1000's register banks, checked by a policy.
    Mmio,
    /// `romain:` supervising a registry of one driver that is never started.
    Romain,
    /// The 16550 driver's `uart.test` over a software chip.
    Uart,
    /// The e1000 driver's `network.test` over the software 82540EM.
    E1000,
}

/// The uid the policies below grant something to; the attacker is never it.
pub const DRIVER_UID: u32 = 1001;

impl Daemon {
    pub const ALL: [Daemon; 6] = [
        Daemon::Testbed,
        Daemon::Dma,
        Daemon::Mmio,
        Daemon::Romain,
        Daemon::Uart,
        Daemon::E1000,
    ];

    /// The scheme it serves.
    pub fn scheme(self) -> &'static str {
        match self {
            Daemon::Testbed => "testbed",
            Daemon::Dma => "dma",
            Daemon::Mmio => "mmio",
            Daemon::Romain => "romain",
            Daemon::Uart => "uart.test",
            Daemon::E1000 => "network.test",
        }
    }

    /// A path any caller may open and read: what the well-behaved client asks for.
    pub fn probe_path(self) -> String {
        let path = match self {
            Daemon::Testbed => "stats",
            Daemon::Romain => "",
            Daemon::Dma | Daemon::Mmio | Daemon::Uart | Daemon::E1000 => "status",
        };
        format!("{}:{path}", self.scheme())
    }
}

/// Serves `daemon`'s scheme in the scheme directory until killed.
pub fn serve(daemon: Daemon) -> io::Result<()> {
    let name = daemon.scheme();
    match daemon {
        Daemon::Testbed => scheme_runtime::serve(name, &mut scheme_testbed::Testbed::new()),
        Daemon::Dma => {
            let policy = policy(&format!(
                "[driver.e1000]\nuid = {DRIVER_UID}\ndma_quota = \"1M\"\nschemes = [\"dma\"]\n"
            ))?;
            let mut scheme = dma_scheme::DmaScheme::new(dma_scheme::backend::MemfdBackend, policy);
            scheme_runtime::serve(name, &mut scheme)
        }
        Daemon::Mmio => {
            let policy = policy(&format!(
                "[driver.e1000]\nuid = {DRIVER_UID}\ndevice = \"8086:100e\"\nbars = [0]\nschemes = [\"mmio\"]\n"
            ))?;
            let mut scheme = mmio_scheme::MmioScheme::new(policy, soft_e1000_bus()?);
            scheme_runtime::serve(name, &mut scheme)
        }
        Daemon::Romain => {
            let registry = "[driver.absent]\nbinary = \"/nonexistent/driver\"\n"
                .parse()
                .map_err(io::Error::other)?;
            let supervisor = romain_scheme::Supervisor::new(registry, None);
            let tick = supervisor.tick();
            let mut scheme = romain_scheme::RomainScheme::new(supervisor, romain_scheme::own_uid());
            scheme_runtime::serve_with_tick(name, &mut scheme, Some(tick))
        }
        Daemon::Uart => {
            use uart16550::poll::PollPolicy;
            let settings = uart16550::LineSettings::default();
            let chip = uart16550::soft::Soft16550::new();
            let uart = uart16550::uart::Uart::open(chip, settings)
                .map_err(|e| io::Error::other(format!("{e:?}")))?;
            let port = uart16550::port::SerialPort::new(uart, settings);
            let poll = PollPolicy {
                linger: Duration::ZERO,
                budget: Duration::from_millis(100),
            };
            let mut scheme = uart16550::UartScheme::new(name, "software 16550".into(), port, poll);
            scheme_runtime::serve_with_tick(name, &mut scheme, Some(Duration::from_millis(10)))
        }
        Daemon::E1000 => {
            use e1000::model::{FakeDma, SoftNic};
            use e1000::ring::RING_SLOTS;
            let dma = FakeDma::new();
            let nic = SoftNic::new(&dma, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
            let device =
                e1000::Device::bring_up(nic.io(), dma.ring(RING_SLOTS), dma.ring(RING_SLOTS))?;
            let mut scheme = e1000::NetworkScheme::new(name, "model", device);
            scheme_runtime::serve_with_tick(name, &mut scheme, Some(Duration::from_millis(10)))
        }
    }
}

fn policy(text: &str) -> io::Result<driver_policy::Policy> {
    text.parse().map_err(io::Error::other)
}

/// A software e1000 at 00:03.0: BAR 0 reads a link-up STATUS.
fn soft_e1000_bus() -> io::Result<mmio_scheme::SoftMachine> {
    use mmio_scheme::bus::SoftBank;
    use mmio_scheme::wire::Width;
    let bar0 = SoftBank::memory(0x2_0000);
    bar0.poke(0x8, Width::U32, 0x8008_0783);
    let mut machine = mmio_scheme::SoftMachine::new();
    let id = driver_policy::DeviceId {
        vendor: 0x8086,
        device: 0x100e,
    };
    let bdf = "00:03.0".parse().map_err(io::Error::other)?;
    machine.add_bar(bdf, id, 0, bar0);
    Ok(machine)
}
