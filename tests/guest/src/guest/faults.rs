//! Faults for a replicated driver at work, sent to a [`FaultTarget`] (the engine's
//! control socket, or the group's `romain:` handle): at random pauses a random bit of
//! a random register of a random replica flips, and the faults a [`Schedule`] names
//! are a kill or a hang instead. The sequence follows from a seed, which the report
//! shows, so a failing run can be replayed.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use romain_campaign::fault::{flippable_bits, REGISTERS};

use crate::guest::report::StepResult;

/// A replica group that takes fault commands (`flip 1 reg rax 3`, `kill 0`,
/// `hang 2`) and says whether it carried each out.
pub trait FaultTarget {
    fn inject(&self, fault: &str) -> StepResult<()>;
}

/// How often faults come and which of them (counted from 0) are not flips.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Least and most milliseconds between two faults.
    pub pause_ms: (u64, u64),
    pub kills_at: &'static [u64],
    pub hangs_at: &'static [u64],
}

/// A seed that differs from run to run, so runs together cover many sequences.
pub fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |since| since.as_nanos() as u64)
}

/// The faults of one run, from a seed.
pub struct FaultPlan {
    schedule: Schedule,
    state: u64,
    replicas: u64,
    made: u64,
}

impl FaultPlan {
    pub fn new(schedule: Schedule, seed: u64, replicas: usize) -> FaultPlan {
        FaultPlan {
            schedule,
            state: seed | 1,
            replicas: replicas as u64,
            made: 0,
        }
    }

    /// xorshift64: a number below `bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % bound
    }

    /// The next control command.
    pub fn next_fault(&mut self) -> String {
        let made = self.made;
        self.made += 1;
        let replica = self.below(self.replicas);
        if self.schedule.kills_at.contains(&made) {
            format!("kill {replica}")
        } else if self.schedule.hangs_at.contains(&made) {
            format!("hang {replica}")
        } else {
            let register = REGISTERS[self.below(REGISTERS.len() as u64) as usize];
            let bit = self.below(flippable_bits(register));
            format!("flip {replica} reg {register} {bit}")
        }
    }

    pub fn next_pause(&mut self) -> Duration {
        let (least, most) = self.schedule.pause_ms;
        Duration::from_millis(least + self.below(most - least + 1))
    }
}

/// What went into the replicas.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    pub seed: u64,
    pub flips: u64,
    pub kills: u64,
    pub hangs: u64,
}

impl Injected {
    pub fn total(&self) -> u64 {
        self.flips + self.kills + self.hangs
    }
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} faults sent ({} register flips, {} kills, {} hangs; seed {:#x})",
            self.total(),
            self.flips,
            self.kills,
            self.hangs,
            self.seed
        )
    }
}

/// Injects faults on `schedule` into `target`'s group until `done` is set; every one
/// must be accepted.
pub fn inject_until(
    target: &impl FaultTarget,
    schedule: Schedule,
    replicas: usize,
    seed: u64,
    done: &AtomicBool,
) -> StepResult<Injected> {
    let mut plan = FaultPlan::new(schedule, seed, replicas);
    let mut injected = Injected {
        seed,
        ..Injected::default()
    };
    loop {
        sleep(plan.next_pause());
        if done.load(Ordering::Relaxed) {
            return Ok(injected);
        }
        let fault = plan.next_fault();
        target
            .inject(&fault)
            .map_err(|err| format!("after {injected}: {err}"))?;
        let count = match fault.split_whitespace().next() {
            Some("kill") => &mut injected.kills,
            Some("hang") => &mut injected.hangs,
            _ => &mut injected.flips,
        };
        *count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::control::Control;

    const SCHEDULE: Schedule = Schedule {
        pause_ms: (20, 50),
        kills_at: &[1, 4],
        hangs_at: &[3],
    };

    #[test]
    fn scheduled_kills_and_hangs_and_flips_in_range() {
        let mut plan = FaultPlan::new(SCHEDULE, 0x2545_f491_4f6c_dd1d, 3);
        let faults: Vec<String> = (0..500).map(|_| plan.next_fault()).collect();
        let kind = |i: usize| faults[i].split_whitespace().next().unwrap();
        assert_eq!(
            (0..6).map(kind).collect::<Vec<_>>(),
            ["flip", "kill", "flip", "hang", "kill", "flip"]
        );
        let flips: Vec<Vec<&str>> = faults
            .iter()
            .filter(|fault| fault.starts_with("flip "))
            .map(|fault| fault.split_whitespace().collect())
            .collect();
        assert_eq!(flips.len(), 497);
        let mut registers = std::collections::BTreeSet::new();
        for words in &flips {
            let [_, replica, "reg", register, bit] = words[..] else {
                panic!("not a register flip: {words:?}");
            };
            assert!(replica.parse::<u64>().unwrap() < 3);
            let bit: u64 = bit.parse().unwrap();
            assert!(bit < flippable_bits(register), "{words:?}");
            registers.insert(register);
        }
        assert_eq!(
            registers.len(),
            REGISTERS.len(),
            "every register gets flips"
        );
        let replicas: std::collections::BTreeSet<&str> =
            flips.iter().map(|words| words[1]).collect();
        assert_eq!(replicas.len(), 3, "every replica gets flips");
    }

    #[test]
    fn pauses_stay_in_range_and_the_seed_replays() {
        let mut plan = FaultPlan::new(SCHEDULE, 7, 3);
        let pauses: Vec<Duration> = (0..200).map(|_| plan.next_pause()).collect();
        assert!(pauses
            .iter()
            .all(|pause| (20..=50).contains(&pause.as_millis())));
        assert!(pauses.iter().any(|pause| pause != &pauses[0]));
        let replay = |seed| {
            let mut plan = FaultPlan::new(SCHEDULE, seed, 3);
            (0..20).map(|_| plan.next_fault()).collect::<Vec<_>>()
        };
        assert_eq!(replay(99), replay(99));
        assert_ne!(replay(99), replay(100));
    }

    #[test]
    fn injection_stops_when_done_and_fails_on_a_refusal() {
        let (control, engine) = Control::pair().unwrap();
        drop(engine);
        let done = AtomicBool::new(true);
        assert_eq!(
            inject_until(&control, SCHEDULE, 3, 5, &done)
                .unwrap()
                .total(),
            0
        );
        done.store(false, Ordering::Relaxed);
        assert!(inject_until(&control, SCHEDULE, 3, 5, &done).is_err());
    }
}
