//! The daemons' logger: `env_logger`'s output, with every line cut to a bounded
//! length and every call site rate-limited.
//!
//! A daemon logs what its clients do wrong, and its clients are any local user:
//! without bounds, one client's 64 KiB path or a loop of refused requests turns
//! into megabytes of log a second. So a line keeps at most [`MAX_LINE`] bytes of
//! its message, and each call site (file and line) may log [`BURST`] lines at once
//! and [`PER_SECOND`] a second after that; what it could not log is counted and
//! said with its next line.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use log::{Log, Metadata, Record};

/// Most bytes of one message that are written.
pub const MAX_LINE: usize = 512;
/// Lines one call site may log at once.
pub const BURST: f64 = 20.0;
/// Lines one call site may log a second, once its burst is spent.
pub const PER_SECOND: f64 = 5.0;

/// Installs the logger: the level from `RUST_LOG`, `info` by default, times to
/// the millisecond (a driver's restart is told in milliseconds). A second call
/// changes nothing.
pub fn init() {
    let inner = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .build();
    let max_level = inner.filter();
    let logger = BoundedLogger {
        inner,
        sites: Mutex::new(HashMap::new()),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max_level);
    }
}

/// Every line logged since the last [`take_captured`], as `LEVEL message`.
static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The logger of tests that check what a scheme logs: keeps every line of every
/// level, unbounded. Installed once per process by [`capture`].
struct Capture;

impl Log for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        CAPTURED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("{} {}", record.level(), record.args()));
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Installs a logger that keeps every line for [`take_captured`] (for tests of
/// what a scheme logs); instead of [`init`], never beside it.
pub fn capture() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

/// The lines logged since the last call, when [`capture`] installed the logger.
pub fn take_captured() -> Vec<String> {
    std::mem::take(
        &mut *CAPTURED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// What one call site has left to log.
#[derive(Debug)]
struct Budget {
    tokens: f64,
    refilled: Instant,
    suppressed: u64,
}

impl Budget {
    fn new(now: Instant) -> Self {
        Self {
            tokens: BURST,
            refilled: now,
            suppressed: 0,
        }
    }

    /// Whether a line may go out at `now`; when it may, how many were held back
    /// before it.
    fn spend(&mut self, now: Instant) -> Option<u64> {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * PER_SECOND).min(BURST);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

struct BoundedLogger {
    inner: env_logger::Logger,
    /// By file and line: call sites are finite, so the table is bounded.
    sites: Mutex<HashMap<(&'static str, u32), Budget>>,
}

impl Log for BoundedLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        let site = (
            record
                .file_static()
                .or(record.module_path_static())
                .unwrap_or(""),
            record.line().unwrap_or(0),
        );
        let held_back = {
            let Ok(mut sites) = self.sites.lock() else {
                return;
            };
            let now = Instant::now();
            match sites
                .entry(site)
                .or_insert_with(|| Budget::new(now))
                .spend(now)
            {
                Some(held_back) => held_back,
                None => return,
            }
        };
        let mut line = bounded_message(record);
        if held_back > 0 {
            let _ = write!(line, " ({held_back} like it not logged)");
        }
        self.inner.log(
            &Record::builder()
                .metadata(record.metadata().clone())
                .args(format_args!("{line}"))
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// The record's message, cut to [`MAX_LINE`] bytes on a character boundary.
fn bounded_message(record: &Record<'_>) -> String {
    let mut line = String::new();
    let _ = write!(Bounded::new(&mut line), "{}", record.args());
    let full = line.len();
    if full > MAX_LINE {
        let mut cut = MAX_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        let _ = write!(line, "... (cut)");
    }
    line
}

/// A writer that keeps the first [`MAX_LINE`] + 4 bytes and drops the rest, so a
/// huge message is never built whole only to be cut.
struct Bounded<'a> {
    out: &'a mut String,
}

impl<'a> Bounded<'a> {
    fn new(out: &'a mut String) -> Self {
        Self { out }
    }
}

impl Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = (MAX_LINE + 4).saturating_sub(self.out.len());
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.out.push_str(&s[..take]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_call_site_logs_its_burst_then_a_few_a_second_and_counts_the_rest() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        let allowed = (0..100).filter(|_| budget.spend(start).is_some()).count();
        assert_eq!(allowed, BURST as usize);
        let later = start + Duration::from_secs(1);
        assert_eq!(
            budget.spend(later),
            Some(100 - BURST as u64),
            "the next line says how many were held back"
        );
        let allowed_then = (0..100).filter(|_| budget.spend(later).is_some()).count();
        assert_eq!(allowed_then, PER_SECOND as usize - 1);
        let much_later = later + Duration::from_secs(3600);
        let refilled = (0..100)
            .filter(|_| budget.spend(much_later).is_some())
            .count();
        assert_eq!(
            refilled, BURST as usize,
            "the burst never grows past its size"
        );
    }

    #[test]
    fn a_long_message_is_cut_to_the_line_limit_on_a_character_boundary() {
        let long = "é".repeat(100_000);
        let line = bounded_message(
            &Record::builder()
                .args(format_args!("path {long:?}"))
                .build(),
        );
        assert!(line.len() <= MAX_LINE + "... (cut)".len());
        assert!(line.starts_with("path \"é"));
        assert!(line.ends_with("... (cut)"));
        let short = bounded_message(&Record::builder().args(format_args!("short")).build());
        assert_eq!(short, "short");
    }
}
