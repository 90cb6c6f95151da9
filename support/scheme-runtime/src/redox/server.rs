//! Serving a scheme on Redox.
//!
//! The same loop as on the host: handle a request, park a read or write that
//! would block on a blocking handle, and after every round let the daemon run,
//! retry parked requests and post readiness events.

use std::io;

use redox_scheme::scheme::{register_sync_scheme, Op, SchemeResponse, SchemeState};
use redox_scheme::{RequestKind, Response, SignalBehavior, Socket};
use syscall::error::{Error, EWOULDBLOCK};
use syscall::CallFlags;

use crate::readiness::{Caller, Readiness};
use crate::{caller_ctx, io_error, SchemeDaemon};

struct Parked {
    op: Op,
    caller: Caller,
}

/// Makes `daemon` reachable as scheme `name` and serves it until the kernel
/// closes the scheme socket.
///
/// Started by init as a `type = { scheme = "name" }` service, the daemon hands
/// its scheme capability to init through the `INIT_NOTIFY` descriptor and init
/// registers it in the root namespace; started otherwise, it registers the scheme
/// in its own namespace.
pub fn serve<D: SchemeDaemon>(name: &str, daemon: &mut D) -> io::Result<()> {
    let socket = Socket::create().map_err(io_error)?;
    match std::env::var("INIT_NOTIFY")
        .ok()
        .and_then(|fd| fd.parse::<usize>().ok())
    {
        Some(notify_fd) => {
            let cap_id = daemon.scheme_root().map_err(io_error)?;
            let cap_fd = socket
                .create_this_scheme_fd(0, cap_id, 0, 0)
                .map_err(io_error)?;
            libredox::call::call_wo(notify_fd, &cap_fd.to_ne_bytes(), CallFlags::FD, &[])
                .map_err(|e| io_error(Error::new(e.errno())))?;
            let _ = libredox::call::close(notify_fd);
        }
        None => register_sync_scheme(&socket, name, daemon).map_err(io_error)?,
    }
    log::info!("serving scheme {name}");
    let mut state = SchemeState::new();
    let mut parked: Vec<Parked> = Vec::new();
    let mut readiness: Readiness<usize> = Readiness::new();

    while let Some(request) = socket
        .next_request(SignalBehavior::Restart)
        .map_err(io_error)?
    {
        match request.kind() {
            RequestKind::Call(call) => {
                let ctx = call.caller();
                let caller = Caller {
                    pid: ctx.pid,
                    uid: ctx.uid,
                    gid: ctx.gid,
                };
                let mut op = match call.op() {
                    Ok(op) => op,
                    Err(call) => {
                        respond(&socket, Response::err(syscall::error::ENOSYS, call))?;
                        continue;
                    }
                };
                let response = op.handle_sync_dont_consume(&ctx, daemon, &mut state);
                if would_block(&op, &response) {
                    parked.push(Parked { op, caller });
                    continue;
                }
                if let (Op::Fevent { fd, req_flags, .. }, SchemeResponse::Regular(Ok(ready))) =
                    (&op, &response)
                {
                    let ready = syscall::flag::EventFlags::from_bits_truncate(*ready);
                    readiness.register(*fd, *fd, caller, *req_flags, ready);
                }
                respond(&socket, into_response(response, op))?;
            }
            RequestKind::OnClose { id } => {
                readiness.forget(id);
                daemon.on_close(id);
            }
            RequestKind::Cancellation(cancel) => {
                if let Some(at) = parked
                    .iter()
                    .position(|p| redox_scheme::scheme::IntoTag::req_id(&p.op) == cancel.id)
                {
                    let Parked { op, .. } = parked.swap_remove(at);
                    respond(&socket, Response::err(syscall::error::EINTR, op))?;
                }
            }
            _ => {}
        }
        daemon.after_round();
        for Parked { mut op, caller } in std::mem::take(&mut parked) {
            let ctx = caller_ctx(caller.pid, caller.uid, caller.gid);
            let response = op.handle_sync_dont_consume(&ctx, daemon, &mut state);
            if would_block(&op, &response) {
                parked.push(Parked { op, caller });
            } else {
                respond(&socket, into_response(response, op))?;
            }
        }
        let mut posted = Ok(());
        readiness.poll(daemon, |id, _, flags| {
            if posted.is_ok() {
                posted = respond(&socket, Response::post_fevent(id, flags.bits()));
            }
        });
        posted?;
    }
    Ok(())
}

fn would_block(op: &Op, response: &SchemeResponse) -> bool {
    matches!(op, Op::Read(_) | Op::Write(_))
        && !op.is_explicitly_nonblock()
        && matches!(
            response,
            SchemeResponse::Regular(Err(Error { errno: EWOULDBLOCK }))
        )
}

fn into_response(response: SchemeResponse, op: Op) -> Response {
    match response {
        SchemeResponse::Opened(open) => Response::open_dup_like(open, op),
        SchemeResponse::RegularAndNotifyOnDetach(status) => {
            Response::new_notify_on_detach(status, op)
        }
        SchemeResponse::Regular(status) => Response::new(status, op),
    }
}

fn respond(socket: &Socket, response: Response) -> io::Result<()> {
    socket
        .write_response(response, SignalBehavior::Restart)
        .map_err(io_error)?;
    Ok(())
}
