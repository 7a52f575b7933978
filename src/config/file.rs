//! The configuration file (`--config PATH`, env `MMO_CONFIG`): a TOML file of settings named as the flags
//! are (`max-clients = 1024`, `auth = "token"`, `allow-insecure-remote = true`). A flag wins over its
//! environment variable, which wins over the file, which wins over the default. An unknown setting, a
//! section, or a value its flag would refuse stops the start with the file, the line and the setting
//! named. `mmo --print-config` prints the effective configuration as such a file, every setting with its
//! help as a comment, passwords in `db` and `bus` redacted; `mmo.example.toml` is that file for the
//! defaults.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::Resettable;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, Parser};
use toml::de::{DeTable, DeValue};

use super::Config;

/// Flags that are not settings: what this run of the process does rather than how the server runs.
const NOT_SETTINGS: [&str; 5] = ["help", "version", "config", "print_config", "copy_to"];

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path} line {line}: unknown setting `{key}` (settings are named as the flags are, such as \
         `max-clients`: see mmo --help)"
    )]
    Unknown {
        path: PathBuf,
        line: usize,
        key: String,
    },
    #[error("{path} line {line}: `{key}`: {message}")]
    Value {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    /// A flag or an environment variable was refused (clap's own message; `--help` is one too).
    #[error(transparent)]
    Flags(#[from] clap::Error),
}

impl Config {
    /// The configuration from this process's command line, environment and `--config` file.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    /// The configuration from `args` (the program's name first), the environment and the `--config`
    /// file they name.
    pub fn load_from(
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Result<Self, ConfigError> {
        let args = with_file(args.into_iter().map(Into::into).collect())?;
        Ok(Config::try_parse_from(args)?)
    }

    /// The effective configuration of `args` (as [`Config::load_from`] reads it) as a configuration file.
    pub fn effective_file(
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Result<String, ConfigError> {
        let args = with_file(args.into_iter().map(Into::into).collect())?;
        let matches = Config::command().try_get_matches_from(&args)?;
        let config = Config::try_parse_from(&args)?;
        Ok(render(&Config::command(), &matches, &config))
    }
}

/// `args` with the `--config` file's settings added as flags, for those neither a flag nor an
/// environment variable sets.
fn with_file(mut args: Vec<OsString>) -> Result<Vec<OsString>, ConfigError> {
    let command = Config::command();
    let matches = command.clone().try_get_matches_from(&args)?;
    let Some(path) = matches.get_one::<PathBuf>("config").cloned() else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    args.extend(settings(&command, &matches, &path, &text)?);
    Ok(args)
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

/// The flag a file's setting `key` stands for.
fn setting<'a>(command: &'a Command, key: &str) -> Option<&'a Arg> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(key) && !NOT_SETTINGS.contains(&arg.get_id().as_str()))
}

/// Every setting of `text` checked against its flag's rules, and as flags for those that neither the
/// command line nor the environment sets (`matches`).
fn settings(
    command: &Command,
    matches: &ArgMatches,
    path: &Path,
    text: &str,
) -> Result<Vec<OsString>, ConfigError> {
    let table = DeTable::parse(text).map_err(|error| ConfigError::Syntax {
        path: path.to_owned(),
        line: line_of(text, error.span().map_or(0, |span| span.start)),
        message: error.message().trim().to_owned(),
    })?;
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut flags = Vec::new();
    for (key, value) in entries {
        let (key, line) = (key.get_ref().as_ref(), line_of(text, key.span().start));
        let refused = |message: &str| ConfigError::Value {
            path: path.to_owned(),
            line,
            key: key.to_owned(),
            message: message.to_owned(),
        };
        let Some(arg) = setting(command, key) else {
            return Err(ConfigError::Unknown {
                path: path.to_owned(),
                line,
                key: key.to_owned(),
            });
        };
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let value = match (value.get_ref(), switch) {
            (DeValue::Boolean(on), true) => on.to_string(),
            (_, true) => return Err(refused("expected true or false")),
            (DeValue::String(text), false) => text.to_string(),
            (DeValue::Integer(n), false) => i64::from_str_radix(n.as_str(), n.radix())
                .map_or_else(|_| n.as_str().to_owned(), |n| n.to_string()),
            (DeValue::Float(x), false) => x.as_str().to_owned(),
            (DeValue::Boolean(on), false) => on.to_string(),
            _ => return Err(refused("expected a string, a number or true/false")),
        };
        if !switch {
            // Checked with the flag's own parser now, so the error names the file's line.
            check(arg, key, &value).map_err(|message| refused(&message))?;
        }
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        match (switch, value.as_str()) {
            (true, "true") => flags.push(format!("--{key}").into()),
            (true, _) => {}
            (false, _) => flags.push(format!("--{key}={value}").into()),
        }
    }
    Ok(flags)
}

/// Whether the flag `arg` takes `value` (on its own: what it requires of other flags is checked when
/// everything is parsed together).
fn check(arg: &Arg, key: &str, value: &str) -> Result<(), String> {
    let alone = arg
        .clone()
        .requires(Resettable::Reset)
        .env(Resettable::Reset)
        .default_value(Resettable::Reset);
    Command::new("mmo")
        .arg(alone)
        .try_get_matches_from([OsString::from("mmo"), format!("--{key}={value}").into()])
        .map(|_| ())
        .map_err(|error| clap_message(&error))
}

/// clap's error without its `error: ` prefix and usage lines.
fn clap_message(error: &clap::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// The effective configuration as a configuration file: every setting in `--help`'s order, its help as
/// a comment, unset ones commented out.
fn render(command: &Command, matches: &ArgMatches, config: &Config) -> String {
    let mut text = String::from(
        "# mmo configuration (mmo --config THIS_FILE). Every setting is a flag of `mmo --help`, under the\n\
         # flag's name; a flag or its environment variable wins over this file.\n",
    );
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(key) = arg.get_long().filter(|_| !NOT_SETTINGS.contains(&id)) else {
            continue;
        };
        text.push('\n');
        let mut help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        if !help.ends_with(['.', ')', ':']) {
            help.push('.');
        }
        for line in wrap(&help, 100) {
            text += &format!("# {line}\n");
        }
        if let Some(env) = arg.get_env() {
            text += &format!("# (environment: {})\n", env.to_string_lossy());
        }
        let value = match id {
            "db" => Some(quoted(&config.db.to_string())),
            "bus" => config.bus.as_ref().map(|bus| quoted(&bus.to_string())),
            _ if matches!(arg.get_action(), ArgAction::SetTrue) => {
                Some(matches.get_flag(id).to_string())
            }
            _ => matches.get_raw(id).map(|values| {
                let values: Vec<String> =
                    values.map(|v| v.to_string_lossy().into_owned()).collect();
                literal(&values.join(","))
            }),
        };
        match value {
            Some(value) => text += &format!("{key} = {value}\n"),
            None => text += &format!("# {key} = (unset)\n"),
        }
    }
    text
}

/// A TOML literal for a flag's value: a number as it is, anything else a quoted string.
fn literal(value: &str) -> String {
    let number = value.parse::<i64>().is_ok()
        || (value.parse::<f64>().is_ok_and(f64::is_finite)
            && value.starts_with(|c: char| c.is_ascii_digit() || c == '-')
            && value.ends_with(|c: char| c.is_ascii_digit()));
    if number {
        value.to_owned()
    } else {
        quoted(value)
    }
}

/// A TOML basic string.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\t' => out += "\\t",
            c if c.is_control() => out += &format!("\\u{:04X}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` in lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line += word;
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(file: &str, flags: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mmo.toml");
        std::fs::write(&path, file).unwrap();
        let mut args = vec![
            "mmo".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        Config::load_from(args)
    }

    #[test]
    fn a_file_sets_what_no_flag_sets_and_a_flag_wins() {
        let config = with(
            "# a comment\nmax-clients = 100\nauth = \"token\"\nchat-per-second = 2.5\n\
             allow-insecure-remote = true\ndb = \"/var/lib/mmo/game.sqlite3\"\n",
            &["--max-clients", "200"],
        )
        .unwrap();
        assert_eq!(config.max_clients, 200, "the flag wins");
        assert_eq!(config.auth, super::super::AuthMode::Token);
        assert_eq!(config.chat_per_second, 2.5);
        assert!(config.allow_insecure_remote);
        assert_eq!(config.db.to_string(), "/var/lib/mmo/game.sqlite3");
        assert_eq!(config.tick_hz, 60, "the default where nothing sets it");
    }

    #[test]
    fn unknown_settings_and_bad_values_name_the_line() {
        let error = |file: &str| with(file, &[]).unwrap_err().to_string();
        let unknown = error("tick-hz = 30\n\nmax_clients = 5\n");
        assert!(unknown.ends_with("mmo.toml line 3: unknown setting `max_clients` (settings are named as the flags are, such as `max-clients`: see mmo --help)"), "{unknown}");
        let bad = error("max-clients = 9000\n");
        assert!(
            bad.contains("line 1: `max-clients`: invalid value '9000'"),
            "{bad}"
        );
        assert!(bad.contains("1..=8192"), "{bad}");
        let switch = error("\nallow-insecure-remote = \"yes\"\n");
        assert!(
            switch.ends_with("line 2: `allow-insecure-remote`: expected true or false"),
            "{switch}"
        );
        let section = error("[server]\ntick-hz = 30\n");
        assert!(
            section.contains("line 1: unknown setting `server`"),
            "{section}"
        );
        let syntax = error("tick-hz = \n");
        assert!(syntax.contains("mmo.toml line 1:"), "{syntax}");
        assert!(error("config = \"other.toml\"\n").contains("unknown setting `config`"));
    }

    #[test]
    fn the_effective_file_loads_back_to_the_same_configuration() {
        let args = [
            "mmo",
            "--max-clients",
            "77",
            "--shard",
            "a \"quoted\" name",
            "--view-radius",
            "120.5",
        ];
        let text = Config::effective_file(args).unwrap();
        assert!(text.contains("\nmax-clients = 77\n"), "{text}");
        assert!(text.contains("# public-addr = (unset)\n"), "{text}");
        let mut loaded = with(&text, &[]).unwrap();
        loaded.config = None;
        assert_eq!(
            format!("{loaded:?}"),
            format!("{:?}", Config::load_from(args).unwrap())
        );
    }

    #[test]
    fn passwords_are_redacted_in_the_effective_file() {
        let text = Config::effective_file([
            "mmo",
            "--db",
            "postgres://mmo:s3cret@db:5432/mmo",
            "--bus",
            "redis://:hunter2@redis:6379",
        ])
        .unwrap();
        assert!(
            !text.contains("s3cret") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(
            text.contains("db = \"postgres://***@db:5432/mmo\""),
            "{text}"
        );
    }

    #[test]
    fn the_example_file_holds_every_setting_and_loads_to_the_defaults() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/mmo.example.toml");
        let mut loaded = Config::load_from(["mmo", "--config", example]).unwrap();
        loaded.config = None;
        let defaults = Config::load_from(["mmo"]).unwrap();
        assert_eq!(format!("{loaded:?}"), format!("{defaults:?}"));
        let text = std::fs::read_to_string(example).unwrap();
        for arg in Config::command().get_arguments() {
            let Some(key) = arg
                .get_long()
                .filter(|_| !NOT_SETTINGS.contains(&arg.get_id().as_str()))
            else {
                continue;
            };
            let listed = text.lines().any(|line| {
                line.trim_start_matches("# ")
                    .starts_with(&format!("{key} = "))
            });
            assert!(listed, "mmo.example.toml does not list `{key}`");
        }
    }
}
