//! What the driver keeps in `romain:`'s state store: its line settings, in the
//! text form the `settings` path reads (`baud=9600 data=8 parity=none stop=1`).
//!
//! A client that changes the settings expects them to hold; if the driver
//! crashes and the supervisor restarts it, the line must come back as the
//! client left it, not as the command line says. So every change is published
//! under [`SETTINGS_KEY`], and a start applies what is stored before it serves
//! anyone. A stored value that does not parse is logged and the configured
//! settings stand: a bad value must not keep the driver from starting.

use scheme_runtime::StateStore;

use crate::access::PortIo;
use crate::line::LineSettings;
use crate::port::SerialPort;
use crate::uart::{OpenError, Uart};

/// The key the line settings are kept under.
pub const SETTINGS_KEY: &str = "settings";

/// The settings to start with: `stored` (as the store gave it) applied over
/// `configured`, or `configured` when nothing usable is stored.
pub fn start_settings(configured: LineSettings, stored: Option<&[u8]>) -> LineSettings {
    let Some(stored) = stored else {
        return configured;
    };
    let parsed = std::str::from_utf8(stored)
        .map_err(|_| "not UTF-8".to_owned())
        .and_then(|text| configured.changed_by(text).map_err(|e| e.to_string()));
    match parsed {
        Ok(settings) => {
            if settings != configured {
                log::info!(
                    "line settings {settings} from the state store (configured: {configured})"
                );
            }
            settings
        }
        Err(why) => {
            log::warn!(
                "stored line settings ignored ({} bytes: {why}); using {configured}",
                stored.len()
            );
            configured
        }
    }
}

/// Opens the chip with the stored settings if there are any, else `configured`.
pub fn open_port<P: PortIo>(
    ports: P,
    configured: LineSettings,
    store: &StateStore,
) -> Result<SerialPort<P>, OpenError> {
    open_port_with(ports, configured, store.restore(SETTINGS_KEY).as_deref())
}

fn open_port_with<P: PortIo>(
    ports: P,
    configured: LineSettings,
    stored: Option<&[u8]>,
) -> Result<SerialPort<P>, OpenError> {
    let settings = start_settings(configured, stored);
    let uart = Uart::open(ports, settings)?;
    Ok(SerialPort::new(uart, settings))
}

/// The value published for `settings`: what the `settings` path reads.
pub fn stored_form(settings: &LineSettings) -> String {
    format!("{settings}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soft::Soft16550;

    #[test]
    fn stored_settings_are_applied_to_the_chip_at_start() {
        let chip = Soft16550::new();
        let configured = LineSettings::default();
        let stored = LineSettings::default()
            .changed_by("baud=9600 data=7 parity=even stop=2")
            .unwrap();
        let port = open_port_with(
            chip.clone(),
            configured,
            Some(stored_form(&stored).as_bytes()),
        )
        .unwrap();
        assert_eq!(port.settings(), stored);
        assert_eq!(chip.divisor(), 12, "9600 baud");
        assert_eq!(chip.lcr(), stored.lcr());
    }

    #[test]
    fn without_stored_settings_the_configured_ones_stand() {
        let chip = Soft16550::new();
        let configured = LineSettings::default().changed_by("baud=57600").unwrap();
        let port = open_port_with(chip.clone(), configured, None).unwrap();
        assert_eq!(port.settings(), configured);
        assert_eq!(chip.divisor(), 2);
        // A driver run by hand has no store: the same.
        let port = open_port(chip.clone(), configured, &StateStore::absent()).unwrap();
        assert_eq!(port.settings(), configured);
    }

    #[test]
    fn a_stored_value_that_does_not_parse_is_ignored() {
        let configured = LineSettings::default().changed_by("parity=odd").unwrap();
        for bad in [
            &b"baud=fast"[..],
            b"speed=9600",
            b"\xff\xfe",
            b"baud=100000",
        ] {
            let chip = Soft16550::new();
            let port = open_port_with(chip.clone(), configured, Some(bad)).unwrap();
            assert_eq!(port.settings(), configured, "{bad:?}");
            assert_eq!(chip.lcr(), configured.lcr());
        }
    }

    #[test]
    fn the_stored_form_is_the_settings_text_and_reads_back() {
        let settings = LineSettings::default()
            .changed_by("baud=300 data=5 parity=mark stop=2")
            .unwrap();
        let text = stored_form(&settings);
        assert_eq!(text, "baud=300 data=5 parity=mark stop=2\n");
        assert_eq!(
            start_settings(LineSettings::default(), Some(text.as_bytes())),
            settings
        );
    }
}
