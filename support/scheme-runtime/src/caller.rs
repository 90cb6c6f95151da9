//! Building the caller identity a scheme sees.

use redox_scheme::{CallerCtx, Request, RequestKind};

/// The identity of a caller as a scheme sees it.
///
/// `CallerCtx::id` names an in-flight kernel request so that it can be cancelled;
/// the host transport has no cancellation, so every host request carries id 0
/// (the only `Id` that can be made outside `redox_scheme`: that of a default request).
pub fn caller_ctx(pid: usize, uid: u32, gid: u32) -> CallerCtx {
    let id = match Request::default().kind() {
        RequestKind::Call(call) => call.request_id(),
        RequestKind::Cancellation(cancel) => cancel.id,
        // Opcode 0 is no special opcode, so a default request is always a call.
        _ => unreachable!("a default Request is a call"),
    };
    CallerCtx { pid, uid, gid, id }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_identity() {
        let ctx = caller_ctx(42, 1000, 100);
        assert_eq!((ctx.pid, ctx.uid, ctx.gid), (42, 1000, 100));
    }
}
