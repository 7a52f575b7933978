//! The server's transport: netcode (renetcode's [`NetcodeServer`]) on a UDP socket, on a thread of its
//! own, so that the tick does no per-datagram work but renet's. It replaces renet_netcode's
//! `NetcodeServerTransport`, which drained the socket and ran netcode inside the tick.
//!
//! - The [`netcode`] thread drains the socket, drops through the [`gate`] what no peer should send, or
//!   more than a sender's budget, before anything is decrypted, decrypts the rest and hands the tick
//!   whole renet packets and connection events; it encrypts and sends the renet packets the tick
//!   handed it; it runs netcode's keep-alives and timeouts.
//! - At the start of each tick, [`Transport`] syncs with it (the socket read to empty: what arrived
//!   before the tick is the tick's, not the next one's), feeds renet at most [`MAX_PER_TICK`] packets
//!   and events, and asks it to close the connections renet closed; after the game systems ran, it hands
//!   it what renet has to send, one batch a tick. Between ticks, the tick's thread feeds renet what
//!   arrives ([`Transport::pump_until`]), so a tick starts with most of its input taken in.
//!
//! A client with nothing queued or unacknowledged on any channel would get a packet holding only an ack
//! every tick (renet acknowledges on every flush, forever): such a client is sent its acks every
//! [`ACK_EVERY`] ticks instead, spread over the ticks by client id. Its own reliable messages are still
//! acknowledged well within renet's resend time (200 ms), and anything for it goes out the same tick.

pub mod gate;
pub mod netcode;
pub mod sockets;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_renet::renet::ClientId;
use bevy_renet::{RenetReceive, RenetSend, RenetServer, RenetServerPlugin};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use renetcode::{NETCODE_USER_DATA_BYTES, NetcodeServer, ServerAuthentication, ServerConfig};

use crate::access::IpBans;
use crate::api::{TokenUser, UserDataError};
use gate::{Counters, CountersSnapshot, GateState, Limits};
use netcode::{FromTick, NetcodeCounters, NetcodeThread, ToTick};

/// Requests the tick may queue for the netcode thread: a batch of packets and a sync a tick, and
/// disconnects (at most one per client).
const FROM_TICK_QUEUE: usize = 4_096;
/// Packets and events the tick takes from the netcode thread in one tick at most (1,024 players at 60
/// packets a second each are ~1,000 a tick); the rest wait for the next tick, so a burst cannot make
/// one tick arbitrarily long.
pub const MAX_PER_TICK: usize = 8_192;
/// Ticks between two packets to a client that is owed only acks: every 6th tick is 10 a second at 60 Hz,
/// 100 ms, half of renet's resend time, so no client resends for want of an ack.
pub const ACK_EVERY: u64 = 6;
/// How often the tick's thread takes in decrypted packets while it waits for the next tick.
const PUMP_EVERY: Duration = Duration::from_millis(2);
/// How long a tick waits at most for the netcode thread to hand it what reached the socket before the
/// tick started (normally a fraction of a millisecond).
const SYNC_LIMIT: Duration = Duration::from_millis(2);

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

/// A connected client as the tick knows it.
#[derive(Debug)]
struct Client {
    addr: SocketAddr,
    user_data: Box<[u8; NETCODE_USER_DATA_BYTES]>,
    /// The lane whose socket its datagrams reach.
    lane: usize,
}

/// One lane of the transport: a socket of the shared port and the netcode thread that owns it.
struct Lane {
    to_netcode: Option<Sender<FromTick>>,
    thread: NetcodeThread,
}

/// The tick's end of the transport: the queues to and from the lanes' netcode threads, and what they
/// said of each client. Dropping it sends what is queued, then stops and joins every thread.
#[derive(Resource)]
pub struct Transport {
    lanes: Vec<Lane>,
    /// Every lane's events, tagged with the lane.
    from_netcode: Option<Receiver<(usize, ToTick)>>,
    clients: HashMap<ClientId, Client>,
    /// Clients renet closed, whose netcode end is being closed.
    closing: HashSet<ClientId>,
    /// A second connection with a connected client's id, on another lane: refused, its events ignored.
    refused: HashSet<(usize, ClientId)>,
    counters: Arc<Counters>,
    netcode_counters: Arc<NetcodeCounters>,
    /// Secure netcode (token mode): connections carry their account in the token's user data.
    secure: bool,
    /// The server's channels ([`crate::protocol::owes_only_acks`] looks at them).
    channels: Vec<bevy_renet::renet::ChannelConfig>,
    /// Ticks sent so far (chooses which quiet clients get their acks this tick).
    sends: u64,
    /// The last sync asked for (see [`Transport::update`]).
    synced: u64,
}

/// `config` again, for another lane (renetcode's config is not `Clone`).
fn lane_config(config: &ServerConfig) -> ServerConfig {
    ServerConfig {
        current_time: config.current_time,
        max_clients: config.max_clients,
        protocol_id: config.protocol_id,
        public_addresses: config.public_addresses.clone(),
        authentication: match config.authentication {
            ServerAuthentication::Secure { private_key } => {
                ServerAuthentication::Secure { private_key }
            }
            ServerAuthentication::Unsecure => ServerAuthentication::Unsecure,
        },
    }
}

impl Transport {
    /// Starts netcode with `config` on each of `sockets` (one port's, see [`sockets`]), a thread each.
    /// The lanes may queue `queue` packets and events for the tick together; beyond it, payloads are
    /// dropped. `token_key` is netcode's private key in token mode (`config` must then be secure with
    /// the same key): the gates drop connection requests not sealed with it; `bans` are refused at
    /// every gate.
    pub fn new(
        sockets: Vec<UdpSocket>,
        config: ServerConfig,
        limits: Limits,
        queue: usize,
        token_key: Option<[u8; 32]>,
        bans: IpBans,
    ) -> io::Result<Self> {
        let (to_tick, from_netcode) = crossbeam_channel::unbounded();
        let counters = Arc::new(Counters::default());
        let netcode_counters = Arc::new(NetcodeCounters::default());
        let mut lanes = Vec::with_capacity(sockets.len());
        for (lane, socket) in sockets.into_iter().enumerate() {
            socket.set_nonblocking(true)?;
            let (to_netcode, from_tick) = crossbeam_channel::bounded(FROM_TICK_QUEUE);
            let mut gate = GateState::new(config.protocol_id, limits).refusing(bans.clone());
            if let Some(key) = &token_key {
                gate = gate.require_tokens_sealed_with(key);
            }
            let thread = NetcodeThread::spawn(
                lane,
                NetcodeServer::new(lane_config(&config)),
                gate,
                socket,
                from_tick,
                to_tick.clone(),
                queue,
                netcode_counters.clone(),
                counters.clone(),
            )?;
            lanes.push(Lane {
                to_netcode: Some(to_netcode),
                thread,
            });
        }
        Ok(Self {
            lanes,
            from_netcode: Some(from_netcode),
            clients: HashMap::new(),
            closing: HashSet::new(),
            refused: HashSet::new(),
            counters,
            netcode_counters,
            secure: token_key.is_some(),
            channels: crate::protocol::connection_config().server_channels_config,
            sends: 0,
            synced: 0,
        })
    }

    /// How many lanes (sockets and netcode threads) it runs.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Token mode: the account a connected client's connect token speaks for. `None` in in-band mode
    /// (there the user data is the client's own, or random) or for an unknown client.
    pub fn token_user(&self, client_id: ClientId) -> Option<Result<TokenUser, UserDataError>> {
        if !self.secure {
            return None;
        }
        let client = self.clients.get(&client_id)?;
        Some(TokenUser::from_user_data(&client.user_data))
    }

    /// The address a connected client sends from.
    pub fn client_addr(&self, client_id: ClientId) -> Option<SocketAddr> {
        self.clients.get(&client_id).map(|client| client.addr)
    }

    /// How many clients each lane holds.
    pub fn lane_loads(&self) -> Vec<usize> {
        let mut loads = vec![0; self.lanes.len()];
        for client in self.clients.values() {
            loads[client.lane] += 1;
        }
        loads
    }

    /// The lane a connected client is on.
    pub fn client_lane(&self, client_id: ClientId) -> Option<usize> {
        self.clients.get(&client_id).map(|client| client.lane)
    }

    /// What the gates have received and dropped so far.
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    /// Payloads the netcode threads dropped because the tick's queue was full, and datagrams they sent.
    pub fn netcode_counters(&self) -> (u64, u64) {
        let get = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        (
            get(&self.netcode_counters.to_tick_full),
            get(&self.netcode_counters.sent),
        )
    }

    /// Disconnects every client (each netcode thread sends each of its clients a disconnect packet).
    pub fn disconnect_all(&self) {
        for lane in 0..self.lanes.len() {
            self.tell_netcode(lane, FromTick::DisconnectAll);
        }
    }

    /// A request lane `lane`'s thread must get (waits for room: it drains its queue continuously).
    fn tell_netcode(&self, lane: usize, request: FromTick) {
        if let Some(to_netcode) = self
            .lanes
            .get(lane)
            .and_then(|lane| lane.to_netcode.as_ref())
        {
            let _ = to_netcode.send(request);
        }
    }

    fn update(&mut self, server: &mut RenetServer) {
        // A handle of the queue's own (a counted reference), so that `apply` may borrow all of `self`.
        let Some(from_netcode) = self.from_netcode.clone() else {
            return;
        };
        // Sync: everything that reached the sockets before the tick started is this tick's, not the
        // next one's. Each lane's thread stops resting, reads its socket to empty, decrypts what its
        // gate passes and says so; the tick waits for them at most SYNC_LIMIT. (With nobody connected,
        // nothing is due to anyone, and the threads wait on their sockets rather than resting.)
        let mut taken = 0;
        if !self.clients.is_empty() {
            self.synced += 1;
            let sync = self.synced;
            let asked = self
                .lanes
                .iter()
                .filter_map(|lane| lane.to_netcode.as_ref())
                .filter(|to_netcode| to_netcode.try_send(FromTick::Sync(sync)).is_ok())
                .count();
            let deadline = Instant::now() + SYNC_LIMIT;
            let mut answered = 0;
            while answered < asked && taken < MAX_PER_TICK {
                match from_netcode.recv_deadline(deadline) {
                    Ok((_, ToTick::Synced(synced))) if synced == sync => answered += 1,
                    Ok((lane, event)) => {
                        taken += 1;
                        self.apply(server, lane, event);
                    }
                    Err(_) => break,
                }
            }
        }
        for (lane, event) in from_netcode.try_iter().take(MAX_PER_TICK - taken) {
            self.apply(server, lane, event);
        }
        for client_id in server.disconnections_id() {
            if let Some(lane) = self.client_lane(client_id)
                && self.closing.insert(client_id)
            {
                self.tell_netcode(lane, FromTick::Disconnect(client_id));
            }
        }
    }

    /// Hands renet one thing lane `lane`'s thread said.
    fn apply(&mut self, server: &mut RenetServer, lane: usize, event: ToTick) {
        match event {
            ToTick::Connected {
                client_id,
                addr,
                user_data,
            } => {
                if self.clients.contains_key(&client_id) {
                    // The id of a client connected on another lane (netcode refuses a second connection
                    // with a connected id only within its own lane): the newcomer is refused.
                    debug!(client_id, %addr, lane, "a second connection with a connected id; refused");
                    self.refused.insert((lane, client_id));
                    self.tell_netcode(lane, FromTick::Disconnect(client_id));
                    return;
                }
                self.clients.insert(
                    client_id,
                    Client {
                        addr,
                        user_data,
                        lane,
                    },
                );
                server.add_connection(client_id);
            }
            ToTick::Payload { client_id, bytes } => {
                self.netcode_counters
                    .waiting
                    .fetch_sub(1, Ordering::Relaxed);
                if self.refused.contains(&(lane, client_id)) {
                    return;
                }
                if let Err(error) = server.process_packet_from(&bytes, client_id) {
                    debug!(client_id, %error, "payload for an unknown client");
                }
            }
            ToTick::Disconnected { client_id } => {
                if self.refused.remove(&(lane, client_id)) {
                    return;
                }
                self.clients.remove(&client_id);
                self.closing.remove(&client_id);
                server.remove_connection(client_id);
            }
            // A sync answered after its tick gave up waiting.
            ToTick::Synced(_) => {}
        }
    }

    /// Between ticks: until `until`, hands renet what the netcode threads decrypted, a few times a
    /// tick (every `PUMP_EVERY`) rather than per packet, so that the next tick starts with its input
    /// already taken in. Sleeps out the rest.
    pub fn pump_until(&mut self, server: &mut RenetServer, until: Instant) {
        loop {
            let now = Instant::now();
            let Some(rest) = until.checked_duration_since(now) else {
                return;
            };
            // With nobody connected there is nothing to take in early: one sleep.
            let step = if self.clients.is_empty() {
                rest
            } else {
                rest.min(PUMP_EVERY)
            };
            std::thread::sleep(step);
            let Some(from_netcode) = self.from_netcode.clone() else {
                continue;
            };
            for (lane, event) in from_netcode.try_iter().take(MAX_PER_TICK) {
                self.apply(server, lane, event);
            }
        }
    }

    /// Whether `client_id` gets a packet this tick: always when something is queued or unacknowledged
    /// for it, otherwise (acks only) every [`ACK_EVERY`] ticks.
    fn due(&self, server: &RenetServer, client_id: ClientId) -> bool {
        let quiet = crate::protocol::owes_only_acks(&self.channels, |channel| {
            server.channel_available_memory(client_id, channel)
        });
        !quiet || client_id.wrapping_add(self.sends).is_multiple_of(ACK_EVERY)
    }

    fn send_packets(&mut self, server: &mut RenetServer) {
        self.sends = self.sends.wrapping_add(1);
        let mut batches: Vec<Vec<(ClientId, Vec<Vec<u8>>)>> =
            (0..self.lanes.len()).map(|_| Vec::new()).collect();
        for client_id in server.clients_id() {
            if !self.due(server, client_id) {
                continue;
            }
            let Some(lane) = self.client_lane(client_id) else {
                continue;
            };
            let Ok(packets) = server.get_packets_to_send(client_id) else {
                continue;
            };
            if !packets.is_empty() {
                batches[lane].push((client_id, packets));
            }
        }
        for (lane, batch) in batches.into_iter().enumerate() {
            let Some(to_netcode) = self.lanes[lane].to_netcode.as_ref() else {
                continue;
            };
            if batch.is_empty() {
                continue;
            }
            match to_netcode.try_send(FromTick::Packets(batch)) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                // The lane is ticks behind: like lost datagrams, renet resends what mattered.
                Err(TrySendError::Full(_)) => {
                    debug!(lane, "netcode queue full; a tick's packets dropped")
                }
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        // Each netcode thread sends what is queued and stops once its queue from the tick closes; it
        // never waits on the tick's queue once that is closed too.
        for lane in &mut self.lanes {
            lane.to_netcode = None;
        }
        self.from_netcode = None;
        for lane in &mut self.lanes {
            lane.thread.join();
        }
    }
}

fn receive(mut transport: ResMut<Transport>, mut server: ResMut<RenetServer>) {
    transport.update(&mut server);
}

fn send(mut transport: ResMut<Transport>, mut server: ResMut<RenetServer>) {
    transport.send_packets(&mut server);
}

fn disconnect_on_exit(exit: MessageReader<AppExit>, transport: Res<Transport>) {
    if !exit.is_empty() {
        transport.disconnect_all();
    }
}
