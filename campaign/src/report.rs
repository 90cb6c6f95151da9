//! A campaign's results: one CSV row per fault, a table per N and fault kind,
//! and a plot of the outcomes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use crate::fault::FaultKind;
use crate::outcome::Outcome;

/// One fault and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrialRecord {
    pub index: usize,
    pub replicas: usize,
    pub kind: FaultKind,
    pub replica: usize,
    /// The engine command that injected it.
    pub command: String,
    pub outcome: Outcome,
    /// From the injection to the end of the request's check.
    pub micros: u128,
}

/// Writes `records` as CSV: `index,replicas,kind,replica,command,outcome,micros`.
pub fn write_csv(path: &Path, records: &[TrialRecord]) -> io::Result<()> {
    let mut writer = csv::Writer::from_path(path)?;
    writer.write_record([
        "index", "replicas", "kind", "replica", "command", "outcome", "micros",
    ])?;
    for record in records {
        writer.write_record([
            record.index.to_string(),
            record.replicas.to_string(),
            record.kind.to_string(),
            record.replica.to_string(),
            record.command.clone(),
            record.outcome.to_string(),
            record.micros.to_string(),
        ])?;
    }
    writer.flush()
}

/// Outcome counts per N and fault kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    counts: BTreeMap<(usize, FaultKind, Outcome), u64>,
}

impl Summary {
    pub fn of(records: &[TrialRecord]) -> Self {
        let mut summary = Summary::default();
        for record in records {
            *summary
                .counts
                .entry((record.replicas, record.kind, record.outcome))
                .or_default() += 1;
        }
        summary
    }

    /// How many faults at `replicas` ended as `outcome`, of any kind.
    pub fn count(&self, replicas: usize, outcome: Outcome) -> u64 {
        self.counts
            .iter()
            .filter(|((n, _, o), _)| *n == replicas && *o == outcome)
            .map(|(_, count)| count)
            .sum()
    }

    /// The group sizes the campaign ran.
    pub fn replica_counts(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = self.counts.keys().map(|&(n, _, _)| n).collect();
        sizes.dedup();
        sizes
    }

    /// The table: for each N a row per fault kind and a total, a column per outcome.
    pub fn table(&self) -> String {
        let mut text = String::new();
        let header: Vec<&str> = Outcome::ALL.iter().map(|o| o.name()).collect();
        for n in self.replica_counts() {
            let _ = writeln!(text, "N = {n}");
            let _ = write!(text, "{:<10}", "fault");
            for name in &header {
                let _ = write!(text, " {name:>17}");
            }
            let _ = writeln!(text, " {:>7}", "total");
            let mut row = |label: &str, kind: Option<FaultKind>| {
                let _ = write!(text, "{label:<10}");
                let mut total = 0;
                for outcome in Outcome::ALL {
                    let count: u64 = self
                        .counts
                        .iter()
                        .filter(|((m, k, o), _)| {
                            *m == n && *o == outcome && kind.is_none_or(|kind| *k == kind)
                        })
                        .map(|(_, c)| c)
                        .sum();
                    total += count;
                    let _ = write!(text, " {count:>17}");
                }
                let _ = writeln!(text, " {total:>7}");
            };
            // Only the kinds this N took: a driver without DMA takes no DMA flips.
            for kind in FaultKind::ALL {
                if self.counts.keys().any(|&(m, k, _)| m == n && k == kind) {
                    row(kind.name(), Some(kind));
                }
            }
            row("all", None);
            let _ = writeln!(text);
        }
        text
    }
}

/// Where the plot's text font is looked for (Debian's `fonts-dejavu-core`,
/// which the guest harness's provisioning installs).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Makes [`FONT`] the plots' `sans-serif`: plotters draws text with a font it
/// is given, not the system's.
pub fn register_plot_font() -> io::Result<()> {
    let font = std::fs::read(FONT).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{FONT}: {e} (apt-get install fonts-dejavu-core)"),
        )
    })?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, font)
        .map_err(|_| io::Error::other("the plot font cannot be read"))
}

/// Draws the outcomes per N as stacked bars (share of faults) into a PNG at `path`.
pub fn plot(path: &Path, summary: &Summary) -> io::Result<()> {
    use plotters::prelude::*;

    register_plot_font()?;
    let error = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());

    let sizes = summary.replica_counts();
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Fault outcomes per group size", ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .right_y_label_area_size(0)
        .build_cartesian_2d(0.0..(sizes.len() as f64 + 1.6), 0.0..100.0)
        .map_err(|e| error(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("% of faults")
        .x_labels(0)
        .draw()
        .map_err(|e| error(&e))?;
    let palette = [
        RGBColor(120, 190, 120),
        RGBColor(90, 150, 220),
        RGBColor(150, 120, 210),
        RGBColor(240, 190, 80),
        RGBColor(240, 140, 60),
        RGBColor(250, 110, 160),
        RGBColor(220, 40, 40),
        RGBColor(120, 60, 40),
        RGBColor(60, 60, 60),
    ];
    for (slot, &n) in sizes.iter().enumerate() {
        let total: u64 = Outcome::ALL.iter().map(|&o| summary.count(n, o)).sum();
        let x = slot as f64 + 0.3;
        let mut bottom = 0.0;
        for (outcome, color) in Outcome::ALL.iter().zip(palette) {
            let share = 100.0 * summary.count(n, *outcome) as f64 / total.max(1) as f64;
            chart
                .draw_series([Rectangle::new(
                    [(x, bottom), (x + 0.7, bottom + share)],
                    color.filled(),
                )])
                .map_err(|e| error(&e))?;
            bottom += share;
        }
        chart
            .draw_series([Text::new(
                format!("N = {n} ({total})"),
                (x, -4.0),
                ("sans-serif", 16),
            )])
            .map_err(|e| error(&e))?;
    }
    for (row, (outcome, color)) in Outcome::ALL.iter().zip(palette).enumerate() {
        let y = 95.0 - row as f64 * 7.0;
        let x = sizes.len() as f64 + 0.15;
        chart
            .draw_series([Rectangle::new(
                [(x, y), (x + 0.12, y + 4.0)],
                color.filled(),
            )])
            .map_err(|e| error(&e))?;
        chart
            .draw_series([Text::new(
                outcome.name(),
                (x + 0.18, y + 4.0),
                ("sans-serif", 15),
            )])
            .map_err(|e| error(&e))?;
    }
    root.present().map_err(|e| error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(replicas: usize, kind: FaultKind, outcome: Outcome) -> TrialRecord {
        TrialRecord {
            index: 0,
            replicas,
            kind,
            replica: 0,
            command: "kill 0".into(),
            outcome,
            micros: 1,
        }
    }

    #[test]
    fn the_summary_counts_per_group_size_kind_and_outcome() {
        let records = [
            record(3, FaultKind::Kill, Outcome::Replaced),
            record(3, FaultKind::Kill, Outcome::Replaced),
            record(3, FaultKind::Heap, Outcome::Masked),
            record(1, FaultKind::Kill, Outcome::ClientError),
        ];
        let summary = Summary::of(&records);
        assert_eq!(summary.count(3, Outcome::Replaced), 2);
        assert_eq!(summary.count(3, Outcome::Masked), 1);
        assert_eq!(summary.count(3, Outcome::ClientError), 0);
        assert_eq!(summary.count(1, Outcome::ClientError), 1);
        assert_eq!(summary.replica_counts(), [1, 3]);
        let table = summary.table();
        let kill_row = table
            .lines()
            .skip_while(|line| *line != "N = 3")
            .find(|line| line.starts_with("kill"))
            .unwrap();
        let cells: Vec<&str> = kill_row.split_whitespace().collect();
        // kill, then masked, repaired, replaced, ... and the total.
        assert_eq!((cells[1], cells[3], cells[10]), ("0", "2", "2"));
    }

    #[test]
    fn the_csv_has_a_row_per_fault() {
        let dir = std::env::temp_dir().join(format!("campaign-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("faults.csv");
        write_csv(
            &path,
            &[record(2, FaultKind::Code, Outcome::SilentCorruption)],
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "index,replicas,kind,replica,command,outcome,micros\n0,2,code,0,kill 0,silent-corruption,1\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
