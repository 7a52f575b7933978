//! Players: the PLAY state. A connection that logs in gets a [`Player`] component; this plugin keeps the
//! index of who is online, tells the new player who is there, and tells everyone else when a player
//! joins or leaves (however the `Player` component goes: logout, kick or disconnect).

use std::collections::{BTreeMap, HashMap};

use bevy::prelude::*;
use bevy_renet::renet::Bytes;

use crate::logs::Budget;
use crate::net::{self, Connection, Outbox};
use crate::protocol::{CHANNEL, ServerMessage};

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<OnlineAccounts>()
        .init_resource::<Elsewhere>()
        .add_observer(on_player_added)
        .add_observer(on_player_removed);
}

/// Log lines an account can cause by logging in again and again (`crate::logs`).
static LOGGED_IN: Budget = Budget::new("logged in", 10, 600);
static LOGGED_OUT: Budget = Budget::new("logged out", 10, 600);

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

/// Players online on other shards (with `--bus`), as their shards last said: by shard, account id →
/// display name. The bus plugin keeps it; the online list, `/who` and whispers read it.
#[derive(Resource, Default, Debug)]
pub struct Elsewhere(BTreeMap<String, BTreeMap<i32, String>>);

impl Elsewhere {
    /// Adds a player of `shard`; whether it is new.
    pub fn insert(&mut self, shard: &str, account_id: i32, name: &str) -> bool {
        let roster = self.0.entry(shard.to_owned()).or_default();
        roster.insert(account_id, name.to_owned()).is_none()
    }

    /// Removes a player of `shard`; whether it was there.
    pub fn remove(&mut self, shard: &str, account_id: i32) -> bool {
        self.0
            .get_mut(shard)
            .is_some_and(|roster| roster.remove(&account_id).is_some())
    }

    /// Replaces `shard`'s roster (empty: the shard is gone); the players that joined and that left.
    pub fn replace(
        &mut self,
        shard: &str,
        players: Vec<(i32, String)>,
    ) -> (Vec<(i32, String)>, Vec<(i32, String)>) {
        let new: BTreeMap<i32, String> = players.into_iter().collect();
        let old = if new.is_empty() {
            self.0.remove(shard).unwrap_or_default()
        } else {
            self.0
                .insert(shard.to_owned(), new.clone())
                .unwrap_or_default()
        };
        let joined = new
            .iter()
            .filter(|(id, _)| !old.contains_key(id))
            .map(|(id, name)| (*id, name.clone()))
            .collect();
        let left = old
            .into_iter()
            .filter(|(id, _)| !new.contains_key(id))
            .collect();
        (joined, left)
    }

    /// Whether the account plays on another shard.
    pub fn has_account(&self, account_id: i32) -> bool {
        self.0
            .values()
            .any(|roster| roster.contains_key(&account_id))
    }

    /// Every name online elsewhere.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0
            .values()
            .flat_map(|roster| roster.values().map(String::as_str))
    }

    /// The display name of a player online elsewhere called `name` (any case).
    pub fn find(&self, name: &str) -> Option<&str> {
        self.names().find(|n| n.eq_ignore_ascii_case(name))
    }
}

/// Most names in the online list sent at login: 8,192 names of 20 characters encode to ~170 KB, within
/// the client's 256 KiB message limit. Past it (only with `--bus`, at over 8,000 players online) the list
/// holds this shard's players and as many of the others as fit.
pub const MAX_ONLINE_LIST: usize = 8_192;

/// The online list: `local` names first, then `others` up to [`MAX_ONLINE_LIST`], sorted.
fn online_list<'a>(
    local: impl Iterator<Item = &'a str>,
    others: impl Iterator<Item = &'a str>,
) -> Vec<String> {
    let mut names: Vec<String> = local.map(str::to_owned).collect();
    let room = MAX_ONLINE_LIST.saturating_sub(names.len());
    names.extend(others.take(room).map(str::to_owned));
    names.sort_unstable_by_key(|name| name.to_ascii_lowercase());
    names
}

/// Sends the same encoded bytes to every player (returns to how many), except `except` and those whose
/// connection renet has already dropped (players disconnected in the same tick are despawned after
/// every disconnection of that tick is handled: without the check, each "NAME left" would go to all
/// those gone before it, and renet logs an error for each, half a million errors when a thousand players
/// drop at once).
pub fn broadcast<'a>(
    server: &mut Outbox,
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
    elsewhere: Res<Elsewhere>,
    mut server: Outbox,
) {
    let Ok((entity, connection, player)) = players.get(add.entity) else {
        return;
    };
    online.0.insert(player.account_id, entity);
    if LOGGED_IN.allow(player.account_id) {
        info!(client_id = connection.client_id, account_id = player.account_id, name = %player.name, "logged in");
    }

    let local = players.iter().map(|(_, _, p)| p.name.as_str());
    let others = elsewhere
        .names()
        .filter(|n| !n.eq_ignore_ascii_case(&player.name));
    let names = online_list(local, others);
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
    elsewhere: Res<Elsewhere>,
    mut server: Outbox,
) {
    let Ok((entity, connection, player)) = players.get(remove.entity) else {
        return;
    };
    if online.entity(player.account_id) == Some(entity) {
        online.0.remove(&player.account_id);
    }
    if LOGGED_OUT.allow(player.account_id) {
        info!(client_id = connection.client_id, account_id = player.account_id, name = %player.name, "logged out");
    }
    // Logged in again on another shard (which kicked this session): still online for everyone.
    if elsewhere.has_account(player.account_id) {
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MAX_SERVER_MESSAGE_BYTES;

    #[test]
    fn the_online_list_always_fits_a_client_message() {
        let local: Vec<String> = (0..1024).map(|i| format!("{i:0>20}")).collect();
        let others: Vec<String> = (0..100_000).map(|i| format!("x{i:0>19}")).collect();
        let names = online_list(
            local.iter().map(String::as_str),
            others.iter().map(String::as_str),
        );
        assert_eq!(names.len(), MAX_ONLINE_LIST);
        assert!(
            local.iter().all(|n| names.contains(n)),
            "every local player is listed"
        );
        let bytes = ServerMessage::OnlinePlayers { names }.encode();
        assert!(
            bytes.len() < MAX_SERVER_MESSAGE_BYTES,
            "{} bytes",
            bytes.len()
        );
        let small = online_list(["bob", "Alice"].into_iter(), ["carol"].into_iter());
        assert_eq!(small, ["Alice", "bob", "carol"]);
    }
}
