//! A small renet/netcode client for the mmo protocol without Bevy, pumped by its owner's loop: for
//! tools, tests, load generators and terminal clients. (The Bevy client uses bevy_renet instead.)
//! [`api`] (feature `https-client`) is token mode's HTTPS login, which hands it a connect token;
//! [`ws`] is the same connection over a WebSocket, as a browser makes it.
//!
//! It behaves like a game client: it receives on every [`NetClient::pump`] but sends its packets at a
//! frame rate (and at once after a new message), because renet queues an ack packet on every flush and a
//! client that flushes in a tight loop floods the server; while it owes the server only acks it sends
//! them every [`protocol::QUIET_ACK_EVERY`], as the Bevy client does.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

use renet::RenetClient;
use renet_netcode::{ClientAuthentication, NetcodeClientTransport, NetcodeError};

use crate::protocol::{
    self, CHANNEL, ClientMessage, DecodeError, SNAPSHOT_CHANNEL, ServerMessage, Snapshot,
};

/// World snapshots a client keeps until they are taken ([`NetClient::take_snapshots`]); older ones are
/// dropped first.
pub const MAX_KEPT_SNAPSHOTS: usize = 64;

#[cfg(feature = "https-client")]
pub mod api;
#[cfg(feature = "https-client")]
pub mod link;
#[cfg(feature = "https-client")]
pub mod ws;

/// What can go wrong with a connection.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot open a socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("cannot start netcode: {0}")]
    Netcode(#[from] NetcodeError),
    #[error("the server sent a message that does not decode: {0}")]
    Decode(#[from] DecodeError),
}

/// A connection to an mmo server in netcode's unsecure (in-band login) mode.
pub struct NetClient {
    client: RenetClient,
    transport: NetcodeClientTransport,
    frame: Duration,
    last_update: Instant,
    last_flush: Instant,
    flush_now: bool,
    /// The client's channels (what [`protocol::owes_only_acks`] looks at).
    channels: Vec<renet::ChannelConfig>,
    /// World snapshots received and not yet taken, oldest first.
    snapshots: std::collections::VecDeque<Snapshot>,
}

impl NetClient {
    /// Starts connecting to `server` with a random client id, flushing at `frame_hz` frames a second.
    pub fn connect(server: SocketAddr, frame_hz: u32) -> Result<Self, ClientError> {
        Ok(Self::with_transport(unsecure_transport(server)?, frame_hz))
    }

    /// Starts connecting in secure mode (token mode) with a connect token from the login server.
    #[cfg(feature = "https-client")]
    pub fn connect_with_token(
        token: renet_netcode::ConnectToken,
        frame_hz: u32,
    ) -> Result<Self, ClientError> {
        Ok(Self::with_transport(
            api::secure_transport(token)?,
            frame_hz,
        ))
    }

    /// Starts connecting over `transport`.
    pub fn with_transport(transport: NetcodeClientTransport, frame_hz: u32) -> Self {
        Self {
            client: RenetClient::new(protocol::connection_config()),
            transport,
            frame: Duration::from_secs_f64(1.0 / f64::from(frame_hz.max(1))),
            last_update: Instant::now(),
            last_flush: Instant::now(),
            flush_now: true,
            channels: protocol::connection_config().client_channels_config,
            snapshots: std::collections::VecDeque::new(),
        }
    }

    /// Receives whatever arrived and appends the decoded messages to `inbox` (a batch of chat lines as
    /// one [`ServerMessage::Chat`] each: [`ServerMessage::unbatch`]); sends queued packets if a
    /// message was just queued, or a frame has passed ([`protocol::QUIET_ACK_EVERY`] if only acks are
    /// owed).
    pub fn pump(&mut self, inbox: &mut Vec<ServerMessage>) -> Result<(), ClientError> {
        Ok(decode_into(inbox, |on_message| self.pump_raw(on_message))?)
    }

    /// [`NetClient::pump`], handing each message's bytes to `on_message` undecoded (for peers that
    /// are not an mmo server, such as the load generator's bare relay).
    pub fn pump_raw(&mut self, mut on_message: impl FnMut(&[u8])) {
        let now = Instant::now();
        let delta = now - self.last_update;
        self.last_update = now;
        self.client.update(delta);
        // Transport errors end the connection; `disconnect_reason` reports them.
        let _ = self.transport.update(delta, &mut self.client);
        while let Some(bytes) = self.client.receive_message(CHANNEL) {
            on_message(&bytes);
        }
        while let Some(bytes) = self.client.receive_message(SNAPSHOT_CHANNEL) {
            // Snapshots that do not decode are dropped, as a lost datagram would be.
            if let Ok(snapshot) = Snapshot::decode(&bytes) {
                if self.snapshots.len() == MAX_KEPT_SNAPSHOTS {
                    self.snapshots.pop_front();
                }
                self.snapshots.push_back(snapshot);
            }
        }
        let since = now - self.last_flush;
        let due = since >= self.frame
            && (since >= protocol::QUIET_ACK_EVERY
                || !protocol::owes_only_acks(&self.channels, |channel| {
                    self.client.channel_available_memory(channel)
                }));
        if self.flush_now || due {
            let _ = self.transport.send_packets(&mut self.client);
            self.last_flush = now;
            self.flush_now = false;
        }
    }

    /// The world snapshots received since the last call, oldest first (at most [`MAX_KEPT_SNAPSHOTS`]).
    pub fn take_snapshots(&mut self) -> Vec<Snapshot> {
        self.snapshots.drain(..).collect()
    }

    /// Sends whatever renet has queued now, frame or not. Once anything was exchanged, renet sends an
    /// ack packet on every flush: calling this in a loop is a flood of valid packets (for tools and tests
    /// that measure one).
    pub fn flush(&mut self) {
        let _ = self.transport.send_packets(&mut self.client);
        self.last_flush = Instant::now();
        self.flush_now = false;
    }

    /// Queues a message; it leaves on this or the next pump.
    pub fn send(&mut self, message: &ClientMessage) {
        self.send_raw(message.encode());
    }

    /// Queues arbitrary bytes as one message on the protocol's channel (for tests of hostile input).
    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        self.client.send_message(CHANNEL, bytes);
        self.flush_now = true;
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    pub fn is_connecting(&self) -> bool {
        self.client.is_connecting()
    }

    pub fn is_disconnected(&self) -> bool {
        self.client.is_disconnected()
    }

    /// How long since the server's last packet (netcode's keep-alives come ten times a second, so a
    /// live server is never silent for long): the client may give up on a server gone quiet well
    /// before netcode's timeout (15 s in token mode) ends the connection. From the start of the
    /// connection when nothing was heard yet.
    pub fn silent_for(&self) -> Duration {
        self.transport.time_since_last_received_packet()
    }

    /// Why the connection ended, in words, if it has.
    pub fn disconnect_reason(&self) -> Option<String> {
        if let Some(reason) = self.transport.disconnect_reason() {
            return Some(reason.to_string());
        }
        self.client
            .disconnect_reason()
            .map(|reason| reason.to_string())
    }

    /// Closes the connection now (netcode sends its disconnect packet).
    pub fn disconnect(&mut self) {
        self.transport.disconnect();
    }
}

impl Drop for NetClient {
    fn drop(&mut self) {
        self.transport.disconnect();
    }
}

/// Runs `pump_raw` with a handler that decodes each message into `inbox` (a batch of chat lines as one
/// [`ServerMessage::Chat`] each); the last decoding error, if any (the other messages are kept).
fn decode_into(
    inbox: &mut Vec<ServerMessage>,
    pump_raw: impl FnOnce(&mut dyn FnMut(&[u8])),
) -> Result<(), DecodeError> {
    let mut result = Ok(());
    pump_raw(&mut |bytes| match ServerMessage::decode(bytes) {
        Ok(message) => message.unbatch(|message| inbox.push(message)),
        Err(error) => result = Err(error),
    });
    result
}

/// A netcode client transport for in-band mode (unsecure netcode, random client id) on a fresh socket.
pub fn unsecure_transport(server: SocketAddr) -> Result<NetcodeClientTransport, ClientError> {
    let socket = bind_any(server)?;
    let authentication = ClientAuthentication::Unsecure {
        protocol_id: protocol::PROTOCOL_ID,
        client_id: random_client_id(),
        server_addr: server,
        user_data: None,
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(NetcodeClientTransport::new(now, authentication, socket)?)
}

/// A UDP socket on any local address of `server`'s family.
fn bind_any(server: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    UdpSocket::bind(local)
}

/// A random netcode client id: netcode silently ignores a connection whose id is already connected.
pub fn random_client_id() -> u64 {
    use std::hash::{BuildHasher, Hasher, RandomState};
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    hasher.write_u128(nanos);
    hasher.finish()
}
