//! `kick NAME [REASON]`: closes an online player's connection, telling it who kicked it and why.
//! Moderators may kick players, admins moderators too, the console anyone.

use bevy::prelude::*;

use crate::commands::{
    Actor, AppCommands, Args, Call, CommandSpec, CommandStore, Needs, OUTRANKED, Outcome, Roles,
    answer,
};
use crate::net::{self, Connection, Outbox};
use crate::players::Player;

pub(super) fn plugin(app: &mut App) {
    app.add_command(
        CommandSpec::new("kick", Needs::Moderator, "kick NAME [REASON]"),
        kick,
    );
}

/// A parsed `kick`.
#[derive(Debug, PartialEq)]
struct Kick {
    name: String,
    reason: String,
}

impl Kick {
    fn parse(mut args: Args) -> Result<Self, String> {
        Ok(Self {
            name: args.name()?,
            reason: args.rest(),
        })
    }

    /// What the kicked player is told.
    fn why(&self, actor: &Actor) -> String {
        match self.reason.as_str() {
            "" => format!("Kicked by {}", actor.name()),
            reason => format!("Kicked by {}: {reason}", actor.name()),
        }
    }
}

fn kick(
    In(call): In<Call>,
    mut commands: Commands,
    mut server: Outbox,
    players: Query<(Entity, &Connection, &Player)>,
    roles: Res<Roles>,
    store: Res<CommandStore>,
) -> Outcome {
    let kick = Kick::parse(call.args())?;
    let Some((entity, connection, player)) = players
        .iter()
        .find(|(_, _, p)| p.name.eq_ignore_ascii_case(&kick.name))
    else {
        return Err(format!("{} is not online", kick.name));
    };
    if !call.actor.outranks(roles.role(player.account_id)) {
        return Err(OUTRANKED.into());
    }
    let why = kick.why(&call.actor);
    net::kick(
        &mut commands,
        &mut server,
        entity,
        connection.client_id,
        &why,
    );
    store.audit(&call.actor, "kick", &player.name, kick.reason);
    answer(format!("Kicked {}", player.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kick_names_its_player_and_maybe_a_reason() {
        let usage = "kick NAME [REASON]";
        assert_eq!(
            Kick::parse(Args::new("bob  being rude ", usage)),
            Ok(Kick {
                name: "bob".into(),
                reason: "being rude".into()
            })
        );
        assert_eq!(
            Kick::parse(Args::new("", usage)),
            Err("Usage: kick NAME [REASON]".into())
        );
        assert_eq!(
            Kick::parse(Args::new("b", usage)),
            Err("b is not a player name".into())
        );
        let kick = Kick::parse(Args::new("bob", usage)).unwrap();
        assert_eq!(kick.why(&Actor::Console), "Kicked by console");
    }
}
