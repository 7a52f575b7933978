//! `say TEXT`: a server line to every player, on this shard and (with `--bus`) every other. Admins and
//! the console; recorded in the audit log.

use bevy::prelude::*;

use crate::commands::{AppCommands, Call, CommandSpec, CommandStore, Needs, Outcome, answer};
use crate::net::{self, Connection, Outbox};
use crate::players::{self, Elsewhere, Player};
use crate::protocol::ServerMessage;

pub(super) fn plugin(app: &mut App) {
    app.add_message::<Announced>().add_command(
        CommandSpec::new("say", Needs::Admin, "say TEXT: a server line to everyone"),
        say,
    );
}

/// An announcement made here (the bus relays it to the other shards).
#[derive(Message, Debug, Clone)]
pub struct Announced(pub String);

fn say(
    In(call): In<Call>,
    mut server: Outbox,
    players: Query<(Entity, &Connection), With<Player>>,
    elsewhere: Res<Elsewhere>,
    store: Res<CommandStore>,
    mut announced: MessageWriter<Announced>,
) -> Outcome {
    let text = call.args().text()?;
    let bytes = net::encode(&ServerMessage::System { text: text.clone() });
    let here = players::broadcast(&mut server, players, &bytes, None);
    announced.write(Announced(text.clone()));
    store.audit(&call.actor, "say", "", text);
    answer(format!(
        "Said to {} players",
        here + elsewhere.names().count()
    ))
}
