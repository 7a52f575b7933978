//! Networking: the UDP socket and netcode transport (through bevy_renet), one entity per connection,
//! inbound decoding with limits, and the helpers every other plugin uses to send and to kick.
//!
//! A connection's life: renet reports it connected → an entity `(Connection, AwaitingLogin)` is spawned
//! and indexed by client id; each tick its messages are decoded and handed on as [`Inbound`] messages
//! (bad bytes disconnect it); a kick sends [`ServerMessage::Kicked`] and marks it [`Closing`] until the
//! reason is acknowledged; renet reports it gone → the entity is despawned.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;
use bevy_renet::renet::{Bytes, ClientId, ServerEvent};
use bevy_renet::{RenetServer, RenetServerEvent, RenetServerPlugin};
use renetcode::{ServerAuthentication, ServerConfig};

use crate::access::IpBans;
use crate::api::{TokenUser, UserDataError};
use crate::config::{AuthMode, Config, NETCODE_MAX_CLIENTS};
use crate::logs::Budget;
use crate::protocol::{self, CHANNEL, ClientMessage, Request, ServerMessage};
use crate::schedule::ServerSystems;
pub use crate::transport::outbox::Outbox;
use crate::transport::{self, Transport, gate::Limits, ws};

/// What a client past `--max-clients` is told.
pub const SERVER_FULL: &str = "Server is full, try again later";

/// `--max-clients`: connections the process takes at once (netcode's own limit is per lane).
#[derive(Resource, Debug, Clone, Copy)]
pub struct Capacity(pub usize);

/// How long a kicked connection is kept open for its reason to be acknowledged.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Log lines any peer can cause (`crate::logs`).
static CONNECTED: Budget = Budget::new("connected", 10, 120);
static DISCONNECTED: Budget = Budget::new("disconnected", 10, 120);
static KICKING: Budget = Budget::new("kicking", 10, 120);
static UNDECODABLE: Budget = Budget::new("undecodable message; disconnecting", 5, 60);

pub(crate) fn plugin(app: &mut App) {
    let capacity = Capacity(usize::from(app.world().resource::<Config>().max_clients));
    app.add_plugins((RenetServerPlugin, transport::plugin))
        .insert_resource(capacity)
        .init_resource::<Connections>()
        .add_message::<Inbound>()
        .add_observer(on_server_event)
        .add_systems(PreUpdate, ws_events.after(bevy_renet::RenetReceive))
        .add_systems(Update, receive_messages.in_set(ServerSystems::Receive))
        .add_systems(Update, close_kicked_connections.in_set(ServerSystems::Send));
}

/// The netcode thread drains the socket as datagrams arrive, but it shares 2 cores with the tick and the
/// auth workers: the kernel's default receive buffer (208 KB) overflowed in a login storm of 200 clients
/// before the gate existed, and every dropped packet cost its sender a 200 ms resend. Ask for more.
const RECEIVE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// Datagrams a second from one address that has not connected (netcode's handshake sends 4).
pub const STRANGER_PACKET_RATE: u32 = 20;
/// Datagrams a second from all addresses that have not connected, together (a login storm of 200
/// clients handshaking at once sends 800).
pub const STRANGERS_PACKET_RATE: u32 = 2_000;

/// What netcode needs to know of token mode: the key connect tokens are sealed with, and the address
/// they send clients to.
#[derive(Clone)]
pub struct SecureNetcode {
    pub private_key: [u8; 32],
    /// The address in every connect token (`--public-addr`, else the bound address).
    pub public_addr: SocketAddr,
}

/// Binds the socket and creates the renet server and its transport: unsecure netcode in in-band mode,
/// secure netcode (connect tokens sealed with `secure.private_key`) in token mode.
pub(crate) fn bind(
    config: &Config,
    secure: impl FnOnce(SocketAddr) -> Option<SecureNetcode>,
    bans: IpBans,
) -> std::io::Result<(RenetServer, Transport, SocketAddr)> {
    let sockets = transport::sockets::bind(config.bind, config.lanes())?;
    let addr = sockets[0].local_addr()?;
    let secure = match config.auth {
        AuthMode::InBand => None,
        AuthMode::Token => secure(addr),
    };
    for socket in &sockets {
        let buffer = crate::udp::enlarge_receive_buffer(socket, RECEIVE_BUFFER_BYTES);
        if buffer < RECEIVE_BUFFER_BYTES {
            warn!(
                bytes = buffer,
                wanted = RECEIVE_BUFFER_BYTES,
                "small UDP receive buffer: bursts may be dropped between ticks (raise net.core.rmem_max)"
            );
            break;
        }
    }
    let current_time = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let (public_addresses, authentication) = match &secure {
        Some(secure) => (
            vec![secure.public_addr],
            ServerAuthentication::Secure {
                private_key: secure.private_key,
            },
        ),
        None => (vec![addr], ServerAuthentication::Unsecure),
    };
    // Each lane holds up to netcode's limit; the tick holds them all to --max-clients.
    let server_config = ServerConfig {
        current_time,
        max_clients: usize::from(config.max_clients.min(NETCODE_MAX_CLIENTS)),
        protocol_id: protocol::PROTOCOL_ID,
        public_addresses,
        authentication,
    };
    let limits = Limits {
        per_player: config.packet_rate,
        per_stranger: STRANGER_PACKET_RATE,
        strangers: STRANGERS_PACKET_RATE,
        block_for: Duration::from_secs(u64::from(config.packet_block_secs)),
    };
    let key = secure.as_ref().map(|secure| secure.private_key);
    let queue = usize::try_from(config.transport_queue).unwrap_or(usize::MAX);
    let transport = Transport::new(sockets, server_config, limits, queue, key, bans)?;
    Ok((
        RenetServer::new(protocol::connection_config()),
        transport,
        addr,
    ))
}

/// Where a player should connect: every shard of the world (with `--bus`) with its public UDP address
/// and how many play there, and the shard each account last played on, kept by the bus plugin and read
/// by token mode's HTTPS login, which hands out connect tokens for the account's last shard (back within
/// [`RETURN_WITHIN`], while it has room) or else the least loaded. Without `--bus`, empty: tokens are
/// for this server.
#[derive(Resource, Clone, Default, Debug)]
pub struct Routes {
    table: std::sync::Arc<std::sync::RwLock<Vec<Route>>>,
    last_played: std::sync::Arc<std::sync::Mutex<HashMap<i32, (SocketAddr, Instant)>>>,
}

/// How long a player who left a shard is sent back to it.
pub const RETURN_WITHIN: Duration = Duration::from_secs(3600);
/// Accounts [`Routes`] remembers the last shard of (the oldest eighth is forgotten beyond it).
const LAST_PLAYED_CAP: usize = 100_000;

/// The UDP address clients reach this server at (`--public-addr`, else the bound address).
#[derive(Resource, Clone, Copy, Debug)]
pub struct PublicAddr(pub SocketAddr);

/// One shard, as [`Routes`] knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub addr: SocketAddr,
    pub players: usize,
    /// Its `--max-clients`.
    pub capacity: usize,
    /// This server.
    pub here: bool,
}

impl Routes {
    /// Replaces the table.
    pub fn set(&self, routes: Vec<Route>) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = routes;
    }

    /// `account_id` has just left the shard at `addr` (here or elsewhere).
    pub fn played(&self, account_id: i32, addr: SocketAddr, now: Instant) {
        let mut last = self.last_played.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() >= LAST_PLAYED_CAP && !last.contains_key(&account_id) {
            last.retain(|_, (_, at)| now.saturating_duration_since(*at) < RETURN_WITHIN);
            if last.len() >= LAST_PLAYED_CAP {
                let mut times: Vec<Instant> = last.values().map(|&(_, at)| at).collect();
                let (_, cutoff, _) = times.select_nth_unstable(LAST_PLAYED_CAP / 8);
                let cutoff = *cutoff;
                last.retain(|_, (_, at)| *at > cutoff);
            }
        }
        last.insert(account_id, (addr, now));
    }

    /// Where `account_id` should connect: the shard it left within [`RETURN_WITHIN`] if that shard is
    /// still in the table and has room, else the least loaded shard (this server's on a tie); `None`
    /// when there is no table. The player's client says which shard it could not reach
    /// (`unreachable`): that one is left out while another is listed.
    pub fn pick(
        &self,
        account_id: i32,
        now: Instant,
        unreachable: Option<SocketAddr>,
    ) -> Option<SocketAddr> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let others: Vec<&Route> = table
            .iter()
            .filter(|route| Some(route.addr) != unreachable)
            .collect();
        let routes: Vec<&Route> = if others.is_empty() {
            table.iter().collect()
        } else {
            others
        };
        let returning = self
            .last_played
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&account_id)
            .filter(|(_, at)| now.saturating_duration_since(*at) < RETURN_WITHIN)
            .map(|&(addr, _)| addr);
        let room = |route: &&&Route| route.players < route.capacity;
        returning
            .and_then(|addr| routes.iter().filter(room).find(|route| route.addr == addr))
            .or_else(|| {
                routes
                    .iter()
                    .min_by_key(|route| (route.players, !route.here))
            })
            .map(|route| route.addr)
    }
}

/// One network connection, logged in or not. Despawned when the connection closes.
#[derive(Component, Debug, Clone, Copy)]
pub struct Connection {
    pub client_id: ClientId,
    pub connected_at: Instant,
    /// Where it connected from (renet may not know it once netcode dropped the client).
    pub addr: Option<SocketAddr>,
    pub via: Via,
}

/// The transport a connection came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// netcode over UDP (the bundled client, the load generator).
    Udp,
    /// A WebSocket on the HTTPS port (the web client; [`crate::transport::ws`]).
    WebSocket,
}

impl Via {
    /// As `list` and the metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            Via::Udp => "udp",
            Via::WebSocket => "ws",
        }
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// A connection that has not logged in yet (the LOGIN state): it may register and log in, nothing else.
#[derive(Component, Debug, Default)]
pub struct AwaitingLogin;

/// Token mode: the account a connection's connect token speaks for (sealed by the server, so trusted).
/// The auth plugin turns it into a player on the connection's first tick.
#[derive(Component, Debug, Clone)]
pub struct TokenLogin(pub TokenUser);

/// A connection that is being closed: it was sent a reason and is disconnected once that is acknowledged
/// (or after `CLOSE_GRACE`). Nothing it sends is read any more.
#[derive(Component, Debug)]
pub struct Closing {
    deadline: Instant,
}

/// Which entity holds each connected client, and the address it connected from.
#[derive(Resource, Default, Debug)]
pub struct Connections(HashMap<ClientId, (Entity, Option<IpAddr>)>);

impl Connections {
    pub fn entity(&self, client_id: ClientId) -> Option<Entity> {
        self.0.get(&client_id).map(|&(entity, _)| entity)
    }

    /// The address `client_id` connected from.
    pub fn ip(&self, client_id: ClientId) -> Option<IpAddr> {
        self.0.get(&client_id).and_then(|&(_, ip)| ip)
    }
}

/// A decoded message from a connection that is not closing. Systems of every plugin read these.
#[derive(Message, Debug, Clone)]
pub struct Inbound {
    pub entity: Entity,
    pub client_id: ClientId,
    pub message: ClientMessage,
}

/// Encodes a message once, to be sent to one or many clients (the bytes are shared, not copied).
pub fn encode(message: &ServerMessage) -> Bytes {
    Bytes::from(message.encode())
}

/// Sends one message to one client.
pub fn send(server: &mut Outbox, client_id: ClientId, message: &ServerMessage) {
    server.send_message(client_id, CHANNEL, encode(message));
}

/// Refuses a client's request, with the reason the player is shown.
pub fn deny(server: &mut Outbox, client_id: ClientId, request: Request, reason: &str) {
    send(
        server,
        client_id,
        &ServerMessage::Denied {
            request,
            reason: reason.to_owned(),
        },
    );
}

/// Tells a client why and closes its connection once that is delivered. Removing its state components
/// (`AwaitingLogin`, `Player`, …) lets the plugins that own them react (for example "NAME left").
pub fn kick(
    commands: &mut Commands,
    server: &mut Outbox,
    entity: Entity,
    client_id: ClientId,
    reason: &str,
) {
    if KICKING.allow(client_id) {
        info!(client_id, reason, "kicking");
    }
    send(
        server,
        client_id,
        &ServerMessage::Kicked {
            reason: reason.to_owned(),
        },
    );
    if let Ok(mut entity) = commands.get_entity(entity) {
        entity.retain::<(Connection, Closing)>().insert(Closing {
            deadline: Instant::now() + CLOSE_GRACE,
        });
    }
}

fn on_server_event(
    event: On<RenetServerEvent>,
    transport: Res<Transport>,
    mut lifecycle: Lifecycle,
) {
    match **event {
        ServerEvent::ClientConnected { client_id } => {
            let addr = transport.client_addr(client_id);
            let user = transport.token_user(client_id);
            lifecycle.connected(client_id, addr, Via::Udp, user);
        }
        ServerEvent::ClientDisconnected { client_id, reason } => {
            lifecycle.disconnected(client_id, &reason);
        }
    }
}

/// The WebSocket transport's connections and disconnections ([`crate::transport::ws`]), as renet's
/// events are for UDP. Their messages are stashed for [`receive_messages`].
fn ws_events(mut lifecycle: Lifecycle) {
    for change in lifecycle.server.ws().take_events() {
        match change {
            ws::Change::Connected {
                client_id,
                addr,
                user,
            } => lifecycle.connected(client_id, Some(addr), Via::WebSocket, Some(Ok(user))),
            ws::Change::Disconnected { client_id, reason } => {
                lifecycle.disconnected(client_id, &reason)
            }
        }
    }
}

/// What a connection's coming and going touches, whichever transport reports it.
#[derive(SystemParam)]
struct Lifecycle<'w, 's> {
    commands: Commands<'w, 's>,
    connections: ResMut<'w, Connections>,
    server: Outbox<'w>,
    capacity: Res<'w, Capacity>,
}

impl Lifecycle<'_, '_> {
    /// Spawns a new connection's entity (with the account its connect token speaks for, in token
    /// mode), or kicks it if the server is full.
    fn connected(
        &mut self,
        client_id: ClientId,
        addr: Option<SocketAddr>,
        via: Via,
        user: Option<Result<TokenUser, UserDataError>>,
    ) {
        let full = self.connections.0.len() >= self.capacity.0;
        let mut entity = self.commands.spawn((
            Connection {
                client_id,
                connected_at: Instant::now(),
                addr,
                via,
            },
            AwaitingLogin,
        ));
        match user {
            None => {}
            Some(Ok(user)) => {
                if CONNECTED.allow(addr.map(|a| a.ip())) {
                    info!(client_id, ?addr, %via, account_id = user.account_id, name = %user.name, "connected with a token");
                }
                entity.insert(TokenLogin(user));
            }
            Some(Err(error)) => {
                // Only the server seals tokens, so this is a bug or a leaked key: refuse it.
                error!(client_id, ?addr, %error, "connect token with unreadable user data");
                self.server.disconnect(client_id);
            }
        }
        let entity = entity.id();
        self.connections
            .0
            .insert(client_id, (entity, addr.map(|a| a.ip())));
        if full {
            // Each lane holds netcode's 1,024; the process holds --max-clients.
            kick(
                &mut self.commands,
                &mut self.server,
                entity,
                client_id,
                SERVER_FULL,
            );
        }
        if CONNECTED.allow(addr.map(|a| a.ip())) {
            info!(client_id, ?addr, %via, ?entity, "connected");
        }
    }

    /// Despawns a closed connection's entity.
    fn disconnected(&mut self, client_id: ClientId, reason: &dyn std::fmt::Display) {
        let ip = self
            .connections
            .0
            .remove(&client_id)
            .and_then(|(entity, ip)| {
                self.commands.entity(entity).despawn();
                ip
            });
        if DISCONNECTED.allow(ip) {
            info!(client_id, %reason, "disconnected");
        }
    }
}

/// Drains every client's channel, decoding with the protocol's limits. A message that does not decode
/// disconnects its sender: a well-behaved client never sends one, so the rest of its stream is suspect.
fn receive_messages(
    mut server: Outbox,
    mut transport: ResMut<Transport>,
    connections: Res<Connections>,
    closing: Query<(), With<Closing>>,
    mut inbound: MessageWriter<Inbound>,
) {
    // Only a client whose packets renet was handed can have messages to read.
    for client_id in transport.take_arrived() {
        let Some(&(entity, ip)) = connections.0.get(&client_id) else {
            // Connected in renet, not yet an entity (its event comes next tick): read it then.
            transport.still_arrived(client_id);
            continue;
        };
        while let Some(bytes) = server.receive_message(client_id, CHANNEL) {
            if closing.contains(entity) {
                continue;
            }
            match ClientMessage::decode(&bytes) {
                Ok(message) => {
                    inbound.write(Inbound {
                        entity,
                        client_id,
                        message,
                    });
                }
                Err(error) => {
                    if UNDECODABLE.allow(ip) {
                        warn!(client_id, %error, len = bytes.len(), "undecodable message; disconnecting");
                    }
                    server.disconnect(client_id);
                    break;
                }
            }
        }
    }
    // WebSocket messages come decoded (their sockets' tasks decoded them with the same limits).
    for client_id in server.ws().take_arrived() {
        let Some(entity) = connections.entity(client_id) else {
            continue;
        };
        while let Some(message) = server.ws().receive(client_id) {
            if !closing.contains(entity) {
                inbound.write(Inbound {
                    entity,
                    client_id,
                    message,
                });
            }
        }
    }
}

/// Disconnects kicked connections once everything sent to them has been acknowledged, or at the deadline.
fn close_kicked_connections(mut server: Outbox, closing: Query<(&Connection, &Closing)>) {
    let now = Instant::now();
    for (connection, closing) in &closing {
        let delivered = server.delivered(connection.client_id, CHANNEL);
        if delivered || now >= closing.deadline {
            server.disconnect(connection.client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn players_return_to_their_last_shard_while_it_has_room() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let table = |on_a, on_b| {
            vec![
                Route {
                    addr: a,
                    players: on_a,
                    capacity: 10,
                    here: true,
                },
                Route {
                    addr: b,
                    players: on_b,
                    capacity: 10,
                    here: false,
                },
            ]
        };
        let routes = Routes::default();
        let now = Instant::now();
        assert_eq!(routes.pick(1, now, None), None, "no table: this server");
        routes.set(table(5, 2));
        assert_eq!(routes.pick(1, now, None), Some(b), "the least loaded");
        routes.played(1, a, now);
        assert_eq!(routes.pick(1, now, None), Some(a), "back where it played");
        assert_eq!(
            routes.pick(2, now, None),
            Some(b),
            "anyone else: the least loaded"
        );
        assert_eq!(
            routes.pick(1, now + RETURN_WITHIN, None),
            Some(b),
            "too long ago"
        );
        routes.set(table(10, 2));
        assert_eq!(routes.pick(1, now, None), Some(b), "its shard is full");
        routes.set(table(2, 2));
        assert_eq!(routes.pick(2, now, None), Some(a), "a tie: this server");
        routes.set(table(5, 2)[1..].to_vec());
        assert_eq!(routes.pick(1, now, None), Some(b), "its shard is gone");
        routes.set(table(5, 2));
        assert_eq!(
            routes.pick(1, now, Some(a)),
            Some(b),
            "its shard froze: elsewhere, though it is listed and the player's last"
        );
        routes.set(table(5, 2)[..1].to_vec());
        assert_eq!(
            routes.pick(1, now, Some(a)),
            Some(a),
            "no other shard: that one (it may be back)"
        );
    }

    #[test]
    fn the_last_shards_remembered_are_bounded() {
        let routes = Routes::default();
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let start = Instant::now();
        for account in 0..(LAST_PLAYED_CAP as i32 + 1_000) {
            routes.played(account, addr, start + Duration::from_millis(account as u64));
        }
        let last = routes.last_played.lock().unwrap();
        assert!(last.len() <= LAST_PLAYED_CAP);
        assert!(
            last.contains_key(&(LAST_PLAYED_CAP as i32 + 999)),
            "the newest is kept"
        );
        assert!(!last.contains_key(&0), "the oldest is forgotten");
    }
}
