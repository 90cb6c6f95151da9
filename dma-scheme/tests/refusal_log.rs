//! A refused path costs one log line of bounded length, whatever its size.
//!
//! A hostile client may open 64 KiB paths as fast as it likes; each refusal is
//! logged once, with the offending text cut to a short prefix and its length.

use std::sync::Mutex;

use dma_scheme::backend::MemfdBackend;
use dma_scheme::{DmaScheme, UniformQuota};
use redox_scheme::scheme::SchemeSync;
use scheme_runtime::caller_ctx;

/// Every message logged, in order.
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        RECORDS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record.args().to_string());
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// The longest line a refusal may log: a cut of 64 characters, each escaped to
/// at most 10 (`\u{10ffff}`), and the words around it.
const LONGEST_LINE: usize = 64 * 10 + 200;

#[test]
fn a_refused_64_kib_path_is_logged_once_and_cut_short() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let mut scheme = DmaScheme::new(MemfdBackend, UniformQuota(Some(1 << 20)));
    let ctx = caller_ctx(100, 1000, 1000);
    let root = scheme.scheme_root().unwrap();
    let big = |c: &str| c.repeat(65536);

    for path in [
        big("x"),
        format!("alloc?size={}", big("9")),
        format!("alloc?size=1&flags={}", big("a")),
        format!("alloc?size=1&{}=1", big("k")),
        format!("alloc?size=1&size={}", big("1")),
        // Control characters escape to six characters each.
        format!("alloc?size=1&{}", big("\u{1}")),
    ] {
        RECORDS.lock().unwrap().clear();
        assert!(scheme.openat(root, &path, 0, 0, &ctx).is_err());
        let records = std::mem::take(&mut *RECORDS.lock().unwrap());
        let cut = |line: &str| line.chars().take(300).collect::<String>();
        assert_eq!(
            records.len(),
            1,
            "{:?}",
            records.iter().map(|l| cut(l)).collect::<Vec<_>>()
        );
        let line = &records[0];
        assert!(
            line.len() <= LONGEST_LINE,
            "{} bytes logged: {}...",
            line.len(),
            cut(line)
        );
        assert!(line.contains("65536 bytes"), "says how long: {line}");
    }
}
