//! `e1000`: the 82540EM driver as a scheme daemon.

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use dma_scheme::Direction;
use driver_policy::Bdf;
use e1000::dma::SchemeBuffer;
use e1000::interrupt::{
    BusyPoll, Interrupt, InterruptWait, MmioInterrupt, RelayedInterrupt, DEFAULT_BUSY_POLL_US,
};
use e1000::stats::format_mac;
use e1000::{Device, DirectIo, Io, MmioIo, NetworkScheme};
use mmio_scheme::open_path::{RegisterTarget, Target};
use scheme_runtime::replicated::RelayedLine;
use scheme_runtime::StateStore;
use syscall::flag::O_RDWR;

/// Drive an Intel 82540EM (e1000) through mmio: and dma: and serve its frames as
/// the scheme network.<NAME>. Run it as the uid the driver policy gives e1000; it
/// needs no other privilege. SIGTERM stops the NIC's DMA, then the driver.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// PCI address of the NIC, as mmio: names it (e.g. 0000:00:03.0); by
    /// default the first 82540EM (8086:100e) among the functions mmio: grants
    /// this driver
    #[arg(long, value_name = "BDF")]
    pci: Option<Bdf>,
    /// How the registers are reached: BAR 0 mapped directly, or a request to
    /// mmio: per batch of accesses
    #[arg(long, value_enum, default_value_t = Access::Mmio)]
    access: Access,
    /// Serve the scheme network.<NAME>
    #[arg(long, default_value = "e1000")]
    name: String,
    /// Poll the NIC this often (microseconds) when no request arrives and the
    /// driver polls instead of waiting for its interrupt; a frame that arrives
    /// for a waiting reader is handed over within one tick
    #[arg(long, default_value_t = 1000, value_name = "US",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    tick_us: u64,
    /// Wait for the NIC's interrupt (mmio:pci/<bdf>/irq) where mmio: grants it,
    /// or always poll every tick
    #[arg(long, value_enum, default_value_t = InterruptUse::Auto)]
    interrupt: InterruptUse,
    /// While waiting for the interrupt, still look at the NIC this often
    /// (milliseconds), in case one was lost
    #[arg(long, default_value_t = 100, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    safety_tick_ms: u64,
    /// After an interrupt, leave the line masked and poll every --tick-us
    /// while frames move, until this long (microseconds) passes without one;
    /// 0 takes every burst by its interrupt. Default: 2000 for the driver
    /// alone; 0 for a replica, whose every polling round is an event of its
    /// group while its relayed interrupt costs none
    #[arg(long, value_name = "US",
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    busy_poll_us: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InterruptUse {
    /// The interrupt where mmio: grants it, else polling (a replica's
    /// engine waits on the line for the group and runs the replicas' round)
    Auto,
    /// Polling every tick
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum Access {
    /// Volatile loads and stores on BAR 0, mapped through mmio:'s direct mode
    Direct,
    /// Batches of accesses as mmio: calls
    Mmio,
}

impl Access {
    fn name(self) -> &'static str {
        match self {
            Access::Direct => "direct",
            Access::Mmio => "mmio",
        }
    }
}

fn main() -> ExitCode {
    scheme_runtime::logging::init();
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> io::Result<()> {
    // A standby waits here, started and set up, until its supervisor needs it.
    scheme_runtime::standby::wait_if_standby();
    let bdf = match args.pci {
        Some(bdf) => bdf,
        None => find_nic()?,
    };
    let interrupt = open_interrupt(args, bdf);
    let bar0 = Target::Registers(RegisterTarget::Bar { bdf, bar: 0 });
    let handle = mmio_scheme::client::open(bar0, None, O_RDWR)?;
    let io: Box<dyn Io> = match args.access {
        Access::Direct => Box::new(DirectIo::map(handle)?),
        Access::Mmio => Box::new(MmioIo::new(handle)?),
    };
    let (rx, rx_kept) =
        SchemeBuffer::kept_ring(&format!("{}.rx", args.name), Direction::FromDevice)?;
    let (tx, tx_kept) = SchemeBuffer::kept_ring(&format!("{}.tx", args.name), Direction::ToDevice)?;
    let (device, not_taken_over) = Device::take_over_or_bring_up(io, rx, tx, rx_kept && tx_kept)?;
    let how = match not_taken_over {
        None => "taken over as the previous driver left it".to_owned(),
        Some(why) => format!("brought up afresh: {why}"),
    };
    let name = format!("network.{}", args.name);
    log::info!(
        "{} at {}: address {}, registers {}; {how}",
        name,
        bdf,
        format_mac(device.mac()),
        args.access.name()
    );
    let scheme =
        NetworkScheme::new(&name, args.access.name(), device).with_store(StateStore::from_env());
    let (mut scheme, tick) = wait_on_interrupt_or_poll(scheme, interrupt, args)?;
    #[cfg(target_os = "linux")]
    e1000::shutdown::install()?;
    scheme_runtime::serve_with_tick(&name, &mut scheme, Some(tick))
}

/// The first 82540EM among the PCI functions `mmio:` grants this driver: the
/// policy names the device by id, and the driver needs no address given.
fn find_nic() -> io::Result<Bdf> {
    let granted = mmio_scheme::client::granted_functions()?;
    let nic = granted
        .iter()
        .find(|function| function.id == e1000::DEVICE_ID);
    match nic {
        Some(nic) => {
            log::info!(
                "found the NIC at {} among {} granted",
                nic.bdf,
                granted.len()
            );
            Ok(nic.bdf)
        }
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "mmio: grants this driver no {} (it grants {}); check the policy's \
                 `device`, or give --pci",
                e1000::DEVICE_ID,
                match granted.len() {
                    0 => "no PCI function".to_owned(),
                    n => format!("{n} other functions"),
                }
            ),
        )),
    }
}

/// How the driver learns that its NIC has work.
enum Line {
    /// It waits on the line itself.
    Own(MmioInterrupt),
    /// Its engine waits on the line for the replicas and relays it.
    Relayed(RelayedLine),
}

/// The NIC's interrupt line, or why the driver polls instead. Opened before
/// the NIC is brought up: on Linux the first open binds the function to
/// `uio_pci_generic`, and the kernel enables the function as it binds. A
/// replica only names it: its engine opens it (when it starts serving).
fn open_interrupt(args: &Args, bdf: Bdf) -> Result<Line, String> {
    match args.interrupt {
        InterruptUse::Off => Err("--interrupt off".to_owned()),
        InterruptUse::Auto if scheme_runtime::runs_as_replica() => {
            Ok(Line::Relayed(RelayedLine::new(&MmioInterrupt::path(bdf))))
        }
        InterruptUse::Auto => MmioInterrupt::open(bdf)
            .map(Line::Own)
            .map_err(|error| error.to_string()),
    }
}

/// The scheme waiting on `interrupt` with the safety tick, or, without one,
/// polling every tick.
fn wait_on_interrupt_or_poll(
    scheme: NetworkScheme,
    interrupt: Result<Line, String>,
    args: &Args,
) -> io::Result<(NetworkScheme, Duration)> {
    match interrupt {
        Ok(line) => {
            let budget_us = args.busy_poll_us.unwrap_or(match line {
                Line::Own(_) => DEFAULT_BUSY_POLL_US,
                Line::Relayed(_) => 0,
            });
            let busy_poll = BusyPoll {
                every: Duration::from_micros(args.tick_us),
                budget: Duration::from_micros(budget_us),
            };
            log::info!(
                "waiting on the NIC's interrupt{}, with a safety tick of {} ms; after one, \
                 polling every {} µs until {budget_us} µs pass without a frame",
                match line {
                    Line::Own(_) => "",
                    Line::Relayed(_) => " as the engine relays it",
                },
                args.safety_tick_ms,
                args.tick_us,
            );
            let (scheme, line): (_, Box<dyn Interrupt>) = match line {
                Line::Own(line) => (scheme, Box::new(line)),
                Line::Relayed(line) => (
                    scheme.with_relayed_line(line.clone()),
                    Box::new(RelayedInterrupt(line)),
                ),
            };
            let mut scheme = scheme.with_interrupt(InterruptWait::new(line, busy_poll))?;
            if budget_us == 0 && scheme.read_causes_as_the_line_fires() {
                log::info!("the engine reads the interrupt causes as the line fires");
            }
            Ok((scheme, Duration::from_millis(args.safety_tick_ms)))
        }
        Err(why) => {
            log::info!("polling the NIC every {} µs: {why}", args.tick_us);
            Ok((scheme, Duration::from_micros(args.tick_us)))
        }
    }
}
