//! Stopping on SIGTERM or SIGINT: the driver switches the NIC's DMA off before it
//! exits, so the rings' memory can go back to `dma:` without the NIC writing into
//! it afterwards. The handler only raises a flag; the signal interrupts the serving
//! loop's wait, and the scheme acts on the flag after that round.
//!
//! On Redox no handler is installed: the driver's supervisor stops it.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// A stop was requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Installs the handler for SIGTERM and SIGINT.
#[cfg(target_os = "linux")]
pub fn install() -> std::io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

    extern "C" fn on_signal(_: nix::libc::c_int) {
        REQUESTED.store(true, Ordering::Relaxed);
    }
    // No SA_RESTART: the serving loop's wait returns early.
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}
