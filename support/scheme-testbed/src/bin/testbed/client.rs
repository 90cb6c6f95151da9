//! `testbed client`: one client process, for scripts, tests and the demo.

use std::io::{self, Write};

use scheme_runtime::Handle;
use syscall::flag::O_RDWR;

#[derive(clap::Args)]
pub struct ClientArgs {
    /// A scheme path: `testbed:queue/a` or `/scheme/testbed/whoami`.
    path: String,
    /// Write this text to the handle.
    #[arg(long)]
    write: Option<String>,
    /// Read once and print what came back.
    #[arg(long)]
    read: bool,
    /// Open the path this many times, print `holding N`, then block reading the
    /// first handle until killed (tests use this to kill a client mid-request).
    #[arg(long, value_name = "N")]
    hold: Option<usize>,
}

pub fn run(args: ClientArgs) -> io::Result<()> {
    if let Some(count) = args.hold {
        let handles = (0..count.max(1))
            .map(|_| Handle::open(&args.path, O_RDWR))
            .collect::<io::Result<Vec<_>>>()?;
        println!("holding {}", handles.len());
        io::stdout().flush()?;
        let mut buf = [0u8; 1];
        handles[0].read(&mut buf)?;
        return Ok(());
    }
    let handle = Handle::open(&args.path, O_RDWR)?;
    if let Some(text) = &args.write {
        let n = handle.write(text.as_bytes())?;
        println!("wrote {n} bytes");
    }
    if args.read {
        let mut buf = vec![0u8; 4096];
        let n = handle.read(&mut buf)?;
        io::stdout().write_all(&buf[..n])?;
    }
    handle.close()
}
