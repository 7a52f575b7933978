//! Players: the PLAY state. A connection that logs in gets a [`Player`] component; this plugin keeps the
//! index of who is online, tells the new player who is there, and tells everyone else when a player
//! joins or leaves (however the `Player` component goes: logout, kick or disconnect).

use std::collections::HashMap;

use bevy::prelude::*;
use bevy_renet::RenetServer;
use bevy_renet::renet::Bytes;

use crate::net::{self, Connection};
use crate::protocol::{CHANNEL, ServerMessage};

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<OnlineAccounts>()
        .add_observer(on_player_added)
        .add_observer(on_player_removed);
}

/// A logged-in connection: the account it speaks for. The name is the account's display form and is the
/// only name chat ever shows for it.
#[derive(Component, Debug, Clone)]
pub struct Player {
    pub account_id: i32,
    pub name: String,
}

/// Which entity plays each online account.
#[derive(Resource, Default, Debug)]
pub struct OnlineAccounts(HashMap<i32, Entity>);

impl OnlineAccounts {
    pub fn entity(&self, account_id: i32) -> Option<Entity> {
        self.0.get(&account_id).copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Sends the same encoded bytes to every player (returns to how many), except `except` and those whose
/// connection renet has already dropped (players disconnected in the same tick are despawned after every
/// disconnection of that tick is handled: without the check, each "NAME left" would go to all those gone before it, and renet
/// logs an error for each, half a million errors when a thousand players drop at once).
pub fn broadcast<'a>(
    server: &mut RenetServer,
    players: impl IntoIterator<Item = (Entity, &'a Connection)>,
    bytes: &Bytes,
    except: Option<Entity>,
) -> usize {
    let mut sent = 0;
    for (entity, connection) in players {
        if Some(entity) != except && server.is_connected(connection.client_id) {
            server.send_message(connection.client_id, CHANNEL, bytes.clone());
            sent += 1;
        }
    }
    sent
}

fn on_player_added(
    add: On<Add, Player>,
    players: Query<(Entity, &Connection, &Player)>,
    mut online: ResMut<OnlineAccounts>,
    mut server: ResMut<RenetServer>,
) {
    let Ok((entity, connection, player)) = players.get(add.entity) else {
        return;
    };
    online.0.insert(player.account_id, entity);
    info!(client_id = connection.client_id, account_id = player.account_id, name = %player.name, "logged in");

    let mut names: Vec<String> = players.iter().map(|(_, _, p)| p.name.clone()).collect();
    names.sort_unstable_by_key(|name| name.to_ascii_lowercase());
    net::send(
        &mut server,
        connection.client_id,
        &ServerMessage::OnlinePlayers { names },
    );
    let joined = net::encode(&ServerMessage::PlayerJoined {
        name: player.name.clone(),
    });
    broadcast(
        &mut server,
        players.iter().map(|(e, c, _)| (e, c)),
        &joined,
        Some(entity),
    );
}

fn on_player_removed(
    remove: On<Remove, Player>,
    players: Query<(Entity, &Connection, &Player)>,
    mut online: ResMut<OnlineAccounts>,
    mut server: ResMut<RenetServer>,
) {
    let Ok((entity, connection, player)) = players.get(remove.entity) else {
        return;
    };
    if online.entity(player.account_id) == Some(entity) {
        online.0.remove(&player.account_id);
    }
    info!(client_id = connection.client_id, account_id = player.account_id, name = %player.name, "logged out");
    let left = net::encode(&ServerMessage::PlayerLeft {
        name: player.name.clone(),
    });
    broadcast(
        &mut server,
        players.iter().map(|(e, c, _)| (e, c)),
        &left,
        Some(entity),
    );
}
