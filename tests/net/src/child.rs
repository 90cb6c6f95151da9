//! A helper process a guest program starts and stops (a driver, the bridge, the echo
//! service): its standard output is read line by line in the background, so the
//! program can wait for the line that says it is ready and keep what it said last. A
//! helper still running when its `Child` is dropped is killed.

use std::io::{self, BufRead, BufReader};
use std::process::{self, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often waiting looks at the process again.
const POLL: Duration = Duration::from_millis(5);
/// How long the last lines of a process that ended may take to arrive; longer only
/// if something it started still holds its output open.
const LAST_LINES: Duration = Duration::from_secs(1);

pub struct Child {
    name: String,
    process: process::Child,
    lines: Receiver<String>,
    output: Vec<String>,
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts `command` with its standard output captured; `name` is used in errors.
    pub fn spawn(name: &str, mut command: Command) -> io::Result<Child> {
        let mut process = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {name}: {e}")))?;
        let stdout = process
            .stdout
            .take()
            .ok_or_else(|| io::Error::other(format!("{name}'s standard output is not captured")))?;
        let (sender, lines) = mpsc::channel();
        let reader_name = name.to_owned();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => {
                        log::debug!("{reader_name}: {line}");
                        if sender.send(line).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        log::warn!("reading {reader_name}'s output: {e}");
                        break;
                    }
                }
            }
        });
        Ok(Child {
            name: name.to_owned(),
            process,
            lines,
            output: Vec::new(),
            status: None,
        })
    }

    pub fn id(&self) -> u32 {
        self.process.id()
    }

    /// Every line the helper printed so far.
    pub fn output(&mut self) -> &[String] {
        self.output.extend(self.lines.try_iter());
        &self.output
    }

    /// Waits for a line that starts with `prefix` and returns it; an error if the
    /// helper ends first or `timeout` passes.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> io::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(POLL * 20)) {
                Ok(line) => {
                    self.output.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let ended = match self.wait(left) {
                        Ok(status) => format!("ended ({status})"),
                        Err(_) => "closed its output".to_string(),
                    };
                    return Err(self.error(format!("{ended} before printing {prefix:?}")));
                }
                Err(RecvTimeoutError::Timeout) if left.is_zero() => {
                    return Err(self.error(format!("printed no {prefix:?} line in {timeout:?}")));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Waits until `ready` holds, checking every few milliseconds; an error if the
    /// helper ends first or `timeout` passes.
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> io::Result<()> {
        let started = Instant::now();
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.try_wait()? {
                return Err(self.error(format!("ended ({status}) before it was ready")));
            }
            if started.elapsed() > timeout {
                return Err(self.error(format!("was not ready after {timeout:?}")));
            }
            sleep(POLL);
        }
    }

    /// Whether the helper has ended (by itself or not).
    pub fn has_ended(&mut self) -> io::Result<bool> {
        Ok(self.try_wait()?.is_some())
    }

    /// Waits for the helper to end by itself.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > timeout {
                return Err(self.error(format!("still runs after {timeout:?}")));
            }
            sleep(POLL);
        }
    }

    /// Asks the helper to stop (SIGTERM) and waits for it; it must exit successfully.
    pub fn stop(&mut self, timeout: Duration) -> io::Result<()> {
        let status = self.terminate(timeout)?;
        if status.success() {
            Ok(())
        } else {
            Err(self.error(format!("ended with {status}")))
        }
    }

    /// Sends SIGTERM unless the helper has ended, and waits for its end, which may be
    /// the signal itself for a helper that does not handle it.
    pub fn terminate(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        if self.try_wait()?.is_none() {
            kill(Pid::from_raw(self.process.id() as i32), Signal::SIGTERM)?;
        }
        self.wait(timeout)
    }

    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.process.try_wait()?;
            if self.status.is_some() {
                // Its last lines are in the pipe until the reader hands them over.
                let deadline = Instant::now() + LAST_LINES;
                let left = || deadline.saturating_duration_since(Instant::now());
                while let Ok(line) = self.lines.recv_timeout(left()) {
                    self.output.push(line);
                }
            }
        }
        Ok(self.status)
    }

    fn error(&self, what: String) -> io::Error {
        io::Error::other(format!("{} {what}", self.name))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Child {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        Child::spawn("helper", command).unwrap()
    }

    #[test]
    fn waits_for_a_ready_line_and_keeps_the_output() {
        let mut child = sh("echo starting; echo ready now; echo last");
        assert_eq!(
            child
                .wait_for_line("ready", Duration::from_secs(5))
                .unwrap(),
            "ready now"
        );
        assert!(child.wait(Duration::from_secs(5)).unwrap().success());
        assert_eq!(child.output(), ["starting", "ready now", "last"]);
    }

    #[test]
    fn a_helper_that_ends_or_stays_silent_is_an_error() {
        let mut child = sh("echo nothing; exit 3");
        let err = child
            .wait_for_line("ready", Duration::from_secs(5))
            .unwrap_err();
        assert!(err.to_string().starts_with("helper ended"), "{err}");
        assert!(err.to_string().contains("\"ready\""), "{err}");

        let mut child = sh("sleep 5");
        let err = child
            .wait_for_line("ready", Duration::from_millis(50))
            .unwrap_err();
        assert!(err.to_string().contains("printed no"), "{err}");
        let err = child.wait(Duration::from_millis(20)).unwrap_err();
        assert!(err.to_string().contains("still runs"), "{err}");
    }

    #[test]
    fn waits_until_ready_unless_the_helper_dies() {
        let mut child = sh("sleep 5");
        let mut calls = 0;
        child
            .wait_until(Duration::from_secs(5), || {
                calls += 1;
                calls == 3
            })
            .unwrap();
        assert_eq!(calls, 3);

        let mut child = sh("exit 0");
        let err = child
            .wait_until(Duration::from_secs(5), || false)
            .unwrap_err();
        assert!(err.to_string().contains("before it was ready"), "{err}");
    }

    #[test]
    fn stop_asks_with_sigterm_and_wants_success() {
        let mut child = sh("trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.01; done");
        child.wait_for_line("up", Duration::from_secs(5)).unwrap();
        child.stop(Duration::from_secs(5)).unwrap();
        assert_eq!(child.output(), ["up", "bye"]);

        let mut killed = sh("echo up; sleep 5");
        killed.wait_for_line("up", Duration::from_secs(5)).unwrap();
        let err = killed.stop(Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("signal: 15"), "{err}");
    }

    #[test]
    fn terminate_hands_back_how_it_ended() {
        use std::os::unix::process::ExitStatusExt;
        let mut killed = sh("echo up; sleep 5");
        killed.wait_for_line("up", Duration::from_secs(5)).unwrap();
        let status = killed.terminate(Duration::from_secs(5)).unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));

        let mut ended = sh("exit 3");
        assert_eq!(ended.wait(Duration::from_secs(5)).unwrap().code(), Some(3));
        let again = ended.terminate(Duration::from_secs(5)).unwrap();
        assert_eq!(again.code(), Some(3), "an ended helper gets no signal");
    }
}
