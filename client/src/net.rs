//! The connection to the server: connects through bevy_renet's netcode client, sends [`ToServer`]
//! messages (connecting first, and holding them, if needed), decodes what arrives into [`FromServer`]
//! messages, and reports [`LinkEvent`]s: connected, could not connect, connection lost.
//!
//! In [`LinkMode::InBand`] it connects (unsecure netcode) at start and again whenever something is sent
//! while offline. In [`LinkMode::Token`] it connects only when handed a secure transport
//! ([`connect_with`], after the HTTPS login), and never sends a login request over UDP.
//! [`disconnect`] closes the link on purpose, with no "connection lost".
//!
//! Packets leave at most [`SEND_HZ`] times a second, whatever the frame rate (and at once after the
//! player sends something): renet sends an ack packet
//! on every flush, and the server blocks an address that sends far more than its packet budget (600 a
//! second by default), which an uncapped frame rate would. While the client owes the server only acks
//! (nothing queued or unacknowledged), they leave every [`protocol::QUIET_ACK_EVERY`] (100 ms): an idle
//! player costs the server 10 datagrams a second, not one a frame.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bevy::ecs::system::Command;
use bevy::prelude::*;
use bevy_renet::netcode::{NetcodeClientPlugin, NetcodeClientTransport};
use bevy_renet::{RenetClient, RenetClientPlugin, RenetReceive, RenetSend};
use mmo::client::unsecure_transport;
use mmo::protocol::{
    self, CHANNEL, ClientMessage, SERVER_SILENT_LIMIT, SNAPSHOT_CHANNEL, ServerMessage, Snapshot,
};

/// How long a connection attempt may take before the player is told the server cannot be reached.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);
/// Most flushes a second (a new message waits at most 1/120 s for the next one).
pub const SEND_HZ: u32 = 120;

pub(crate) fn plugin(app: &mut App) {
    // NetcodeClientPlugin's systems, with the send rate capped.
    let transport_ready =
        resource_exists::<NetcodeClientTransport>.and_then(resource_exists::<RenetClient>);
    app.add_plugins(RenetClientPlugin)
        .add_systems(
            PreUpdate,
            NetcodeClientPlugin::update_system
                .in_set(RenetReceive)
                .run_if(transport_ready.clone())
                .after(RenetClientPlugin::update_system),
        )
        .add_systems(
            PostUpdate,
            NetcodeClientPlugin::send_packets
                .in_set(RenetSend)
                .run_if(transport_ready.clone().and_then(send_due)),
        )
        .add_systems(
            Last,
            NetcodeClientPlugin::disconnect_on_exit.run_if(transport_ready),
        )
        .init_resource::<Link>()
        .add_message::<ToServer>()
        .add_message::<FromServer>()
        .add_message::<FromSnapshot>()
        .add_message::<LinkEvent>()
        .init_resource::<LinkMode>()
        .add_systems(
            Startup,
            connect_at_start.run_if(resource_equals(LinkMode::InBand)),
        )
        .add_systems(PreUpdate, (watch_link, receive).chain().after(RenetReceive))
        .add_systems(PostUpdate, send.before(RenetSend));
}

/// The server this client talks to.
#[derive(Resource, Debug, Clone, Copy)]
pub struct ServerAddress(pub SocketAddr);

/// How the link is opened.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Connect to [`ServerAddress`] at start, and again when something is sent while offline; the login
    /// goes over the link.
    #[default]
    InBand,
    /// Connect only with a transport handed over by [`connect_with`] (the HTTPS login's connect token);
    /// `Register` and `Login` are never sent over the link (token mode sends them over HTTPS).
    Token,
}

/// A message for the server. Written by the screens; sent by this plugin.
#[derive(Message, Debug, Clone, PartialEq)]
pub struct ToServer(pub ClientMessage);

/// A message from the server, decoded.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct FromServer(pub ServerMessage);

/// A world snapshot from the server (its unreliable channel), decoded.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub struct FromSnapshot(pub Snapshot);

/// Why the connection closed when the server gave no reason (it stopped answering).
pub const CONNECTION_LOST: &str = "Connection to the server was lost";

/// What happened to the connection.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    Connected,
    /// Could not connect; the text is for the player.
    Unreachable(String),
    /// The connection was closed; the text is for the player (the server's reason when it gave one).
    Lost(String),
}

/// Where the connection stands.
#[derive(Resource, Debug, Default)]
pub enum Link {
    #[default]
    Offline,
    Connecting {
        since: Instant,
        /// Messages written while connecting, sent in order once connected.
        pending: Vec<ClientMessage>,
    },
    Online {
        /// The reason the server gave in its last `Kicked`, reported when the connection closes.
        kick_reason: Option<String>,
    },
}

impl Link {
    pub fn is_online(&self) -> bool {
        matches!(self, Link::Online { .. })
    }
}

/// Connects to `server` over `transport` (token mode: a secure transport made from the login's connect
/// token), dropping any link there was. Reported as [`LinkEvent::Connected`] or
/// [`LinkEvent::Unreachable`] like any connection.
pub fn connect_with(server: SocketAddr, transport: NetcodeClientTransport) -> impl Command {
    move |world: &mut World| {
        if let Some(mut old) = world.remove_resource::<NetcodeClientTransport>() {
            old.disconnect();
        }
        world.insert_resource(ServerAddress(server));
        info!(%server, secure = true, "connecting");
        world.insert_resource(RenetClient::new(protocol::connection_config()));
        world.insert_resource(transport);
        *world.resource_mut::<Link>() = Link::Connecting {
            since: Instant::now(),
            pending: Vec::new(),
        };
    }
}

/// Closes the link on purpose (logging out): tells the server at once, and reports nothing.
pub fn disconnect() -> impl Command {
    |world: &mut World| {
        if let Some(mut transport) = world.remove_resource::<NetcodeClientTransport>() {
            transport.disconnect();
            info!("disconnected");
        }
        world.remove_resource::<RenetClient>();
        *world.resource_mut::<Link>() = Link::Offline;
    }
}

fn connect_at_start(mut commands: Commands, address: Res<ServerAddress>, mut link: ResMut<Link>) {
    start_connecting(&mut commands, address.0, &mut link, Vec::new());
}

fn start_connecting(
    commands: &mut Commands,
    server: SocketAddr,
    link: &mut Link,
    pending: Vec<ClientMessage>,
) {
    let transport = unsecure_transport(server).map(NetcodeClientTransport);
    match transport {
        Ok(transport) => {
            info!(%server, secure = false, "connecting");
            commands.insert_resource(RenetClient::new(protocol::connection_config()));
            commands.insert_resource(transport);
            *link = Link::Connecting {
                since: Instant::now(),
                pending,
            };
        }
        Err(error) => {
            // Reported by `watch_link` as unreachable on the next frame.
            warn!(%error, "cannot open a socket");
            let expired = Instant::now()
                .checked_sub(CONNECT_TIMEOUT)
                .unwrap_or_else(Instant::now);
            *link = Link::Connecting {
                since: expired,
                pending,
            };
        }
    }
}

fn tear_down(commands: &mut Commands, link: &mut Link) {
    commands.remove_resource::<RenetClient>();
    commands.remove_resource::<NetcodeClientTransport>();
    *link = Link::Offline;
}

fn watch_link(
    mut commands: Commands,
    mut link: ResMut<Link>,
    address: Res<ServerAddress>,
    mut client: Option<ResMut<RenetClient>>,
    transport: Option<Res<NetcodeClientTransport>>,
    mut events: MessageWriter<LinkEvent>,
) {
    let connected = client.as_ref().is_some_and(|c| c.is_connected());
    let disconnected = client.as_ref().is_none_or(|c| c.is_disconnected());
    match &mut *link {
        Link::Offline => {}
        Link::Connecting { since, pending } => {
            if connected && let Some(client) = client.as_mut() {
                let pending = std::mem::take(pending);
                go_online(&mut link, client, pending, address.0, &mut events);
            } else if disconnected || since.elapsed() >= CONNECT_TIMEOUT {
                let reason = transport
                    .and_then(|t| t.disconnect_reason())
                    .map(|r| format!(" ({r})"));
                warn!(server = %address.0, reason = ?reason, "cannot reach the server");
                tear_down(&mut commands, &mut link);
                let text = format!(
                    "Cannot reach the server at {}{}",
                    address.0,
                    reason.unwrap_or_default()
                );
                events.write(LinkEvent::Unreachable(text));
            }
        }
        Link::Online { kick_reason } => {
            // A server that has sent nothing, not even netcode's keep-alives, for a few seconds died
            // or froze: give up on it now rather than at netcode's timeout (15 s).
            let silent = transport
                .as_ref()
                .is_some_and(|t| t.time_since_last_received_packet() > SERVER_SILENT_LIMIT);
            if disconnected || silent {
                let text = match kick_reason.take() {
                    Some(reason) => reason,
                    None => CONNECTION_LOST.to_owned(),
                };
                warn!(reason = %text, "disconnected");
                tear_down(&mut commands, &mut link);
                events.write(LinkEvent::Lost(text));
            }
        }
    }
}

/// Sends what waited for the connection and reports it.
fn go_online(
    link: &mut Link,
    client: &mut RenetClient,
    pending: Vec<ClientMessage>,
    server: SocketAddr,
    events: &mut MessageWriter<LinkEvent>,
) {
    info!(%server, "connected");
    for message in pending {
        client.send_message(CHANNEL, message.encode());
    }
    *link = Link::Online { kick_reason: None };
    events.write(LinkEvent::Connected);
}

fn receive(
    mut commands: Commands,
    mut link: ResMut<Link>,
    address: Res<ServerAddress>,
    client: Option<ResMut<RenetClient>>,
    mut inbox: MessageWriter<FromServer>,
    mut snapshots: MessageWriter<FromSnapshot>,
    mut events: MessageWriter<LinkEvent>,
) {
    let Some(mut client) = client else { return };
    while let Some(bytes) = client.receive_message(SNAPSHOT_CHANNEL) {
        // A snapshot that does not decode is dropped, as a lost datagram would be.
        if let Ok(snapshot) = Snapshot::decode(&bytes) {
            snapshots.write(FromSnapshot(snapshot));
        }
    }
    while let Some(bytes) = client.receive_message(CHANNEL) {
        // The server's first message can arrive a frame before renet reports the connection (token mode:
        // `LoggedIn` comes at once). It proves the connection: report that first, so the screens always
        // see `Connected` before what the server says.
        if let Link::Connecting { pending, .. } = &mut *link {
            let pending = std::mem::take(pending);
            go_online(&mut link, &mut client, pending, address.0, &mut events);
        }
        match ServerMessage::decode(&bytes) {
            Ok(message) => {
                if let (ServerMessage::Kicked { reason }, Link::Online { kick_reason }) =
                    (&message, &mut *link)
                {
                    *kick_reason = Some(reason.clone());
                }
                message.unbatch(|message| {
                    inbox.write(FromServer(message));
                });
            }
            Err(error) => {
                error!(%error, "the server sent a message that does not decode");
                client.disconnect();
                tear_down(&mut commands, &mut link);
                events.write(LinkEvent::Lost(
                    "The server sent something this client does not understand".into(),
                ));
                return;
            }
        }
    }
}

fn send(
    mut commands: Commands,
    mut outbox: MessageReader<ToServer>,
    mut link: ResMut<Link>,
    mode: Res<LinkMode>,
    address: Res<ServerAddress>,
    client: Option<ResMut<RenetClient>>,
) {
    let mut client = client;
    for ToServer(message) in outbox.read() {
        if *mode == LinkMode::Token {
            if matches!(
                message,
                ClientMessage::Register { .. } | ClientMessage::Login { .. }
            ) {
                continue; // The HTTPS login's (see `token`).
            }
            if matches!(*link, Link::Offline) {
                debug!("offline: a message for the server is dropped");
                continue;
            }
        }
        match &mut *link {
            Link::Online { .. } => {
                if let Some(client) = client.as_mut() {
                    client.send_message(CHANNEL, message.encode());
                }
            }
            Link::Connecting { pending, .. } => pending.push(message.clone()),
            Link::Offline => {
                start_connecting(&mut commands, address.0, &mut link, vec![message.clone()])
            }
        }
    }
}

/// The client's channels, as [`protocol::owes_only_acks`] reads them.
struct Channels(Vec<bevy_renet::renet::ChannelConfig>);

impl Default for Channels {
    fn default() -> Self {
        Self(protocol::connection_config().client_channels_config)
    }
}

/// Whether a flush is due: at most [`SEND_HZ`] a second (every [`protocol::QUIET_ACK_EVERY`] while
/// only acks are owed), and at once when the player just sent something (a message must not wait for a
/// next frame that may be long in coming).
fn send_due(
    mut last: Local<Option<Instant>>,
    mut written: MessageReader<ToServer>,
    client: Option<Res<RenetClient>>,
    channels: Local<Channels>,
) -> bool {
    let now = Instant::now();
    let fresh = !written.is_empty();
    written.clear();
    let only_acks = client.is_some_and(|client| {
        protocol::owes_only_acks(&channels.0, |channel| {
            client.channel_available_memory(channel)
        })
    });
    let every = if only_acks {
        protocol::QUIET_ACK_EVERY
    } else {
        Duration::from_secs(1) / SEND_HZ
    };
    let due = fresh || last.is_none_or(|at| now - at >= every);
    if due {
        *last = Some(now);
    }
    due
}
