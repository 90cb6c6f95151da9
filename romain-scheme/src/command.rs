//! Commands written to a group handle, one per write.
//!
//! | command                          | effect                                                   |
//! |----------------------------------|----------------------------------------------------------|
//! | `kill <i>`                       | SIGKILL replica i: a fault the group recovers from itself |
//! | `stop <i>`                       | SIGSTOP replica i: a hang, for the heartbeat or the engine's watchdog to catch |
//! | `hang <i>`                       | send replica i into an endless loop (replicated groups)  |
//! | `flip <i> reg <register> <bit>`  | flip a bit of a register of replica i (replicated groups) |
//! | `flip <i> mem <address> <bit>`   | flip a bit of a byte of replica i's memory (replicated groups) |
//! | `scrub`                          | repair memory differences no event has shown yet (replicated groups) |
//! | `restart`                        | replace the group's processes now, without counting a fault |
//! | `down`                           | stop the group for good                                  |
//!
//! In a group of one, the replica is the driver's process and `kill`/`stop`
//! signal it. In a replicated group they, like the commands only it takes, go
//! to the replication engine, which acts on the replica inside the group and
//! checks the details (a `flip`'s register, address and bit).

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Kill(usize),
    Stop(usize),
    Hang(usize),
    /// `target` is what follows the replica index, passed to the engine as is.
    Flip {
        replica: usize,
        target: String,
    },
    Scrub,
    Restart,
    Down,
}

impl Command {
    /// The replica the command acts on.
    pub fn replica(&self) -> Option<usize> {
        match self {
            Self::Kill(i) | Self::Stop(i) | Self::Hang(i) | Self::Flip { replica: i, .. } => {
                Some(*i)
            }
            Self::Scrub | Self::Restart | Self::Down => None,
        }
    }

    /// Whether the replication engine carries it out when the group has one.
    pub fn is_for_the_engine(&self) -> bool {
        !matches!(self, Self::Restart | Self::Down)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    Empty,
    Unknown(String),
    MissingReplica(&'static str),
    BadReplica(String),
    MissingTarget,
    TrailingWords(&'static str),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty command"),
            Self::Unknown(verb) => write!(
                f,
                "unknown command {verb:?} (want kill <i>, stop <i>, hang <i>, flip <i> ..., \
                 scrub, restart or down)"
            ),
            Self::MissingReplica(verb) => write!(f, "{verb} needs a replica index"),
            Self::BadReplica(word) => write!(f, "{word:?} is not a replica index"),
            Self::MissingTarget => {
                f.write_str("flip needs `reg <register> <bit>` or `mem <address> <bit>`")
            }
            Self::TrailingWords(verb) => write!(f, "too many words after {verb}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl FromStr for Command {
    type Err = CommandError;

    fn from_str(text: &str) -> Result<Self, CommandError> {
        let mut words = text.split_whitespace();
        let verb = words.next().ok_or(CommandError::Empty)?;
        let (verb, command): (&'static str, fn(usize) -> Command) = match verb {
            "kill" => ("kill", Command::Kill),
            "stop" => ("stop", Command::Stop),
            "hang" => ("hang", Command::Hang),
            "flip" => {
                let replica = replica_index(words.next(), "flip")?;
                let target = words.collect::<Vec<_>>().join(" ");
                if target.is_empty() {
                    return Err(CommandError::MissingTarget);
                }
                return Ok(Command::Flip { replica, target });
            }
            "scrub" => return no_more_words(words, "scrub", Command::Scrub),
            "restart" => return no_more_words(words, "restart", Command::Restart),
            "down" => return no_more_words(words, "down", Command::Down),
            other => return Err(CommandError::Unknown(other.to_owned())),
        };
        let index = replica_index(words.next(), verb)?;
        no_more_words(words, verb, command(index))
    }
}

fn replica_index(word: Option<&str>, verb: &'static str) -> Result<usize, CommandError> {
    let word = word.ok_or(CommandError::MissingReplica(verb))?;
    Some(word)
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| CommandError::BadReplica(word.to_owned()))
}

fn no_more_words<'a>(
    mut words: impl Iterator<Item = &'a str>,
    verb: &'static str,
    command: Command,
) -> Result<Command, CommandError> {
    match words.next() {
        Some(_) => Err(CommandError::TrailingWords(verb)),
        None => Ok(command),
    }
}

/// The command's text; what the replication engine is sent.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill(i) => write!(f, "kill {i}"),
            Self::Stop(i) => write!(f, "stop {i}"),
            Self::Hang(i) => write!(f, "hang {i}"),
            Self::Flip { replica, target } => write!(f, "flip {replica} {target}"),
            Self::Scrub => f.write_str("scrub"),
            Self::Restart => f.write_str("restart"),
            Self::Down => f.write_str("down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flip(replica: usize, target: &str) -> Command {
        Command::Flip {
            replica,
            target: target.to_owned(),
        }
    }

    #[test]
    fn commands_round_trip() {
        for command in [
            Command::Kill(0),
            Command::Stop(2),
            Command::Hang(1),
            flip(1, "reg rax 3"),
            flip(0, "mem 0x7ffff7ff1000 7"),
            Command::Scrub,
            Command::Restart,
            Command::Down,
        ] {
            assert_eq!(command.to_string().parse(), Ok(command));
        }
        assert_eq!("kill 0\n".parse(), Ok(Command::Kill(0)));
        assert_eq!("  stop\t1  ".parse(), Ok(Command::Stop(1)));
        assert_eq!("down\n".parse(), Ok(Command::Down));
        assert_eq!(
            " flip  2\treg rip  63\n"
                .parse::<Command>()
                .unwrap()
                .to_string(),
            "flip 2 reg rip 63",
            "what the engine gets is normalised"
        );
    }

    #[test]
    fn what_each_command_acts_on() {
        let replicas: Vec<_> = [
            Command::Kill(4),
            Command::Stop(3),
            Command::Hang(2),
            flip(1, "reg rax 0"),
            Command::Scrub,
            Command::Restart,
            Command::Down,
        ]
        .iter()
        .map(|c| (c.replica(), c.is_for_the_engine()))
        .collect();
        assert_eq!(
            replicas,
            [
                (Some(4), true),
                (Some(3), true),
                (Some(2), true),
                (Some(1), true),
                (None, true),
                (None, false),
                (None, false),
            ]
        );
    }

    #[test]
    fn bad_commands() {
        let cases = [
            ("", CommandError::Empty),
            (" \n", CommandError::Empty),
            ("explode", CommandError::Unknown("explode".into())),
            ("KILL 0", CommandError::Unknown("KILL".into())),
            ("kill", CommandError::MissingReplica("kill")),
            ("stop", CommandError::MissingReplica("stop")),
            ("hang", CommandError::MissingReplica("hang")),
            ("flip", CommandError::MissingReplica("flip")),
            ("kill x", CommandError::BadReplica("x".into())),
            ("kill -1", CommandError::BadReplica("-1".into())),
            ("kill +1", CommandError::BadReplica("+1".into())),
            ("flip reg rax 3", CommandError::BadReplica("reg".into())),
            (
                "kill 99999999999999999999999",
                CommandError::BadReplica("99999999999999999999999".into()),
            ),
            ("flip 1", CommandError::MissingTarget),
            ("flip 1 \n", CommandError::MissingTarget),
            ("kill 0 1", CommandError::TrailingWords("kill")),
            ("hang 0 now", CommandError::TrailingWords("hang")),
            ("scrub 1", CommandError::TrailingWords("scrub")),
            ("restart now", CommandError::TrailingWords("restart")),
            ("down\nkill 0", CommandError::TrailingWords("down")),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<Command>(), Err(error), "{text:?}");
        }
        assert_eq!(
            CommandError::Unknown("explode".into()).to_string(),
            "unknown command \"explode\" (want kill <i>, stop <i>, hang <i>, flip <i> ..., \
             scrub, restart or down)"
        );
    }
}
