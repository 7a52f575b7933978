//! Commands: what operators type at the console and players type in chat after a `/`. One grammar
//! ([`Command::parse`]) for both; who may run what follows the actor's role ([`Command::needs`]):
//! everyone `/help`, `/who` and `/w NAME TEXT` (whispers), moderators `/kick`, `/ban`, `/unban`,
//! `/mute`, `/unmute`, admins also `/role` and `/say`; the console everything, with `list`, `audit`,
//! `backup` and `shutdown` besides. What needs the database goes to the moderation thread
//! ([`ModerationStore`]); the rest runs on the tick. Every command is logged with who ran it, and
//! answered as a [`Reply`]: players see it in chat, the console prints it (`crate::console`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::RenetServer;

use crate::bus::{Bus, Event};
use crate::chat::SlashCommand;
use crate::metrics::Metrics;
use crate::moderation::{Action, Actor, ModerationStore, OUTRANKED, Reply, Role, Sanctions};
use crate::net::{self, Connection};
use crate::players::{self, Elsewhere, Player};
use crate::protocol::{self, Request, ServerMessage, WhisperLine};
use crate::shutdown::Countdown;
use crate::time::{MAX_DURATION, format_duration, now_ms, parse_duration};
use crate::transport::Transport;

pub(crate) fn plugin(app: &mut App) {
    app.add_message::<ConsoleCommand>()
        .add_systems(Update, (run_commands, answer_players).chain());
}

/// A line typed at the server's console (the console plugin reads stdin and writes these).
#[derive(Message, Debug, Clone)]
pub struct ConsoleCommand(pub String);

/// What a player who may not run a command is told.
pub const NOT_ALLOWED: &str = "You are not allowed to do that";
/// Most audit entries one `audit` shows.
pub const MAX_AUDIT: i64 = 1_000;

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Help,
    Who,
    Whisper {
        name: String,
        text: String,
    },
    List,
    Say {
        text: String,
    },
    Kick {
        name: String,
        reason: String,
    },
    Ban {
        name: String,
        duration: Option<Duration>,
        reason: String,
    },
    Unban {
        name: String,
    },
    Mute {
        name: String,
        duration: Duration,
        reason: String,
    },
    Unmute {
        name: String,
    },
    Role {
        name: String,
        role: Role,
    },
    Shutdown {
        after: Duration,
        reason: String,
    },
    CancelShutdown,
    Audit {
        limit: i64,
    },
    Backup {
        path: PathBuf,
    },
}

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Needs {
    Anyone,
    Moderator,
    Admin,
    Console,
}

/// Every command: its usage and who may run it, as `help` lists them.
const USAGE: &[(&str, Needs, &str)] = &[
    ("help", Needs::Anyone, "help: what you may run"),
    ("who", Needs::Anyone, "who: who is online"),
    (
        "w",
        Needs::Anyone,
        "w NAME TEXT (or whisper): a private line to NAME",
    ),
    ("kick", Needs::Moderator, "kick NAME [REASON]"),
    (
        "ban",
        Needs::Moderator,
        "ban NAME [DURATION] [REASON]: DURATION like 30m, 2h, 7d; none: until unban",
    ),
    ("unban", Needs::Moderator, "unban NAME"),
    ("mute", Needs::Moderator, "mute NAME DURATION [REASON]"),
    ("unmute", Needs::Moderator, "unmute NAME"),
    ("role", Needs::Admin, "role NAME player|moderator|admin"),
    ("say", Needs::Admin, "say TEXT: a server line to everyone"),
    (
        "list",
        Needs::Console,
        "list: online players with role, time connected and address",
    ),
    (
        "shutdown",
        Needs::Console,
        "shutdown [SECONDS|DURATION] [REASON] (or shutdown cancel): counts down in chat, then stops gracefully",
    ),
    (
        "audit",
        Needs::Console,
        "audit [N]: the N latest moderation actions (20)",
    ),
    (
        "backup",
        Needs::Console,
        "backup PATH: a consistent copy of the live database",
    ),
];

fn usage(command: &str) -> String {
    let line = USAGE
        .iter()
        .find(|(name, ..)| *name == command)
        .map_or(command, |(_, _, usage)| usage);
    format!("Usage: {line}")
}

impl Command {
    /// Parses a command line (without the `/`). The error is what the actor is told.
    pub fn parse(line: &str) -> Result<Self, String> {
        let line = line.trim();
        let (word, rest) = split_word(line);
        let word = word.to_ascii_lowercase();
        let bad = || usage(&word);
        let name = |text: &str| -> Result<String, String> {
            let (name, _) = split_word(text);
            if name.is_empty() {
                return Err(bad());
            }
            protocol::validate_username(name)
                .map_err(|_| format!("{name} is not a player name"))?;
            Ok(name.to_owned())
        };
        let after_name = |text: &str| split_word(text).1.trim().to_owned();
        Ok(match word.as_str() {
            "help" | "?" => Command::Help,
            "who" | "online" => Command::Who,
            "w" | "whisper" | "msg" | "tell" => {
                let name = name(rest)?;
                let text = after_name(rest);
                if text.is_empty() {
                    return Err(usage("w"));
                }
                Command::Whisper { name, text }
            }
            "list" => Command::List,
            "say" if !rest.trim().is_empty() => Command::Say {
                text: rest.trim().to_owned(),
            },
            "kick" => Command::Kick {
                name: name(rest)?,
                reason: after_name(rest),
            },
            "ban" => {
                let name = name(rest)?;
                let after = after_name(rest);
                let (first, more) = split_word(&after);
                match parse_duration(first) {
                    Some(duration) => Command::Ban {
                        name,
                        duration: Some(duration),
                        reason: more.trim().to_owned(),
                    },
                    None => Command::Ban {
                        name,
                        duration: None,
                        reason: after_name(rest),
                    },
                }
            }
            "unban" => Command::Unban { name: name(rest)? },
            "mute" => {
                let name = name(rest)?;
                let after = after_name(rest);
                let (first, more) = split_word(&after);
                let duration = parse_duration(first).ok_or_else(bad)?;
                Command::Mute {
                    name,
                    duration,
                    reason: more.trim().to_owned(),
                }
            }
            "unmute" => Command::Unmute { name: name(rest)? },
            "role" => {
                let name = name(rest)?;
                let role = Role::parse(&after_name(rest)).ok_or_else(bad)?;
                Command::Role { name, role }
            }
            "shutdown" | "stop" => {
                let (first, more) = split_word(rest);
                if first.eq_ignore_ascii_case("cancel") {
                    Command::CancelShutdown
                } else if first.is_empty() {
                    Command::Shutdown {
                        after: Duration::ZERO,
                        reason: String::new(),
                    }
                } else {
                    let after = match first.parse::<u64>() {
                        Ok(secs) if secs <= MAX_DURATION.as_secs() => Duration::from_secs(secs),
                        Ok(_) => return Err(bad()),
                        Err(_) => parse_duration(first).ok_or_else(bad)?,
                    };
                    Command::Shutdown {
                        after,
                        reason: more.trim().to_owned(),
                    }
                }
            }
            "audit" => {
                let limit = match rest.trim() {
                    "" => 20,
                    n => n
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_AUDIT).contains(n))
                        .ok_or_else(bad)?,
                };
                Command::Audit { limit }
            }
            "backup" if !rest.trim().is_empty() => Command::Backup {
                path: PathBuf::from(rest.trim()),
            },
            "" => return Err("Type help for the commands".into()),
            "say" | "backup" => return Err(bad()),
            _ => {
                return Err(format!(
                    "Unknown command {word}: type help for the commands"
                ));
            }
        })
    }

    /// Who may run it.
    pub fn needs(&self) -> Needs {
        match self {
            Command::Help | Command::Who | Command::Whisper { .. } => Needs::Anyone,
            Command::Kick { .. }
            | Command::Ban { .. }
            | Command::Unban { .. }
            | Command::Mute { .. }
            | Command::Unmute { .. } => Needs::Moderator,
            Command::Role { .. } | Command::Say { .. } => Needs::Admin,
            Command::List
            | Command::Shutdown { .. }
            | Command::CancelShutdown
            | Command::Audit { .. }
            | Command::Backup { .. } => Needs::Console,
        }
    }
}

/// The first word and the rest.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    text.split_once(char::is_whitespace).unwrap_or((text, ""))
}

fn allowed(actor: &Actor, needs: Needs) -> bool {
    match actor {
        Actor::Console => true,
        Actor::Player { role, .. } => match needs {
            Needs::Anyone => true,
            Needs::Moderator => *role >= Role::Moderator,
            Needs::Admin => *role >= Role::Admin,
            Needs::Console => false,
        },
    }
}

/// The help text for `actor`: the commands it may run.
fn help(actor: &Actor) -> String {
    let slash = if matches!(actor, Actor::Console) {
        ""
    } else {
        "/"
    };
    let mut text = "Commands:".to_owned();
    for (_, needs, usage) in USAGE {
        if allowed(actor, *needs) {
            text += &format!("\n  {slash}{usage}");
        }
    }
    text
}

fn run_commands(
    mut slash: MessageReader<SlashCommand>,
    mut console: MessageReader<ConsoleCommand>,
    mut run: Run,
    mut replies: MessageWriter<Reply>,
) {
    let sanctions = &run.sanctions;
    let from_players = slash.read().filter_map(|command| {
        let (_, _, player) = run.players.get(command.entity).ok()?;
        let actor = Actor::Player {
            entity: command.entity,
            client_id: command.client_id,
            account_id: player.account_id,
            name: player.name.clone(),
            role: sanctions.role(player.account_id),
        };
        Some((actor, command.text.clone()))
    });
    let from_console = console
        .read()
        .map(|ConsoleCommand(line)| (Actor::Console, line.clone()));
    let lines: Vec<(Actor, String)> = from_players.chain(from_console).collect();
    for (actor, line) in lines {
        info!(actor = actor.name(), command = line, "command");
        run.metrics.commands.inc();
        let answer = match Command::parse(&line) {
            Err(error) => Some(Err(error)),
            Ok(command) if !allowed(&actor, command.needs()) => Some(Err(NOT_ALLOWED.into())),
            Ok(command) => run.command(&actor, command),
        };
        if let Some(answer) = answer {
            if let Err(error) = &answer {
                info!(actor = actor.name(), error, "command refused");
            }
            replies.write(Reply { actor, answer });
        }
    }
}

/// What running a command on the tick needs.
#[derive(SystemParam)]
struct Run<'w, 's> {
    commands: Commands<'w, 's>,
    server: ResMut<'w, RenetServer>,
    countdown: ResMut<'w, Countdown>,
    sanctions: Res<'w, Sanctions>,
    store: Res<'w, ModerationStore>,
    transport: Res<'w, Transport>,
    metrics: Res<'w, Metrics>,
    bus: Option<Res<'w, Bus>>,
    elsewhere: Res<'w, Elsewhere>,
    players: Query<'w, 's, (Entity, &'static Connection, &'static Player)>,
}

impl Run<'_, '_> {
    /// The online player called `name` (any case).
    fn online(&self, name: &str) -> Option<(Entity, &Connection, &Player)> {
        self.players
            .iter()
            .find(|(_, _, p)| p.name.eq_ignore_ascii_case(name))
    }

    /// Runs `command`; `None` when the answer comes later (from the moderation thread).
    fn command(&mut self, actor: &Actor, command: Command) -> Option<Result<String, String>> {
        let later = |store: &ModerationStore, action| {
            store.request(actor.clone(), action);
            None
        };
        match command {
            Command::Help => Some(Ok(help(actor))),
            Command::Who => {
                let mut names: Vec<&str> = self
                    .players
                    .iter()
                    .map(|(_, _, p)| p.name.as_str())
                    .collect();
                names.extend(self.elsewhere.names());
                names.sort_unstable_by_key(|n| n.to_ascii_lowercase());
                Some(Ok(format!("{} online: {}", names.len(), names.join(", "))))
            }
            Command::Whisper { name, text } => Some(self.whisper(actor, &name, &text)),
            Command::List => Some(Ok(self.list())),
            Command::Say { text } => {
                let here = self.tell_everyone_here(&text);
                if let Some(bus) = &self.bus {
                    bus.publish(Event::System { text: text.clone() });
                }
                let action = Action::Note {
                    action: "say",
                    target: String::new(),
                    detail: text,
                };
                self.store.request(actor.clone(), action);
                let elsewhere = self.elsewhere.names().count();
                Some(Ok(format!("Said to {} players", here + elsewhere)))
            }
            Command::Kick { name, reason } => Some(self.kick(actor, &name, reason)),
            Command::Ban {
                name,
                duration,
                reason,
            } => later(
                &self.store,
                Action::Ban {
                    name,
                    duration,
                    reason,
                },
            ),
            Command::Unban { name } => later(&self.store, Action::Unban { name }),
            Command::Mute {
                name,
                duration,
                reason,
            } => later(
                &self.store,
                Action::Mute {
                    name,
                    duration,
                    reason,
                },
            ),
            Command::Unmute { name } => later(&self.store, Action::Unmute { name }),
            Command::Role { name, role } => later(&self.store, Action::SetRole { name, role }),
            Command::Audit { limit } => later(&self.store, Action::ReadAudit { limit }),
            Command::Backup { path } => later(&self.store, Action::Backup { path }),
            Command::Shutdown { after, reason } => {
                self.countdown.start(after, reason.clone());
                let detail = format!("in {}s: {reason}", after.as_secs());
                let action = Action::Note {
                    action: "shutdown",
                    target: String::new(),
                    detail,
                };
                self.store.request(actor.clone(), action);
                if after.is_zero() {
                    Some(Ok("Shutting down".into()))
                } else {
                    Some(Ok(format!("Shutting down in {}", format_duration(after))))
                }
            }
            Command::CancelShutdown => Some(if self.countdown.cancel() {
                let text = "Shutdown cancelled".to_owned();
                self.tell_everyone_here(&text);
                Ok(text)
            } else {
                Err("No shutdown is counting down".into())
            }),
        }
    }

    /// A system line to every player of this shard; to how many.
    fn tell_everyone_here(&mut self, text: &str) -> usize {
        let bytes = net::encode(&ServerMessage::System {
            text: text.to_owned(),
        });
        let everyone = self.players.iter().map(|(e, c, _)| (e, c));
        players::broadcast(&mut self.server, everyone, &bytes, None)
    }

    fn whisper(&mut self, actor: &Actor, name: &str, text: &str) -> Result<String, String> {
        let Actor::Player {
            client_id,
            account_id,
            name: from,
            ..
        } = actor
        else {
            return Err("The console cannot whisper: use say".into());
        };
        let now = now_ms();
        if let Some(mute) = self.sanctions.mute(*account_id, now) {
            return Err(mute.muted_text(now));
        }
        let (to, to_name) = match self.online(name) {
            Some((_, to, player)) => (Some(to.client_id), player.name.clone()),
            None => match (&self.bus, self.elsewhere.find(name)) {
                (Some(_), Some(remote)) => (None, remote.to_owned()),
                _ => return Err(format!("{name} is not online")),
            },
        };
        let line = WhisperLine {
            from: from.clone(),
            to: to_name,
            text: text.to_owned(),
            sent_at_ms: now,
        };
        let bytes = net::encode(&ServerMessage::Whisper(line.clone()));
        match (to, &self.bus) {
            (Some(to), _) => self
                .server
                .send_message(to, protocol::CHANNEL, bytes.clone()),
            // The shard where the recipient plays delivers it.
            (None, Some(bus)) => bus.publish(Event::Whisper(line)),
            (None, None) => {}
        }
        if to != Some(*client_id) {
            self.server
                .send_message(*client_id, protocol::CHANNEL, bytes);
        }
        self.metrics.whispers.inc();
        // The whisper itself is the answer: both ends see it.
        Err(String::new())
    }

    fn list(&self) -> String {
        let now = Instant::now();
        let mut rows: Vec<_> = self.players.iter().collect();
        rows.sort_unstable_by_key(|(_, _, p)| p.name.to_ascii_lowercase());
        let mut text = format!("{} online", rows.len());
        for (_, connection, player) in rows {
            let addr = self
                .transport
                .client_addr(connection.client_id)
                .map_or_else(|| "?".into(), |a| a.to_string());
            text += &format!(
                "\n  {} {} {} {}",
                player.name,
                self.sanctions.role(player.account_id),
                format_duration(now.saturating_duration_since(connection.connected_at)),
                addr
            );
        }
        text
    }

    fn kick(&mut self, actor: &Actor, name: &str, reason: String) -> Result<String, String> {
        let Some((entity, connection, player)) = self.online(name) else {
            return Err(format!("{name} is not online"));
        };
        if !actor.outranks(self.sanctions.role(player.account_id)) {
            return Err(OUTRANKED.into());
        }
        let name = player.name.clone();
        let client_id = connection.client_id;
        let why = match reason.as_str() {
            "" => format!("Kicked by {}", actor.name()),
            reason => format!("Kicked by {}: {reason}", actor.name()),
        };
        net::kick(
            &mut self.commands,
            &mut self.server,
            entity,
            client_id,
            &why,
        );
        let action = Action::Note {
            action: "kick",
            target: name.clone(),
            detail: reason,
        };
        self.store.request(actor.clone(), action);
        Ok(format!("Kicked {name}"))
    }
}

/// Players see their answers in chat: a system line, or a refusal. (An empty refusal is a whisper,
/// which answered itself.)
fn answer_players(mut replies: MessageReader<Reply>, mut server: ResMut<RenetServer>) {
    for Reply { actor, answer } in replies.read() {
        let Actor::Player { client_id, .. } = actor else {
            continue;
        };
        if !server.is_connected(*client_id) {
            continue;
        }
        match answer {
            Ok(text) => net::send(
                &mut server,
                *client_id,
                &ServerMessage::System { text: text.clone() },
            ),
            Err(reason) if reason.is_empty() => {}
            Err(reason) => net::deny(&mut server, *client_id, Request::Command, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_optional_parts() {
        assert_eq!(Command::parse("help"), Ok(Command::Help));
        assert_eq!(
            Command::parse("w Bob  hello there "),
            Ok(Command::Whisper {
                name: "Bob".into(),
                text: "hello there".into()
            })
        );
        assert_eq!(
            Command::parse("ban bob 2h spamming links"),
            Ok(Command::Ban {
                name: "bob".into(),
                duration: Some(Duration::from_secs(7_200)),
                reason: "spamming links".into()
            })
        );
        assert_eq!(
            Command::parse("BAN bob spamming"),
            Ok(Command::Ban {
                name: "bob".into(),
                duration: None,
                reason: "spamming".into()
            })
        );
        assert_eq!(
            Command::parse("shutdown 30 update"),
            Ok(Command::Shutdown {
                after: Duration::from_secs(30),
                reason: "update".into()
            })
        );
        assert_eq!(
            Command::parse("shutdown cancel"),
            Ok(Command::CancelShutdown)
        );
        assert_eq!(Command::parse("audit"), Ok(Command::Audit { limit: 20 }));
        assert_eq!(
            Command::parse("role alice MOD"),
            Ok(Command::Role {
                name: "alice".into(),
                role: Role::Moderator
            })
        );
    }

    #[test]
    fn bad_commands_say_how_to_use_them() {
        for (line, answer) in [
            ("mute bob", "Usage: mute NAME DURATION [REASON]"),
            ("mute bob forever", "Usage: mute NAME DURATION [REASON]"),
            ("role bob king", "Usage: role NAME player|moderator|admin"),
            (
                "w bob",
                "Usage: w NAME TEXT (or whisper): a private line to NAME",
            ),
            ("kick", "Usage: kick NAME [REASON]"),
            ("kick b", "b is not a player name"),
            (
                "audit 0",
                "Usage: audit [N]: the N latest moderation actions (20)",
            ),
            ("dance", "Unknown command dance: type help for the commands"),
            ("", "Type help for the commands"),
        ] {
            assert_eq!(Command::parse(line), Err(answer.to_owned()), "{line:?}");
        }
    }

    #[test]
    fn players_may_run_what_their_role_allows() {
        let player = |role| Actor::Player {
            entity: Entity::PLACEHOLDER,
            client_id: 1,
            account_id: 1,
            name: "a".into(),
            role,
        };
        assert!(allowed(&player(Role::Player), Needs::Anyone));
        assert!(!allowed(&player(Role::Player), Needs::Moderator));
        assert!(allowed(&player(Role::Moderator), Needs::Moderator));
        assert!(!allowed(&player(Role::Moderator), Needs::Admin));
        assert!(!allowed(&player(Role::Admin), Needs::Console));
        assert!(allowed(&Actor::Console, Needs::Console));
        assert!(!help(&player(Role::Player)).contains("kick"));
        assert!(help(&player(Role::Moderator)).contains("/kick"));
        assert!(player(Role::Admin).outranks(Role::Moderator));
        assert!(!player(Role::Moderator).outranks(Role::Moderator));
    }
}
