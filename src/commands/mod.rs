//! Commands: what players type in chat after a `/` and operators type at the console, one grammar for
//! both ([`args`]). Every command is registered by the plugin it belongs to, from that plugin's own file
//! ([`AppCommands::add_command`]): its name and aliases, who may run it ([`Needs`]), its usage line, and
//! its handler, a Bevy system that takes the [`Call`] and returns an [`Outcome`]. What is common lives
//! here and reads the registry: `help` (each actor sees what it may run), the permission check, "Unknown
//! command", logging and counting every command, and answering whoever ran it with a [`Reply`] (players
//! see it in chat, the console prints it: `crate::console`). Commands that need the database hand a job
//! to the [`store::CommandStore`] thread; their answer comes back as a `Reply` a few ticks later.
//!
//! Where the commands live: `help` here; `who` and `w` in `crate::chat::whisper`; `say` in
//! `crate::chat::announce`; `kick`, `ban`, `unban`, `mute`, `unmute`, `role` in `crate::moderation`;
//! `list`, `audit`, `backup` in `crate::moderation::operator`; `shutdown` in `crate::shutdown`;
//! `greet` in `crate::npc`.

pub mod actor;
pub mod args;
pub mod store;

use bevy::ecs::system::{SystemId, SystemState};
use bevy::prelude::*;
use bevy_renet::renet::ClientId;

use crate::logs::Budget;
use crate::metrics::Metrics;
use crate::net::{self, Outbox};
use crate::players::Player;
use crate::protocol::{Request, ServerMessage};
use crate::schedule::ServerSystems;
pub use actor::{Actor, Needs, OUTRANKED, Role, Roles};
pub use args::Args;
pub use store::{CommandStore, Later};

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<CommandRegistry>()
        .init_resource::<Roles>()
        .add_message::<SlashCommand>()
        .add_message::<ConsoleCommand>()
        .add_message::<Reply>()
        .add_plugins(store::plugin)
        .add_systems(
            Update,
            (run_commands, answer_players)
                .chain()
                .in_set(ServerSystems::Commands),
        )
        .add_command(
            CommandSpec::new("help", Needs::Anyone, "help: what you may run").aliases(&["?"]),
            help,
        );
}

/// What a player who may not run a command is told.
pub const NOT_ALLOWED: &str = "You are not allowed to do that";

/// Players' commands in the log (`crate::logs`); every command is counted in the metrics.
static PLAYER_COMMANDS: Budget = Budget::new("command", 10, 300);

/// A player's chat line that starts with `/`: a command. It passed the chat's flood limit and line
/// checks; `text` is the line without the `/`.
#[derive(Message, Debug, Clone)]
pub struct SlashCommand {
    pub entity: Entity,
    pub client_id: ClientId,
    pub text: String,
}

/// A line typed at the server's console (the console plugin reads stdin and writes these).
#[derive(Message, Debug, Clone)]
pub struct ConsoleCommand(pub String);

/// A command as `help` lists it and the registry finds it.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub needs: Needs,
    /// `NAME ARGS: what it does`, without the `/`.
    pub usage: &'static str,
}

impl CommandSpec {
    pub const fn new(name: &'static str, needs: Needs, usage: &'static str) -> Self {
        Self {
            name,
            aliases: &[],
            needs,
            usage,
        }
    }

    /// Other words that run it (`whisper` for `w`).
    pub const fn aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    fn answers_to(&self, word: &str) -> bool {
        self.name == word || self.aliases.contains(&word)
    }
}

/// One run of a command: who runs it, and the arguments after its word.
#[derive(Debug, Clone)]
pub struct Call {
    pub actor: Actor,
    rest: String,
    usage: &'static str,
}

impl Call {
    /// The arguments, to read with the shared grammar.
    pub fn args(&self) -> Args<'_> {
        Args::new(&self.rest, self.usage)
    }
}

/// What a handler returns: `Ok(Some(text))` answers the actor now, `Ok(None)` answers nothing now (a
/// job on the [`CommandStore`] answers later, or the command answered itself, as a whisper does),
/// `Err(reason)` refuses it.
pub type Outcome = Result<Option<String>, String>;

/// Answers the actor now with `text`.
pub fn answer(text: impl Into<String>) -> Outcome {
    Ok(Some(text.into()))
}

/// A registered command: what `help` shows and the system that runs it.
#[derive(Debug, Clone, Copy)]
struct Registered {
    spec: CommandSpec,
    handler: SystemId<In<Call>, Outcome>,
}

/// Every command, in the order registered (`help` lists them by who may run them, then that order).
#[derive(Resource, Debug, Default)]
pub struct CommandRegistry {
    commands: Vec<Registered>,
}

impl CommandRegistry {
    /// The specs of every command, in `help`'s order.
    pub fn specs(&self) -> Vec<CommandSpec> {
        let mut specs: Vec<CommandSpec> = self.commands.iter().map(|c| c.spec).collect();
        specs.sort_by_key(|spec| spec.needs);
        specs
    }

    fn find(&self, word: &str) -> Option<Registered> {
        self.commands
            .iter()
            .find(|command| command.spec.answers_to(word))
            .copied()
    }
}

/// How plugins add commands.
pub trait AppCommands {
    /// Registers a command: `handler` is a system taking `In<Call>` and returning an [`Outcome`]. A
    /// name or alias already taken panics at start, naming both.
    fn add_command<M>(
        &mut self,
        spec: CommandSpec,
        handler: impl IntoSystem<In<Call>, Outcome, M> + 'static,
    ) -> &mut Self;
}

impl AppCommands for App {
    fn add_command<M>(
        &mut self,
        spec: CommandSpec,
        handler: impl IntoSystem<In<Call>, Outcome, M> + 'static,
    ) -> &mut Self {
        let handler = self.world_mut().register_system(handler);
        let mut registry = self.world_mut().get_resource_or_init::<CommandRegistry>();
        for word in std::iter::once(&spec.name).chain(spec.aliases) {
            if let Some(taken) = registry.find(word) {
                panic!(
                    "the command word {word:?} of {} is taken by {}",
                    spec.name, taken.spec.name
                );
            }
        }
        registry.commands.push(Registered { spec, handler });
        self
    }
}

/// The answer to a command, for whoever ran it: the console prints it, a player sees it in chat.
#[derive(Message, Debug, Clone)]
pub struct Reply {
    pub actor: Actor,
    pub answer: Result<String, String>,
}

/// `help`: the commands the actor may run, one a line.
fn help(In(call): In<Call>, registry: Res<CommandRegistry>) -> Outcome {
    let slash = if matches!(call.actor, Actor::Console) {
        ""
    } else {
        "/"
    };
    let mut text = "Commands:".to_owned();
    for spec in registry.specs() {
        if call.actor.may(spec.needs) {
            text += &format!("\n  {slash}{}", spec.usage);
        }
    }
    answer(text)
}

/// Runs the commands of this tick: each is looked up, checked against the actor's role, run, logged
/// and counted; its answer goes out as a [`Reply`].
fn run_commands(
    world: &mut World,
    incoming: &mut SystemState<(
        MessageReader<SlashCommand>,
        MessageReader<ConsoleCommand>,
        Query<&Player>,
        Res<Roles>,
    )>,
) {
    let lines: Vec<(Actor, String)> = {
        let Ok((mut slash, mut console, players, roles)) = incoming.get_mut(world) else {
            return;
        };
        let from_players = slash.read().filter_map(|command| {
            let player = players.get(command.entity).ok()?;
            let actor = Actor::Player {
                entity: command.entity,
                client_id: command.client_id,
                account_id: player.account_id,
                name: player.name.clone(),
                role: roles.role(player.account_id),
            };
            Some((actor, command.text.clone()))
        });
        let from_console = console
            .read()
            .map(|ConsoleCommand(line)| (Actor::Console, line.clone()));
        from_players.chain(from_console).collect()
    };
    for (actor, line) in lines {
        // The console's commands are always logged; players' within their budget.
        let logged = match &actor {
            Actor::Console => true,
            Actor::Player { account_id, .. } => PLAYER_COMMANDS.allow(account_id),
        };
        if logged {
            info!(actor = actor.name(), command = line, "command");
        }
        world.resource::<Metrics>().commands.inc();
        let outcome = run(world, &actor, &line);
        if let Err(error) = &outcome
            && logged
        {
            info!(actor = actor.name(), error, "command refused");
        }
        let answer = match outcome {
            Ok(None) => continue,
            Ok(Some(text)) => Ok(text),
            Err(reason) => Err(reason),
        };
        world.write_message(Reply { actor, answer });
    }
}

/// Finds, checks and runs one command line.
fn run(world: &mut World, actor: &Actor, line: &str) -> Outcome {
    let (word, rest) = args::split_word(line.trim());
    if word.is_empty() {
        return Err("Type help for the commands".into());
    }
    let word = word.to_ascii_lowercase();
    let Some(command) = world.resource::<CommandRegistry>().find(&word) else {
        return Err(format!(
            "Unknown command {word}: type help for the commands"
        ));
    };
    if !actor.may(command.spec.needs) {
        return Err(NOT_ALLOWED.into());
    }
    let call = Call {
        actor: actor.clone(),
        rest: rest.to_owned(),
        usage: command.spec.usage,
    };
    world
        .run_system_with(command.handler, call)
        .unwrap_or_else(|error| {
            error!(%error, command = command.spec.name, "a command handler could not run");
            Err("Server error, try again".into())
        })
}

/// Players see their answers in chat: a system line, or a refusal.
fn answer_players(mut replies: MessageReader<Reply>, mut server: Outbox) {
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
            Err(reason) => net::deny(&mut server, *client_id, Request::Command, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::actor::tests::player;
    use super::*;

    fn noop(_: In<Call>) -> Outcome {
        Ok(None)
    }

    #[test]
    fn help_lists_what_each_actor_may_run_in_order_of_rank() {
        let mut app = App::new();
        app.add_command(CommandSpec::new("zap", Needs::Admin, "zap NAME"), noop)
            .add_command(CommandSpec::new("look", Needs::Anyone, "look"), noop)
            .add_command(CommandSpec::new("help", Needs::Anyone, "help"), help);
        let world = app.world_mut();
        let id = world
            .resource::<CommandRegistry>()
            .find("help")
            .unwrap()
            .handler;
        let mut help_for = |actor| {
            let call = Call {
                actor,
                rest: String::new(),
                usage: "help",
            };
            world.run_system_with(id, call).unwrap().unwrap().unwrap()
        };
        assert_eq!(
            help_for(player(Role::Player)),
            "Commands:\n  /look\n  /help"
        );
        assert_eq!(
            help_for(player(Role::Admin)),
            "Commands:\n  /look\n  /help\n  /zap NAME"
        );
        assert_eq!(
            help_for(Actor::Console),
            "Commands:\n  look\n  help\n  zap NAME"
        );
    }

    #[test]
    #[should_panic(expected = "the command word \"w\" of whisper is taken by w")]
    fn two_commands_cannot_share_a_word() {
        App::new()
            .add_command(CommandSpec::new("w", Needs::Anyone, "w"), noop)
            .add_command(
                CommandSpec::new("whisper", Needs::Anyone, "whisper").aliases(&["w"]),
                noop,
            );
    }
}
