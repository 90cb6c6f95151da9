//! Taking the guest NIC's link down and up through QEMU's machine protocol
//! (QMP), as pulling and plugging the cable would: QEMU's e1000 then raises a
//! link-status-change interrupt and reports the link in STATUS.
//!
//! One connection per command: QEMU greets with a line, the client sends
//! `qmp_capabilities` and then the command, each answered with one line that
//! holds `"return"`, or `"error"` with its reason. Events QEMU sends
//! meanwhile are lines with `"event"`, skipped.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The user network the guest's e1000 is on (the command line's `-netdev id`).
pub const GUEST_NETDEV: &str = "n1";
/// How long QEMU may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets the link of network device `name` up or down through the QMP socket
/// at `socket`.
pub fn set_link(socket: &Path, name: &str, up: bool) -> Result<(), String> {
    let failed =
        |what: &str, e: std::io::Error| format!("QMP at {}: {what}: {e}", socket.display());
    let stream = UnixStream::connect(socket).map_err(|e| failed("connecting", e))?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| failed("setting a timeout", e))?;
    let mut writer = stream.try_clone().map_err(|e| failed("cloning", e))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| failed("reading the greeting", e))?;
    if !line.contains("\"QMP\"") {
        return Err(format!(
            "QMP at {}: greeted with {line:?}",
            socket.display()
        ));
    }
    for command in [
        r#"{"execute":"qmp_capabilities"}"#.to_owned(),
        format!(r#"{{"execute":"set_link","arguments":{{"name":"{name}","up":{up}}}}}"#),
    ] {
        writer
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| failed("sending", e))?;
        answer(&mut reader)
            .map_err(|why| format!("QMP at {}: {command}: {why}", socket.display()))?;
    }
    Ok(())
}

/// Reads lines until the answer to the last command; its error, if it is one.
fn answer(reader: &mut impl BufRead) -> Result<(), String> {
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return Err("QEMU closed the connection".to_owned()),
            Ok(_) if line.contains("\"event\"") => continue,
            Ok(_) if line.contains("\"return\"") => return Ok(()),
            Ok(_) => return Err(line.trim_end().to_owned()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A QMP server that answers one connection as `reply` says, and returns
    /// the commands it was sent.
    fn serve(
        reply: fn(&str) -> String,
    ) -> (std::path::PathBuf, std::thread::JoinHandle<Vec<String>>) {
        let dir = std::env::temp_dir().join(format!(
            "qmp-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            writer
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            let mut seen = Vec::new();
            for line in BufReader::new(stream).lines() {
                let line = line.unwrap();
                writer.write_all(reply(&line).as_bytes()).unwrap();
                seen.push(line);
            }
            seen
        });
        (path, server)
    }

    #[test]
    fn the_link_is_set_after_the_capabilities_and_events_are_skipped() {
        let (path, server) = serve(|command| match command.contains("set_link") {
            true => "{\"event\": \"NIC_RX_FILTER_CHANGED\"}\r\n{\"return\": {}}\r\n".to_owned(),
            false => "{\"return\": {}}\r\n".to_owned(),
        });
        set_link(&path, GUEST_NETDEV, false).unwrap();
        assert_eq!(
            server.join().unwrap(),
            [
                r#"{"execute":"qmp_capabilities"}"#,
                r#"{"execute":"set_link","arguments":{"name":"n1","up":false}}"#
            ]
        );
    }

    #[test]
    fn an_error_answer_and_a_missing_socket_are_reported() {
        let (path, server) = serve(|command| match command.contains("set_link") {
            true => {
                "{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"no n9\"}}\r\n".to_owned()
            }
            false => "{\"return\": {}}\r\n".to_owned(),
        });
        let error = set_link(&path, "n9", true).unwrap_err();
        assert!(error.contains("DeviceNotFound"), "{error}");
        assert!(error.contains(r#""up":true"#), "{error}");
        server.join().unwrap();
        let error = set_link(Path::new("/nonexistent/qmp.sock"), "n1", true).unwrap_err();
        assert!(error.contains("connecting"), "{error}");
    }
}
