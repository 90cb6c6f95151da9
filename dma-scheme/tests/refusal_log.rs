//! A refused path costs one log line of bounded length, whatever its size.
//!
//! A hostile client may open 64 KiB paths as fast as it likes; each refusal is
//! logged once, with the offending text cut to a short prefix and its length.

use dma_scheme::backend::MemfdBackend;
use dma_scheme::{DmaScheme, UniformQuota};
use redox_scheme::scheme::SchemeSync;
use scheme_runtime::caller_ctx;

/// The longest line a refusal may log: a cut of 64 characters, each escaped to
/// at most 10 (`\u{10ffff}`), and the words around it.
const LONGEST_LINE: usize = 64 * 10 + 200;

#[test]
fn a_refused_64_kib_path_is_logged_once_and_cut_short() {
    scheme_runtime::logging::capture();
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
        format!("alloc?size=1&keep={}", big("k")),
        // Control characters escape to six characters each.
        format!("alloc?size=1&{}", big("\u{1}")),
    ] {
        scheme_runtime::logging::take_captured();
        assert!(scheme.openat(root, &path, 0, 0, &ctx).is_err());
        let records = scheme_runtime::logging::take_captured();
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
