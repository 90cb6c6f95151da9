//! What our driver costs the guest's processor on a path (the driver alone, or
//! its supervisor with the engine and replicas): its share under the host's
//! load and while idle after it, read from `/proc/<pid>/stat`, and the
//! console line that carries both to the host's tables:
//!
//! ```text
//! tcp-driver-cpu e1000-direct under_load_percent=31.20 idle_percent=0.40 idle_window_s=10
//! ```

use std::fmt;
use std::io;
use std::time::Duration;

use crate::protocol::check_label;

/// The first words of the line.
const CPU_LINE: &str = "tcp-driver-cpu";
/// The kernel's clock tick in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const CLOCK_TICK: Duration = Duration::from_millis(10);

/// The driver's share of the processor, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriverCpu {
    pub under_load_percent: f64,
    pub idle_percent: f64,
    pub idle_window: Duration,
}

impl DriverCpu {
    /// The console line for the path labelled `label`.
    pub fn line(&self, label: &str) -> String {
        format!(
            "{CPU_LINE} {label} under_load_percent={:.2} idle_percent={:.2} idle_window_s={}",
            self.under_load_percent,
            self.idle_percent,
            self.idle_window.as_secs()
        )
    }

    /// The label and figures of a line [`line`](Self::line) wrote; `None` for
    /// any other line.
    pub fn parse(line: &str) -> Option<(&str, DriverCpu)> {
        let rest = line.trim_end().strip_prefix(CPU_LINE)?.strip_prefix(' ')?;
        let mut words = rest.split(' ');
        let label = words.next()?;
        check_label(label).ok()?;
        let mut value =
            |key: &str| -> Option<&str> { words.next()?.strip_prefix(key)?.strip_prefix('=') };
        let under_load_percent = value("under_load_percent")?.parse().ok()?;
        let idle_percent = value("idle_percent")?.parse().ok()?;
        let idle_window = Duration::from_secs(value("idle_window_s")?.parse().ok()?);
        words.next().is_none().then_some((
            label,
            DriverCpu {
                under_load_percent,
                idle_percent,
                idle_window,
            },
        ))
    }
}

/// The processor time process `pid` and the processes it started, and those
/// they started, have used so far (user and system): a driver alone, or a
/// supervisor with its engine and replicas.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let mut processes = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(Ok(process)) = entry?.file_name().to_str().map(str::parse::<u32>) else {
            continue;
        };
        // A process that ended meanwhile is no longer counted.
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{process}/stat")) {
            if let Some(parsed) = Stat::parse(&stat) {
                processes.push((process, parsed));
            }
        }
    }
    tree_time(pid, &processes).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no process {pid} in /proc"),
        )
    })
}

/// What `/proc/<pid>/stat` says of a process's parent and processor time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    parent: u32,
    time: Duration,
}

impl Stat {
    /// After the command's closing parenthesis come the state, the parent
    /// and nine fields more, then utime and stime.
    fn parse(stat: &str) -> Option<Self> {
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i)?.parse::<u32>().ok();
        Some(Self {
            parent: field(1)?,
            time: CLOCK_TICK * (field(11)? + field(12)?),
        })
    }
}

/// The time of `root` and its descendants among `processes`; `None` if
/// `root` is not among them.
fn tree_time(root: u32, processes: &[(u32, Stat)]) -> Option<Duration> {
    let mut time = processes.iter().find(|(pid, _)| *pid == root)?.1.time;
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for (pid, stat) in processes.iter().filter(|(_, stat)| stat.parent == parent) {
            time += stat.time;
            parents.push(*pid);
        }
    }
    Some(time)
}

/// `used` as a percentage of `elapsed`.
pub fn percent(used: Duration, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        return 0.0;
    }
    used.as_secs_f64() / elapsed.as_secs_f64() * 100.0
}

impl fmt::Display for DriverCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2}% under load, {:.2}% idle over {} s",
            self.under_load_percent,
            self.idle_percent,
            self.idle_window.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_counts_with_its_descendants_and_no_one_else() {
        let ms = Duration::from_millis;
        let stat = |parent, time| Stat {
            parent,
            time: ms(time),
        };
        // 10 started 11 and 12; 12 started 13; 20 is a stranger, 1 their parent.
        let processes = [
            (1, stat(0, 1000)),
            (10, stat(1, 1)),
            (11, stat(10, 20)),
            (12, stat(10, 300)),
            (13, stat(12, 4000)),
            (20, stat(1, 50000)),
        ];
        assert_eq!(tree_time(10, &processes), Some(ms(4321)));
        assert_eq!(tree_time(12, &processes), Some(ms(4300)));
        assert_eq!(tree_time(13, &processes), Some(ms(4000)));
        assert_eq!(tree_time(99, &processes), None);
    }

    #[test]
    fn the_line_round_trips_and_other_lines_do_not_parse() {
        let cpu = DriverCpu {
            under_load_percent: 31.2,
            idle_percent: 0.4,
            idle_window: Duration::from_secs(10),
        };
        let line = cpu.line("e1000-direct");
        assert_eq!(
            line,
            "tcp-driver-cpu e1000-direct under_load_percent=31.20 idle_percent=0.40 idle_window_s=10"
        );
        assert_eq!(DriverCpu::parse(&line), Some(("e1000-direct", cpu)));
        for other in [
            "tcp-driver-cpu e1000-direct under_load_percent=31.20 idle_percent=0.40",
            "tcp-driver-cpu e1000-direct idle_percent=0.40 under_load_percent=31.20 idle_window_s=10",
            &format!("{line} extra=1"),
            "tcp-driver-cpu e1000-direct under_load_percent=x idle_percent=0.40 idle_window_s=10",
            "tcp-echo serving e1000-direct on port 5",
        ] {
            assert_eq!(DriverCpu::parse(other), None, "{other}");
        }
    }

    #[test]
    fn processor_time_is_read_after_the_command_however_it_is_named() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0";
        let parsed = Stat {
            parent: 1,
            time: Duration::from_millis(100),
        };
        assert_eq!(Stat::parse(stat), Some(parsed));
        assert_eq!(Stat::parse("42 (short) S 1"), None);
        let me = cpu_time(std::process::id()).unwrap();
        assert!(me < Duration::from_secs(3600), "{me:?}");
        assert_eq!(
            cpu_time(u32::MAX).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            percent(Duration::from_millis(50), Duration::from_secs(10)),
            0.5
        );
        assert_eq!(percent(Duration::from_secs(1), Duration::ZERO), 0.0);
    }
}
