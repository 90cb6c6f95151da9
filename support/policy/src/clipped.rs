//! Client-supplied text, as log lines and denials quote it.
//!
//! A name a client sends (a label in a path, a path, a query key) can be as long
//! as the transport allows, 64 KiB or more, and can hold line breaks. Quoted
//! whole, one refused request would write a log line of that size, and a client
//! could forge log lines; so every daemon quotes such text through [`Clipped`]:
//! a short prefix with control characters escaped, and the full length when
//! the prefix is not all of it.

use std::fmt;

/// How many characters of client-supplied text are quoted.
pub const CLIPPED_CHARS: usize = 64;

/// Displays at most [`CLIPPED_CHARS`] characters of a client's text (or as
/// many as [`at_most`](Self::at_most) says), control characters escaped (`\n`,
/// `\u{1b}`), followed by `... (N bytes)` when the text is longer. Text that is
/// short and plain prints unchanged, so messages about well-formed names read
/// as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clipped<'a> {
    text: &'a str,
    chars: usize,
}

impl<'a> Clipped<'a> {
    /// A name or a path a client sent: [`CLIPPED_CHARS`] characters of it.
    pub fn new(text: &'a str) -> Self {
        Self::at_most(text, CLIPPED_CHARS)
    }

    /// `chars` characters of `text`: for a message that quotes client text
    /// inside an explanation worth keeping (a parse error).
    pub fn at_most(text: &'a str, chars: usize) -> Self {
        Self { text, chars }
    }
}

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.text.chars();
        for c in chars.by_ref().take(self.chars) {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        match chars.next() {
            Some(_) => write!(f, "... ({} bytes)", self.text.len()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_plain_text_prints_unchanged() {
        assert_eq!(Clipped::new("e1000").to_string(), "e1000");
        assert_eq!(Clipped::new("").to_string(), "");
        let exactly = "x".repeat(CLIPPED_CHARS);
        assert_eq!(Clipped::new(&exactly).to_string(), exactly);
    }

    #[test]
    fn long_text_prints_its_prefix_and_its_length() {
        let long = "a".repeat(64 * 1024);
        let shown = Clipped::new(&long).to_string();
        assert_eq!(
            shown,
            format!("{}... (65536 bytes)", "a".repeat(CLIPPED_CHARS))
        );
    }

    #[test]
    fn control_characters_cannot_start_a_log_line() {
        assert_eq!(
            Clipped::new("e1000\nERROR forged\u{1b}[2J").to_string(),
            "e1000\\nERROR forged\\u{1b}[2J"
        );
    }

    #[test]
    fn a_longer_limit_keeps_more() {
        let message = format!("unknown command \"{}\" (want kill <i>)", "k".repeat(500));
        let shown = Clipped::at_most(&message, 100).to_string();
        let tail = format!("... ({} bytes)", message.len());
        assert!(shown.starts_with("unknown command \"kkk"), "{shown}");
        assert!(shown.ends_with(&tail), "{shown}");
        assert_eq!(shown.chars().count(), 100 + tail.len());
    }

    #[test]
    fn multibyte_characters_are_never_split() {
        let long = "é".repeat(100);
        let shown = Clipped::new(&long).to_string();
        assert!(shown.starts_with(&"é".repeat(CLIPPED_CHARS)), "{shown}");
        assert!(shown.ends_with("... (200 bytes)"), "{shown}");
    }
}
