//! Runs named, timed test steps inside the guest and prints their result lines and the
//! closing summary in the [`crate::protocol`] format; lines from child processes join in.

use std::error::Error;
use std::time::Instant;

use crate::protocol::{Outcome, Summary, TestLine, GUEST_SUMMARY_LABEL, GUEST_TEST_PREFIX};

/// What a step returns: a value later steps may need, or why it failed.
pub type StepResult<T> = Result<T, Box<dyn Error>>;

/// Collects the outcomes of one test program's steps.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<TestLine>,
}

impl Report {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs one step, prints its result line, and hands on what it produced.
    pub fn run<T>(&mut self, name: &str, step: impl FnOnce() -> StepResult<T>) -> Option<T> {
        let started = Instant::now();
        let result = step();
        self.conclude(name, started, result)
    }

    /// Prints and counts the result line of a step that began at `started` and ended
    /// with `result`, for steps that cannot be one closure; hands on what it produced.
    pub fn conclude<T>(
        &mut self,
        name: &str,
        started: Instant,
        result: StepResult<T>,
    ) -> Option<T> {
        let elapsed = Some(started.elapsed());
        let (outcome, value) = match result {
            Ok(value) => (Outcome::Passed, Some(value)),
            Err(reason) => (Outcome::Failed(reason.to_string()), None),
        };
        self.record(TestLine {
            prefix: GUEST_TEST_PREFIX.into(),
            name: name.into(),
            outcome,
            elapsed,
        });
        value
    }

    /// Prints and counts a result line another process reported (see [`super::roles`]).
    pub fn adopt(&mut self, line: TestLine) {
        self.record(line);
    }

    /// Runs a step that needs what an earlier step produced; if that step failed, this
    /// one is reported as failed without running, so the counts stay the same.
    pub fn run_after<P, T>(
        &mut self,
        name: &str,
        needs: Option<P>,
        step: impl FnOnce(P) -> StepResult<T>,
    ) -> Option<T> {
        match needs {
            Some(input) => self.run(name, || step(input)),
            None => {
                self.record(TestLine {
                    prefix: GUEST_TEST_PREFIX.into(),
                    name: name.into(),
                    outcome: Outcome::Failed("not run: a step it needs failed".into()),
                    elapsed: None,
                });
                None
            }
        }
    }

    /// Prints the summary line and returns the counts.
    pub fn finish(self) -> Summary {
        let passed = self.lines.iter().filter(|line| line.passed()).count();
        let summary = Summary {
            passed,
            failed: self.lines.len() - passed,
        };
        println!("{}", summary.format(GUEST_SUMMARY_LABEL));
        summary
    }

    fn record(&mut self, line: TestLine) {
        println!("{line}");
        self.lines.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_passed_failed_and_dependent_steps() {
        let mut report = Report::new();
        let found = report.run("find", || Ok(7));
        assert_eq!(found, Some(7));
        let doubled = report.run_after("double", found, |n| Ok(n * 2));
        assert_eq!(doubled, Some(14));
        let broken: Option<u32> = report.run("break", || Err("bad register".into()));
        let after = report.run_after("after-break", broken, |_| -> StepResult<()> {
            panic!("a step whose input failed must not run")
        });
        assert_eq!(after, None);
        let adopted = TestLine::parse(GUEST_TEST_PREFIX, "guest-test child ... ok (1.000 ms)");
        report.adopt(adopted.unwrap());

        let reasons: Vec<_> = report.lines.iter().map(|l| l.outcome.clone()).collect();
        assert_eq!(reasons[2], Outcome::Failed("bad register".into()));
        assert!(report.lines[3].elapsed.is_none());
        assert_eq!(report.lines[4].name, "child");
        assert_eq!(
            report.finish(),
            Summary {
                passed: 3,
                failed: 2
            }
        );
    }
}
