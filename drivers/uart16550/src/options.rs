//! The driver's command line, and starting it: open the chip the chosen way, then
//! serve the scheme.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use driver_policy::PortRange;
use scheme_runtime::StateStore;

use crate::access::{DirectPorts, MmioPorts, PortIo};
use crate::line::{LineSettings, Parity};
use crate::poll::{PollPolicy, ROUND_BUDGET};
use crate::registers::PORT_COUNT;
use crate::scheme::UartScheme;
use crate::state;

/// How the driver reaches the chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Access {
    /// `in`/`out` instructions in this process (needs port rights: root on Linux)
    Direct,
    /// Through `mmio:port/<first>-<last>`, as the policy's driver for those ports
    Mmio,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Direct => "direct access (in/out)",
            Access::Mmio => "access through mmio:",
        })
    }
}

/// Drive a 16550 UART and serve it as a serial scheme: `data` (the line), `settings`
/// and `status`. The driver polls the chip (there are no interrupts in user space).
#[derive(Parser, Debug)]
#[command(version)]
pub struct Options {
    /// How to reach the chip
    #[arg(long, value_enum, default_value_t = Access::Mmio)]
    pub access: Access,
    /// Scheme name to serve
    #[arg(long, default_value = "uart.com2")]
    pub scheme: String,
    /// First of the UART's 8 I/O ports (COM1 0x3f8, COM2 0x2f8)
    #[arg(long, default_value = "0x2f8", value_parser = parse_port)]
    pub base: u16,
    /// Baud rate; must divide 115200
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Data bits per character (5-8)
    #[arg(long, default_value_t = 8)]
    pub data_bits: u8,
    /// Parity bit per character
    #[arg(long, value_enum, default_value_t = Parity::None)]
    pub parity: Parity,
    /// Stop bits (1 or 2; 2 means 1.5 with 5 data bits)
    #[arg(long, default_value_t = 1)]
    pub stop_bits: u8,
    /// Microseconds between polls of an idle chip
    #[arg(long, default_value_t = 1000, value_name = "MICROSECONDS")]
    pub poll_interval: u64,
    /// Microseconds a busy poll goes on after the last byte moved
    #[arg(long, default_value_t = 500, value_name = "MICROSECONDS")]
    pub linger: u64,
}

fn parse_port(text: &str) -> Result<u16, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?} is not a port number (0x2f8 or 760)"))
}

impl Options {
    /// The UART's ports.
    pub fn ports(&self) -> Result<PortRange, String> {
        self.base
            .checked_add(PORT_COUNT - 1)
            .and_then(|last| PortRange::new(self.base, last))
            .ok_or_else(|| format!("a UART at {:#x} would run past port 0xffff", self.base))
    }

    pub fn settings(&self) -> Result<LineSettings, String> {
        LineSettings::new(self.baud, self.data_bits, self.parity, self.stop_bits)
            .map_err(|error| error.to_string())
    }

    /// How long the server waits for requests before it polls an idle chip.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_micros(self.poll_interval)
    }

    pub fn poll_policy(&self) -> PollPolicy {
        PollPolicy {
            linger: Duration::from_micros(self.linger),
            budget: ROUND_BUDGET,
        }
    }
}

/// Runs the driver until serving fails.
pub fn run(options: &Options) -> Result<(), Box<dyn Error>> {
    let ports = options.ports()?;
    let settings = options.settings()?;
    let device = format!("16550 at ports {ports}, {}", options.access);
    // A standby waits here, started and set up, until its supervisor needs it.
    scheme_runtime::standby::wait_if_standby();
    log::info!("opening the {device} with {settings}");
    match options.access {
        Access::Direct => serve(DirectPorts::open(ports)?, settings, device, options),
        Access::Mmio => serve(MmioPorts::open(ports)?, settings, device, options),
    }
}

fn serve<P: PortIo>(
    ports: P,
    settings: LineSettings,
    device: String,
    options: &Options,
) -> Result<(), Box<dyn Error>> {
    let store = StateStore::from_env();
    let port = state::open_port(ports, settings, &store)?;
    let mut scheme =
        UartScheme::new(&options.scheme, device, port, options.poll_policy()).with_store(store);
    // A 16550's interrupt is an ISA line (COM2: IRQ 3), which the kernel's
    // own serial code holds on Linux and on Redox; `mmio:` serves the
    // interrupts of PCI functions only.
    log::info!(
        "the UART answers; polling it every {} µs, lingering {} µs after traffic \
         (its ISA interrupt line is the kernel's serial driver's)",
        options.poll_interval,
        options.linger
    );
    let tick = Some(options.poll_interval());
    scheme_runtime::serve_with_tick(&options.scheme, &mut scheme, tick)
        .map_err(|error| format!("serving {}: {error}", options.scheme).into())
}
