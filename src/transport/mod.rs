//! The server's transport: netcode (renetcode's [`NetcodeServer`]) on a UDP socket whose receiving side
//! is the [`gate`] thread. It replaces renet_netcode's `NetcodeServerTransport`, which drained the socket
//! inside the tick without any limit, so one flooding address cost every player its packets.
//!
//! Each tick, [`Transport`] hands netcode at most [`MAX_PER_TICK`] datagrams the gate let through,
//! closes the connections of players the gate blocked, tells the gate who connected and left (players
//! get a bigger budget), and after the game systems ran, encrypts and sends what renet queued.
//!
//! A client with nothing queued or unacknowledged on any channel would get a packet holding only an ack
//! every tick (renet acknowledges on every flush, forever): such a client is sent its acks every
//! [`ACK_EVERY`] ticks instead, spread over the ticks by client id. Its own reliable messages are still
//! acknowledged well within renet's resend time (200 ms), and anything for it goes out the same tick.

pub mod gate;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use bevy::prelude::*;
use bevy_renet::renet::ClientId;
use bevy_renet::{RenetReceive, RenetSend, RenetServer, RenetServerPlugin};
use crossbeam_channel::{Receiver, Sender};
use renetcode::{NetcodeServer, ServerConfig, ServerResult};

use crate::api::{TokenUser, UserDataError};
use gate::{Control, Counters, CountersSnapshot, Gate, GateState, Gated, Limits};

/// Datagrams the gate may queue for the tick; when full, it drops (counted as `queue_full`).
const QUEUE: usize = 32_768;
/// Datagrams netcode processes in one tick at most (1,024 players at 60 packets a second each are ~1,000
/// a tick); the rest wait for the next tick, so a burst cannot make one tick arbitrarily long.
pub const MAX_PER_TICK: usize = 8_192;
/// Ticks between two packets to a client that is owed only acks: every 6th tick is 10 a second at 60 Hz,
/// 100 ms, half of renet's resend time, so no client resends for want of an ack.
pub const ACK_EVERY: u64 = 6;

pub(crate) fn plugin(app: &mut App) {
    app.add_systems(
        PreUpdate,
        receive
            .in_set(RenetReceive)
            .after(RenetServerPlugin::update_system)
            .before(RenetServerPlugin::emit_server_events_system),
    )
    .add_systems(PostUpdate, send.in_set(RenetSend))
    .add_systems(Last, disconnect_on_exit);
}

/// netcode, the sending socket and the gate's channels.
#[derive(Resource)]
pub struct Transport {
    socket: UdpSocket,
    netcode: NetcodeServer,
    gated: Receiver<Gated>,
    control: Sender<Control>,
    counters: Arc<Counters>,
    /// Secure netcode (token mode): connections carry their account in the token's user data.
    secure: bool,
    /// Each server channel and its memory limit: a client whose channels are all at their limit has
    /// nothing queued or unacknowledged.
    channels: Vec<(u8, usize)>,
    /// Ticks sent so far (chooses which quiet clients get their acks this tick).
    sends: u64,
    /// Stops and joins the gate thread when the transport is dropped.
    _gate: Gate,
}

impl Transport {
    /// Starts the gate on `socket` and netcode with `config`. `token_key` is netcode's private key in
    /// token mode (`config` must then be secure with the same key): the gate drops connection requests
    /// not sealed with it.
    pub fn new(
        socket: UdpSocket,
        config: ServerConfig,
        limits: Limits,
        token_key: Option<[u8; 32]>,
    ) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let (gated_tx, gated) = crossbeam_channel::bounded(QUEUE);
        let (control, control_rx) = crossbeam_channel::unbounded();
        let counters = Arc::new(Counters::default());
        let mut state = GateState::new(config.protocol_id, limits);
        if let Some(key) = &token_key {
            state = state.require_tokens_sealed_with(key);
        }
        let gate = Gate::spawn(
            socket.try_clone()?,
            state,
            control_rx,
            gated_tx,
            counters.clone(),
        )?;
        Ok(Self {
            socket,
            netcode: NetcodeServer::new(config),
            gated,
            control,
            counters,
            secure: token_key.is_some(),
            channels: crate::protocol::connection_config()
                .server_channels_config
                .iter()
                .map(|channel| (channel.channel_id, channel.max_memory_usage_bytes))
                .collect(),
            sends: 0,
            _gate: gate,
        })
    }

    /// Token mode: the account a connected client's connect token speaks for. `None` in in-band mode
    /// (there the user data is the client's own, or random) or for an unknown client.
    pub fn token_user(&self, client_id: ClientId) -> Option<Result<TokenUser, UserDataError>> {
        if !self.secure {
            return None;
        }
        let data = self.netcode.user_data(client_id)?;
        Some(TokenUser::from_user_data(&data))
    }

    /// The address a connected client sends from.
    pub fn client_addr(&self, client_id: ClientId) -> Option<SocketAddr> {
        self.netcode.client_addr(client_id)
    }

    /// What the gate has received and dropped so far.
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    /// Disconnects every client at once (netcode sends each a disconnect packet).
    pub fn disconnect_all(&mut self, server: &mut RenetServer) {
        for client_id in self.netcode.clients_id() {
            let result = self.netcode.disconnect(client_id);
            handle(result, &self.socket, &self.control, server);
        }
    }

    fn update(&mut self, delta: Duration, server: &mut RenetServer) {
        self.netcode.update(delta);
        for gated in self.gated.try_iter().take(MAX_PER_TICK) {
            match gated {
                Gated::Datagram { addr, mut bytes } => {
                    let result = self.netcode.process_packet(addr, &mut bytes);
                    handle(result, &self.socket, &self.control, server);
                }
                Gated::Blocked(addr) => {
                    let flooder = self
                        .netcode
                        .clients_id_iter()
                        .find(|&id| self.netcode.client_addr(id) == Some(addr));
                    if let Some(client_id) = flooder {
                        warn!(client_id, %addr, "disconnecting a flooding client");
                        let result = self.netcode.disconnect(client_id);
                        handle(result, &self.socket, &self.control, server);
                    }
                }
            }
        }
        for client_id in self.netcode.clients_id() {
            let result = self.netcode.update_client(client_id);
            handle(result, &self.socket, &self.control, server);
        }
        for client_id in server.disconnections_id() {
            let result = self.netcode.disconnect(client_id);
            handle(result, &self.socket, &self.control, server);
        }
    }

    /// Whether `client_id` gets a packet this tick: always when something is queued or unacknowledged
    /// for it, otherwise (acks only) every [`ACK_EVERY`] ticks.
    fn due(&self, server: &RenetServer, client_id: ClientId) -> bool {
        let quiet = self
            .channels
            .iter()
            .all(|&(channel, limit)| server.channel_available_memory(client_id, channel) == limit);
        !quiet || client_id.wrapping_add(self.sends).is_multiple_of(ACK_EVERY)
    }

    fn send_packets(&mut self, server: &mut RenetServer) {
        self.sends = self.sends.wrapping_add(1);
        for client_id in server.clients_id() {
            if !self.due(server, client_id) {
                continue;
            }
            let Ok(packets) = server.get_packets_to_send(client_id) else {
                continue;
            };
            for packet in packets {
                match self.netcode.generate_payload_packet(client_id, &packet) {
                    Ok((addr, payload)) => {
                        if let Err(error) = self.socket.send_to(payload, addr) {
                            // renet resends what mattered; a full send buffer is not worth a warning.
                            debug!(client_id, %addr, %error, "send failed");
                            break;
                        }
                    }
                    Err(error) => {
                        warn!(client_id, %error, "cannot encrypt a packet");
                        break;
                    }
                }
            }
        }
    }
}

/// Carries out what netcode decided: send its packet, hand a payload to renet, add or remove a
/// connection (and tell the gate).
fn handle(
    result: ServerResult<'_, '_>,
    socket: &UdpSocket,
    control: &Sender<Control>,
    server: &mut RenetServer,
) {
    let send = |payload: &[u8], addr: SocketAddr| {
        if let Err(error) = socket.send_to(payload, addr) {
            debug!(%addr, %error, "send failed");
        }
    };
    match result {
        ServerResult::None => {}
        ServerResult::PacketToSend { addr, payload } => send(payload, addr),
        ServerResult::Payload { client_id, payload } => {
            if let Err(error) = server.process_packet_from(payload, client_id) {
                debug!(client_id, %error, "payload for an unknown client");
            }
        }
        ServerResult::ClientConnected {
            client_id,
            addr,
            payload,
            ..
        } => {
            let _ = control.send(Control::Connected(addr));
            server.add_connection(client_id);
            send(payload, addr);
        }
        ServerResult::ClientDisconnected {
            client_id,
            addr,
            payload,
        } => {
            let _ = control.send(Control::Disconnected(addr));
            server.remove_connection(client_id);
            if let Some(payload) = payload {
                send(payload, addr);
            }
        }
    }
}

fn receive(
    mut transport: ResMut<Transport>,
    mut server: ResMut<RenetServer>,
    time: Res<Time<Real>>,
) {
    transport.update(time.delta(), &mut server);
}

fn send(mut transport: ResMut<Transport>, mut server: ResMut<RenetServer>) {
    transport.send_packets(&mut server);
}

fn disconnect_on_exit(
    exit: MessageReader<AppExit>,
    mut transport: ResMut<Transport>,
    mut server: ResMut<RenetServer>,
) {
    if !exit.is_empty() {
        transport.disconnect_all(&mut server);
    }
}
