//! `romain top`: every group on one screen, refreshed each interval.
//!
//! A [`Sample`] is what `romain:` says at one moment: the list of groups
//! (the scheme root) and each group's status (its `key=value` lines, see
//! [`crate::status`]). A [`Frame`] is two samples made into rows: the counters
//! of the later one and the events per second between them. Rendering is plain
//! text, one line per row, so the same frame serves the live view (redrawn in
//! place, [`live`]) and `--once` (printed, for scripts and serial consoles).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::client;

/// The counters a row shows, by status key, under their column titles.
const COUNTER_COLUMNS: [(&str, &str); 7] = [
    ("votes", "VOTES"),
    ("divergences", "DIVERGED"),
    ("repairs", "REPAIRED"),
    ("replacements", "REPLACED"),
    ("hangs", "HANGS"),
    ("injected", "INJECTED"),
    ("restarts", "RESTARTS"),
];

/// One group's status at one moment: its `key=value` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupSample {
    fields: BTreeMap<String, String>,
}

impl GroupSample {
    /// Reads a group's status text; lines that are not `key=value` are left out.
    pub fn parse(status: &str) -> Self {
        let fields = status
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        Self { fields }
    }

    fn field(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// A counter, if the status has it and it is known.
    fn count(&self, key: &str) -> Option<u64> {
        self.field(key)?.parse().ok()
    }

    /// The processes that run the driver: the replicas of a replicated group,
    /// else the driver's.
    /// `-` when none runs (or the reader may not see them).
    fn pids(&self) -> &str {
        let pids = match self.field("replica_pids") {
            Some(pids) if pids != "unknown" => Some(pids),
            _ => self.field("pids"),
        };
        pids.filter(|pids| !pids.is_empty()).unwrap_or("-")
    }

    /// The last fault the engine saw, else the supervisor's, with its detail.
    fn last_fault(&self) -> String {
        match self.field("engine_last_fault") {
            Some(fault) if fault != "none" && fault != "unknown" => fault.to_owned(),
            _ => match (self.field("last_fault"), self.field("last_fault_detail")) {
                (None | Some("none"), _) => "none".to_owned(),
                (Some(kind), Some(detail)) => format!("{kind}: {detail}"),
                (Some(kind), None) => kind.to_owned(),
            },
        }
    }
}

/// Every group at one moment, by driver name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub groups: BTreeMap<String, GroupSample>,
    pub taken: Option<Instant>,
}

impl Sample {
    /// Asks `romain:` for the list of groups and each one's status. A group
    /// that went down between the two is left out.
    pub fn take() -> io::Result<Self> {
        let list = client::status(None)?;
        let mut groups = BTreeMap::new();
        for driver in drivers_listed(&list) {
            if let Ok(status) = client::status(Some(driver)) {
                groups.insert(driver.to_owned(), GroupSample::parse(&status));
            }
        }
        Ok(Self {
            groups,
            taken: Some(Instant::now()),
        })
    }
}

/// The driver names of the scheme root's list (a `driver=<name> ...` line per group).
fn drivers_listed(list: &str) -> impl Iterator<Item = &str> {
    list.lines()
        .filter_map(|line| line.split_whitespace().next()?.strip_prefix("driver="))
}

/// One row per group: what it is and what it counted, and its event rate
/// since the previous sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    rows: Vec<Vec<String>>,
    interval: Duration,
}

impl Frame {
    /// The frame of `now`, with rates against `before` (none for a group that
    /// `before` did not have, or whose engine started afresh since).
    pub fn new(before: &Sample, now: &Sample) -> Self {
        let elapsed = match (before.taken, now.taken) {
            (Some(before), Some(now)) => now.saturating_duration_since(before),
            _ => Duration::ZERO,
        };
        let rows = now
            .groups
            .iter()
            .map(|(driver, group)| {
                let rate = before
                    .groups
                    .get(driver)
                    .and_then(|earlier| events_per_second(earlier, group, elapsed))
                    .map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}"));
                let mut row = vec![
                    driver.clone(),
                    group.field("state").unwrap_or("?").to_owned(),
                    group.field("replicas").unwrap_or("?").to_owned(),
                    group.pids().to_owned(),
                    rate,
                ];
                row.extend(COUNTER_COLUMNS.iter().map(|(key, _)| {
                    group
                        .count(key)
                        .map_or_else(|| "-".to_owned(), |n| n.to_string())
                }));
                row.push(group.last_fault());
                row
            })
            .collect();
        Self {
            rows,
            interval: elapsed,
        }
    }

    /// The frame as lines of text: a title, the column heads, a row per group,
    /// each at most `width` characters when a width is given.
    pub fn render(&self, width: Option<usize>) -> Vec<String> {
        let mut heads = vec!["DRIVER", "STATE", "N", "PIDS", "EVENTS/S"];
        heads.extend(COUNTER_COLUMNS.iter().map(|(_, head)| *head));
        heads.push("LAST FAULT");
        let columns = heads.len();
        let mut widths: Vec<usize> = heads.iter().map(|head| head.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut text = String::new();
            for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
                let numeric = i >= 4 && i < columns - 1;
                match (i + 1 == columns, numeric) {
                    (true, _) => text.push_str(cell),
                    (false, true) => text.push_str(&format!("{cell:>width$}  ")),
                    (false, false) => text.push_str(&format!("{cell:<width$}  ")),
                }
            }
            let text = text.trim_end().to_owned();
            match width {
                Some(width) if text.chars().count() > width => text.chars().take(width).collect(),
                _ => text,
            }
        };
        let groups = match self.rows.len() {
            1 => "1 group".to_owned(),
            n => format!("{n} groups"),
        };
        let mut lines = vec![
            format!(
                "romain top: {groups}, rates over {:.1} s",
                self.interval.as_secs_f64()
            ),
            line(
                &heads
                    .iter()
                    .map(|head| head.to_string())
                    .collect::<Vec<_>>(),
            ),
        ];
        lines.extend(self.rows.iter().map(|row| line(row)));
        if self.rows.is_empty() {
            lines.push("(no groups: `romain up <driver>` starts one)".to_owned());
        }
        lines
    }
}

/// Events handled per second between two samples of a group; `None` when
/// either has no count or the engine started afresh (its count went down).
fn events_per_second(before: &GroupSample, now: &GroupSample, elapsed: Duration) -> Option<f64> {
    let (before, now) = (before.count("events")?, now.count("events")?);
    let handled = now.checked_sub(before)?;
    (!elapsed.is_zero()).then(|| handled as f64 / elapsed.as_secs_f64())
}

/// One frame, `interval` after a first sample: what `romain top --once` prints.
pub fn once(interval: Duration) -> io::Result<Vec<String>> {
    let before = Sample::take()?;
    std::thread::sleep(interval);
    let now = Sample::take()?;
    Ok(Frame::new(&before, &now).render(None))
}

/// The live view: redrawn in place every `interval` until `q`, Esc or Ctrl-C.
pub fn live(interval: Duration) -> io::Result<()> {
    use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyModifiers};
    use crossterm::{cursor, execute, queue, terminal};

    /// Puts the terminal back however the view ends.
    struct Screen;
    impl Drop for Screen {
        fn drop(&mut self) {
            let _ = execute!(io::stdout(), cursor::Show, terminal::LeaveAlternateScreen);
            let _ = terminal::disable_raw_mode();
        }
    }

    terminal::enable_raw_mode()?;
    let _screen = Screen;
    let mut out = io::stdout();
    execute!(out, terminal::EnterAlternateScreen, cursor::Hide)?;
    let mut before = Sample::take().unwrap_or_default();
    loop {
        let next = Instant::now() + interval;
        let (columns, rows) = drawing_size(terminal::size());
        let mut lines = match Sample::take() {
            Ok(now) => {
                let lines = Frame::new(&before, &now).render(Some(columns.into()));
                before = now;
                lines
            }
            Err(error) => vec![format!(
                "romain top: {}",
                client::explain(&error, "romain:")
            )],
        };
        lines.push(String::new());
        lines.push(
            "q quits. Break a replica meanwhile: romain inject <driver> kill|stop|hang <i>, \
             or flip <i> reg <register> <bit>"
                .chars()
                .take(columns.into())
                .collect(),
        );
        queue!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        )?;
        for line in lines.iter().take(rows.into()) {
            write!(out, "{line}\r\n")?;
        }
        out.flush()?;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if !event::poll(left)? {
                break;
            }
            if let Event::Key(KeyEvent {
                code, modifiers, ..
            }) = event::read()?
            {
                let ctrl_c =
                    code == KeyCode::Char('c') && modifiers.contains(KeyModifiers::CONTROL);
                if ctrl_c || matches!(code, KeyCode::Char('q') | KeyCode::Esc) {
                    return Ok(());
                }
            }
        }
    }
}

/// The columns and rows to draw in: the terminal's, or the classic 80 x 24
/// where it does not know its size (a bare pseudo-terminal says 0 x 0, and
/// drawing in that would draw nothing).
fn drawing_size(size: io::Result<(u16, u16)>) -> (u16, u16) {
    match size {
        Ok((columns, rows)) if columns > 0 && rows > 0 => (columns, rows),
        _ => (80, 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLICATED: &str = "driver=e1000\nstate=running\nreplicas=3\npids=400\n\
        restarts=0\nlast_fault=none\nevents=1000\nvotes=900\ndivergences=2\nrepairs=2\n\
        replacements=1\nhangs=0\ninjected=3\nreplica_pids=401,-,403\n\
        engine_last_fault=replica 1 at syscall(1): diverged\n";
    const ALONE: &str = "driver=uart\nstate=backoff\nreplicas=1\npids=\nrestarts=4\n\
        last_fault=signal\nlast_fault_detail=terminated by signal 9\n";

    fn sample(groups: &[(&str, &str)], at: Instant) -> Sample {
        Sample {
            groups: groups
                .iter()
                .map(|(driver, status)| (driver.to_string(), GroupSample::parse(status)))
                .collect(),
            taken: Some(at),
        }
    }

    #[test]
    fn a_frame_shows_each_groups_replicas_counters_rate_and_last_fault() {
        let start = Instant::now();
        let before = sample(
            &[("e1000", &REPLICATED.replace("events=1000", "events=400"))],
            start,
        );
        let now = sample(
            &[("e1000", REPLICATED), ("uart", ALONE)],
            start + Duration::from_secs(2),
        );
        let lines = Frame::new(&before, &now).render(None);
        assert_eq!(lines[0], "romain top: 2 groups, rates over 2.0 s");
        let heads: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            heads,
            [
                "DRIVER", "STATE", "N", "PIDS", "EVENTS/S", "VOTES", "DIVERGED", "REPAIRED",
                "REPLACED", "HANGS", "INJECTED", "RESTARTS", "LAST", "FAULT"
            ]
        );
        let e1000: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            e1000[..12],
            [
                "e1000",
                "running",
                "3",
                "401,-,403",
                "300",
                "900",
                "2",
                "2",
                "1",
                "0",
                "3",
                "0"
            ]
        );
        assert!(lines[2].ends_with("replica 1 at syscall(1): diverged"));
        let uart: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            uart[..12],
            ["uart", "backoff", "1", "-", "-", "-", "-", "-", "-", "-", "-", "4"],
            "a driver alone has no engine counters"
        );
        assert!(lines[3].ends_with("signal: terminated by signal 9"));
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn the_rate_is_unknown_for_a_new_group_or_an_engine_started_afresh() {
        let start = Instant::now();
        let later = start + Duration::from_secs(1);
        let fresh = REPLICATED.replace("events=1000", "events=10");
        let rate = |before: &Sample, now: &Sample| {
            Frame::new(before, now).render(None)[2]
                .split_whitespace()
                .nth(4)
                .map(str::to_owned)
        };
        let now = sample(&[("e1000", &fresh)], later);
        assert_eq!(rate(&sample(&[], start), &now).as_deref(), Some("-"));
        assert_eq!(
            rate(&sample(&[("e1000", REPLICATED)], start), &now).as_deref(),
            Some("-")
        );
        assert_eq!(
            rate(&sample(&[("e1000", &fresh)], later), &now).as_deref(),
            Some("-"),
            "no time passed"
        );
    }

    #[test]
    fn lines_are_cut_to_the_width_and_an_empty_list_says_how_to_start_a_group() {
        let now = sample(&[("e1000", REPLICATED)], Instant::now());
        for line in Frame::new(&Sample::default(), &now).render(Some(40)) {
            assert!(line.chars().count() <= 40, "{line}");
        }
        let empty = Frame::new(&Sample::default(), &Sample::default()).render(None);
        assert_eq!(empty[0], "romain top: 0 groups, rates over 0.0 s");
        assert!(empty[2].contains("romain up"));
    }

    #[test]
    fn a_terminal_that_does_not_know_its_size_is_drawn_as_80_by_24() {
        assert_eq!(drawing_size(Ok((120, 40))), (120, 40));
        assert_eq!(drawing_size(Ok((0, 0))), (80, 24));
        assert_eq!(drawing_size(Ok((100, 0))), (80, 24));
        assert_eq!(drawing_size(Err(io::Error::other("no terminal"))), (80, 24));
    }

    #[test]
    fn the_list_names_the_drivers() {
        let list = "driver=e1000 state=running replicas=3 restarts=0\n\
                    driver=uart state=down replicas=1 restarts=2\nnot a group\n";
        assert_eq!(drivers_listed(list).collect::<Vec<_>>(), ["e1000", "uart"]);
    }
}
