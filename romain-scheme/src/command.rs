//! Commands written to a group handle, one per write.
//!
//! | command     | effect                                                        |
//! |-------------|---------------------------------------------------------------|
//! | `kill <i>`  | SIGKILL replica i: a fault the group recovers from by itself  |
//! | `stop <i>`  | SIGSTOP replica i: a hang, for the heartbeat to catch         |
//! | `restart`   | replace the group's processes now, without counting a fault   |
//! | `down`      | stop the group for good                                       |

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Kill(usize),
    Stop(usize),
    Restart,
    Down,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    Empty,
    Unknown(String),
    MissingReplica(&'static str),
    BadReplica(String),
    TrailingWords(&'static str),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty command"),
            Self::Unknown(verb) => write!(
                f,
                "unknown command {verb:?} (want kill <i>, stop <i>, restart or down)"
            ),
            Self::MissingReplica(verb) => write!(f, "{verb} needs a replica index"),
            Self::BadReplica(word) => write!(f, "{word:?} is not a replica index"),
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
            "restart" => return no_more_words(words, "restart", Command::Restart),
            "down" => return no_more_words(words, "down", Command::Down),
            other => return Err(CommandError::Unknown(other.to_owned())),
        };
        let word = words.next().ok_or(CommandError::MissingReplica(verb))?;
        let index = Some(word)
            .filter(|w| w.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| CommandError::BadReplica(word.to_owned()))?;
        no_more_words(words, verb, command(index))
    }
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

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill(i) => write!(f, "kill {i}"),
            Self::Stop(i) => write!(f, "stop {i}"),
            Self::Restart => f.write_str("restart"),
            Self::Down => f.write_str("down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        for command in [
            Command::Kill(0),
            Command::Stop(2),
            Command::Restart,
            Command::Down,
        ] {
            assert_eq!(command.to_string().parse(), Ok(command));
        }
        assert_eq!("kill 0\n".parse(), Ok(Command::Kill(0)));
        assert_eq!("  stop\t1  ".parse(), Ok(Command::Stop(1)));
        assert_eq!("down\n".parse(), Ok(Command::Down));
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
            ("kill x", CommandError::BadReplica("x".into())),
            ("kill -1", CommandError::BadReplica("-1".into())),
            ("kill +1", CommandError::BadReplica("+1".into())),
            (
                "kill 99999999999999999999999",
                CommandError::BadReplica("99999999999999999999999".into()),
            ),
            ("kill 0 1", CommandError::TrailingWords("kill")),
            ("restart now", CommandError::TrailingWords("restart")),
            ("down\nkill 0", CommandError::TrailingWords("down")),
        ];
        for (text, error) in cases {
            assert_eq!(text.parse::<Command>(), Err(error), "{text:?}");
        }
        assert_eq!(
            CommandError::Unknown("explode".into()).to_string(),
            "unknown command \"explode\" (want kill <i>, stop <i>, restart or down)"
        );
    }
}
