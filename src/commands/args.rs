//! The grammar every command shares: a line is a word, then arguments separated by spaces, the last one
//! often "the rest of the line" (a reason, a text). [`Args`] reads them one by one; each read that fails
//! says why in words the actor is shown: `Usage: …` (the command's usage line) when something is
//! missing or malformed, `NAME is not a player name` for a name no account can have.

use std::time::Duration;

use crate::protocol;
use crate::time::parse_duration;

/// The first word of `text` and the rest (neither trimmed at the end).
pub fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    text.split_once(char::is_whitespace).unwrap_or((text, ""))
}

/// A command's arguments, read left to right.
#[derive(Debug, Clone)]
pub struct Args<'a> {
    rest: &'a str,
    usage: &'static str,
}

impl<'a> Args<'a> {
    /// The arguments `rest` of a command whose usage line is `usage`.
    pub fn new(rest: &'a str, usage: &'static str) -> Self {
        Self { rest, usage }
    }

    /// `Usage: …`, what a malformed call is answered.
    pub fn usage(&self) -> String {
        format!("Usage: {}", self.usage)
    }

    /// The next word, if any.
    pub fn word(&mut self) -> Option<&'a str> {
        let (word, rest) = split_word(self.rest);
        self.rest = rest;
        (!word.is_empty()).then_some(word)
    }

    /// The next word, which must be there.
    pub fn required(&mut self) -> Result<&'a str, String> {
        self.word().ok_or_else(|| self.usage())
    }

    /// The next word as a player's name (checked against the account rules, so nothing odd reaches a
    /// query or a log line).
    pub fn name(&mut self) -> Result<String, String> {
        let name = self.required()?;
        protocol::validate_username(name).map_err(|_| format!("{name} is not a player name"))?;
        Ok(name.to_owned())
    }

    /// The next word as a duration (`30m`, `2h`, `7d`), which must be there.
    pub fn duration(&mut self) -> Result<Duration, String> {
        let word = self.required()?;
        parse_duration(word).ok_or_else(|| self.usage())
    }

    /// The next word as a duration if it is one (left unread otherwise).
    pub fn optional_duration(&mut self) -> Option<Duration> {
        let (word, rest) = split_word(self.rest);
        let duration = parse_duration(word)?;
        self.rest = rest;
        Some(duration)
    }

    /// Everything left, trimmed (maybe empty).
    pub fn rest(self) -> String {
        self.rest.trim().to_owned()
    }

    /// Everything left, trimmed, which must not be empty.
    pub fn text(self) -> Result<String, String> {
        let usage = self.usage();
        Some(self.rest())
            .filter(|text| !text.is_empty())
            .ok_or(usage)
    }

    /// Fails with the usage line if anything is left.
    pub fn end(self) -> Result<(), String> {
        if self.rest.trim().is_empty() {
            Ok(())
        } else {
            Err(self.usage())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_read_left_to_right_with_optional_parts() {
        let mut args = Args::new(" bob  2h spamming links ", "ban NAME [DURATION] [REASON]");
        assert_eq!(args.name(), Ok("bob".into()));
        assert_eq!(args.optional_duration(), Some(Duration::from_secs(7_200)));
        assert_eq!(args.rest(), "spamming links");

        let mut args = Args::new("bob spamming", "ban NAME [DURATION] [REASON]");
        assert_eq!(args.name(), Ok("bob".into()));
        assert_eq!(args.optional_duration(), None, "a reason is not a duration");
        assert_eq!(args.rest(), "spamming");
    }

    #[test]
    fn what_is_missing_or_malformed_says_how_to_use_the_command() {
        let usage = "mute NAME DURATION [REASON]";
        assert_eq!(
            Args::new("", usage).name(),
            Err("Usage: mute NAME DURATION [REASON]".into())
        );
        let mut args = Args::new("bob forever", usage);
        args.name().unwrap();
        assert_eq!(
            args.duration(),
            Err("Usage: mute NAME DURATION [REASON]".into())
        );
        assert_eq!(
            Args::new("../etc", usage).name(),
            Err("../etc is not a player name".into())
        );
        assert_eq!(
            Args::new("  ", "say TEXT").text(),
            Err("Usage: say TEXT".into())
        );
        assert_eq!(Args::new("x", "who").end(), Err("Usage: who".into()));
        assert_eq!(split_word("  w Bob hi there"), ("w", "Bob hi there"));
    }
}
