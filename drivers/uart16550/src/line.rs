//! Line settings (baud rate, data bits, parity, stop bits): checking them, the text
//! form the `settings` path reads and writes, and the register values they become.
//!
//! The text form is whitespace-separated `key=value` words, every key optional when
//! changing settings: `baud=115200 data=8 parity=none stop=1`.

use std::fmt;
use std::str::FromStr;

use crate::registers::{BAUD_CLOCK, LCR_EPS, LCR_PEN, LCR_STB, LCR_STICK_PARITY};

/// The parity bit each character carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Parity {
    None,
    Odd,
    Even,
    /// Always 1.
    Mark,
    /// Always 0.
    Space,
}

impl Parity {
    const ALL: [Parity; 5] = [
        Parity::None,
        Parity::Odd,
        Parity::Even,
        Parity::Mark,
        Parity::Space,
    ];

    fn name(self) -> &'static str {
        match self {
            Parity::None => "none",
            Parity::Odd => "odd",
            Parity::Even => "even",
            Parity::Mark => "mark",
            Parity::Space => "space",
        }
    }

    /// LCR's parity bits: stick parity with EPS clear sends 1 (mark), with EPS set 0.
    fn lcr_bits(self) -> u8 {
        match self {
            Parity::None => 0,
            Parity::Odd => LCR_PEN,
            Parity::Even => LCR_PEN | LCR_EPS,
            Parity::Mark => LCR_PEN | LCR_STICK_PARITY,
            Parity::Space => LCR_PEN | LCR_EPS | LCR_STICK_PARITY,
        }
    }
}

impl FromStr for Parity {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, SettingsError> {
        Parity::ALL
            .into_iter()
            .find(|parity| parity.name() == text)
            .ok_or_else(|| {
                SettingsError::bad("parity", text, "want none, odd, even, mark or space")
            })
    }
}

/// Why settings are refused (EINVAL to a client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsError {
    /// A word that is not `key=value`.
    NotKeyValue(String),
    UnknownKey(String),
    BadValue {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

impl SettingsError {
    fn bad(key: &'static str, value: impl fmt::Display, why: &'static str) -> Self {
        Self::BadValue {
            key,
            value: value.to_string(),
            why,
        }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotKeyValue(word) => write!(f, "{word:?} is not key=value"),
            Self::UnknownKey(key) => {
                write!(
                    f,
                    "unknown setting {key:?} (want baud, data, parity or stop)"
                )
            }
            Self::BadValue { key, value, why } => write!(f, "{key}={value}: {why}"),
        }
    }
}

impl std::error::Error for SettingsError {}

/// Checked line settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineSettings {
    baud: u32,
    data_bits: u8,
    parity: Parity,
    stop_bits: u8,
}

impl Default for LineSettings {
    /// 115200 baud, 8 data bits, no parity, 1 stop bit.
    fn default() -> Self {
        Self {
            baud: BAUD_CLOCK,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
        }
    }
}

impl LineSettings {
    /// `baud` must divide the chip's clock (115200) into a divisor that fits the
    /// 16-bit latch, so the rate is exact; 5 to 8 data bits; 1 or 2 stop bits (2
    /// means 1.5 with 5 data bits, as the chip does).
    pub fn new(
        baud: u32,
        data_bits: u8,
        parity: Parity,
        stop_bits: u8,
    ) -> Result<Self, SettingsError> {
        let exact = baud != 0 && BAUD_CLOCK.is_multiple_of(baud);
        if !exact || BAUD_CLOCK / baud > u32::from(u16::MAX) {
            return Err(SettingsError::bad(
                "baud",
                baud,
                "want a rate of 2 or more that divides 115200 (115200, 57600, 38400, 9600, ...)",
            ));
        }
        if !(5..=8).contains(&data_bits) {
            return Err(SettingsError::bad("data", data_bits, "want 5 to 8"));
        }
        if !(1..=2).contains(&stop_bits) {
            return Err(SettingsError::bad("stop", stop_bits, "want 1 or 2"));
        }
        Ok(Self {
            baud,
            data_bits,
            parity,
            stop_bits,
        })
    }

    pub fn baud(&self) -> u32 {
        self.baud
    }

    pub fn data_bits(&self) -> u8 {
        self.data_bits
    }

    pub fn parity(&self) -> Parity {
        self.parity
    }

    pub fn stop_bits(&self) -> u8 {
        self.stop_bits
    }

    /// These settings with those `text` names changed; the rest stay.
    pub fn changed_by(&self, text: &str) -> Result<Self, SettingsError> {
        let (mut baud, mut data_bits, mut parity, mut stop_bits) =
            (self.baud, self.data_bits, self.parity, self.stop_bits);
        for word in text.split_whitespace() {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| SettingsError::NotKeyValue(word.to_owned()))?;
            match key {
                "baud" => baud = number("baud", value)?,
                "data" => data_bits = number("data", value)?,
                "parity" => parity = value.parse()?,
                "stop" => stop_bits = number("stop", value)?,
                other => return Err(SettingsError::UnknownKey(other.to_owned())),
            }
        }
        Self::new(baud, data_bits, parity, stop_bits)
    }

    /// The Divisor Latch value (DLM:DLL).
    pub fn divisor(&self) -> u16 {
        // `new` admits only rates whose divisor fits.
        (BAUD_CLOCK / self.baud) as u16
    }

    /// The Line Control Register value, DLAB clear.
    pub fn lcr(&self) -> u8 {
        let stop = if self.stop_bits == 2 { LCR_STB } else { 0 };
        (self.data_bits - 5) | stop | self.parity.lcr_bits()
    }
}

fn number<T: FromStr>(key: &'static str, value: &str) -> Result<T, SettingsError> {
    value
        .parse()
        .map_err(|_| SettingsError::bad(key, value, "not a number"))
}

impl fmt::Display for LineSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "baud={} data={} parity={} stop={}",
            self.baud,
            self.data_bits,
            self.parity.name(),
            self.stop_bits
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::LCR_WLS_MASK;
    use proptest::prelude::*;

    #[test]
    fn default_is_115200_8n1() {
        let settings = LineSettings::default();
        assert_eq!(
            settings.to_string(),
            "baud=115200 data=8 parity=none stop=1"
        );
        assert_eq!(settings.divisor(), 1);
        assert_eq!(settings.lcr(), 0x03);
    }

    #[test]
    fn line_control_register_as_the_datasheet_lays_it_out() {
        let lcr = |text| LineSettings::default().changed_by(text).unwrap().lcr();
        assert_eq!(lcr("data=5"), 0x00);
        assert_eq!(
            lcr("data=7 parity=even stop=2"),
            0x02 | LCR_STB | LCR_PEN | LCR_EPS
        );
        assert_eq!(lcr("parity=odd"), 0x03 | LCR_PEN);
        assert_eq!(lcr("parity=mark"), 0x03 | LCR_PEN | LCR_STICK_PARITY);
        assert_eq!(
            lcr("parity=space"),
            0x03 | LCR_PEN | LCR_EPS | LCR_STICK_PARITY
        );
        assert_eq!(lcr("data=6") & LCR_WLS_MASK, 1);
    }

    #[test]
    fn divisors_of_common_rates() {
        for (baud, divisor) in [
            (115_200, 1),
            (57_600, 2),
            (9_600, 12),
            (300, 384),
            (50, 2304),
        ] {
            let settings = LineSettings::new(baud, 8, Parity::None, 1).unwrap();
            assert_eq!(settings.divisor(), divisor, "{baud}");
        }
    }

    #[test]
    fn changes_keep_what_the_text_does_not_name() {
        let settings = LineSettings::default()
            .changed_by("  parity=even\nbaud=9600 ")
            .unwrap();
        assert_eq!(settings.to_string(), "baud=9600 data=8 parity=even stop=1");
        assert_eq!(settings.changed_by("").unwrap(), settings);
    }

    #[test]
    fn bad_settings_are_errors_that_say_why() {
        let base = LineSettings::default();
        for (text, message) in [
            (
                "baud=100000",
                "baud=100000: want a rate of 2 or more that divides",
            ),
            ("baud=0", "baud=0: want a rate"),
            ("baud=1", "baud=1: want a rate"),
            ("baud=fast", "baud=fast: not a number"),
            ("baud=-1", "baud=-1: not a number"),
            ("data=9", "data=9: want 5 to 8"),
            ("data=4", "data=4: want 5 to 8"),
            ("stop=3", "stop=3: want 1 or 2"),
            ("stop=0", "stop=0: want 1 or 2"),
            ("parity=sometimes", "parity=sometimes: want none, odd, even"),
            ("speed=9600", "unknown setting \"speed\""),
            ("baud", "\"baud\" is not key=value"),
        ] {
            let error = base.changed_by(text).unwrap_err().to_string();
            assert!(error.starts_with(message), "{text}: {error}");
        }
    }

    proptest! {
        #[test]
        fn text_form_round_trips(
            divisor in prop::sample::select(
                (1..=u32::from(u16::MAX)).filter(|d| BAUD_CLOCK.is_multiple_of(*d)).collect::<Vec<_>>()
            ),
            data_bits in 5u8..=8,
            parity in prop::sample::select(Parity::ALL.to_vec()),
            stop_bits in 1u8..=2,
        ) {
            let settings = LineSettings::new(BAUD_CLOCK / divisor, data_bits, parity, stop_bits).unwrap();
            prop_assert_eq!(LineSettings::default().changed_by(&settings.to_string()).unwrap(), settings);
            prop_assert_eq!(u32::from(settings.divisor()), divisor);
        }
    }
}
