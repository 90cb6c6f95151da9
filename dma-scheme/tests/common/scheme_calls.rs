//! The dma scheme's calls as a test makes them: open a path, read a buffer's
//! info or the status text, each as a given caller, and the errno of a refusal.

use dma_scheme::info::INFO_CALL;
use dma_scheme::BufferInfo;
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::caller_ctx;
use syscall::error::Error;

/// Root, who reads every client's line in `status`.
pub fn root() -> CallerCtx {
    caller_ctx(1, 0, 0)
}

/// Opens `path` relative to the scheme's root as `ctx`: the handle's id.
pub fn open_as<S: SchemeSync>(scheme: &mut S, path: &str, ctx: &CallerCtx) -> Result<usize, Error> {
    let root = scheme.scheme_root()?;
    match scheme.openat(root, path, 0, 0, ctx)? {
        OpenResult::ThisScheme { number, .. } => Ok(number),
        _ => panic!("the dma scheme opens only its own handles"),
    }
}

/// The errno of a call that should fail.
pub fn errno<T: std::fmt::Debug>(result: Result<T, Error>) -> i32 {
    result.expect_err("should fail").errno
}

/// The info of buffer `id`, asked for as `ctx`.
pub fn info_as<S: SchemeSync>(
    scheme: &mut S,
    id: usize,
    ctx: &CallerCtx,
) -> Result<BufferInfo, Error> {
    let mut payload = [0; BufferInfo::LEN];
    let n = scheme.call(id, &mut payload, &[INFO_CALL], ctx)?;
    assert_eq!(n, BufferInfo::LEN);
    Ok(BufferInfo::from_bytes(&payload).expect("well-formed info"))
}

/// The status text as root reads it.
pub fn status<S: SchemeSync>(scheme: &mut S) -> String {
    status_as(scheme, &root())
}

/// The status text as `ctx` reads it.
pub fn status_as<S: SchemeSync>(scheme: &mut S, ctx: &CallerCtx) -> String {
    let id = open_as(scheme, "status", ctx).unwrap();
    let mut text = vec![0; 4096];
    let n = scheme.read(id, &mut text, 0, 0, ctx).unwrap();
    scheme.on_close(id);
    text.truncate(n);
    String::from_utf8(text).unwrap()
}
