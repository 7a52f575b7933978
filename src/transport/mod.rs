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
//! every tick (renet acknowledges on every flush, forever, acks included): such a client is sent its
//! acks on its turn, every [`ACK_EVERY`] ticks (spread over the ticks by client id), and only if it sent
//! something other than acks since its last packet: its reliable messages are acknowledged well within
//! renet's resend time (200 ms), and its acks are not acknowledged back (the ping-pong of two quiet
//! peers ends; netcode's keep-alives hold the connection). Anything sent to it through the
//! [`outbox::Outbox`] goes out the same tick. The tick looks only at the clients that can owe something
//! (sent to, unacknowledged, owed an ack) and reads messages only from those that sent packets: at
//! 4,000 idle players, touching every connection twice a tick cost more than everything else.

pub mod gate;
pub mod netcode;
pub mod outbox;
pub mod sockets;
pub mod token;
pub mod ws;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bevy::platform::collections::HashSet as FastSet;
use bevy::prelude::*;
use bevy_renet::renet::ClientId;
use bevy_renet::{RenetReceive, RenetSend, RenetServer, RenetServerPlugin};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use renetcode::{NETCODE_USER_DATA_BYTES, NetcodeServer, ServerAuthentication, ServerConfig};

use crate::access::IpBans;
use crate::api::{TokenUser, UserDataError};
use gate::{Counters, CountersSnapshot, GateState, Limits};
use netcode::{FromTick, NetcodeCounters, NetcodeThread, ToTick};
use outbox::Sent;

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
/// A client holding more than this many bytes sent on the reliable channel and not acknowledged...
pub const STALLED_BACKLOG: usize = 256 * 1024;
/// ...for this long has stopped reading (its frames stalled, or it is gone without a word): it is
/// disconnected, rather than kept for netcode's 15 s timeout while renet buffers up to
/// [`crate::protocol::SERVER_CHANNEL_MEMORY`] for it and resends up to 60 KB of it every tick. (A
/// load generator whose thread stopped pumping 2,000 players made the server buffer 1 GB and its ticks
/// take 100-400 ms.) A player at chat 500's rate is sent about 35 KB a second.
pub const STALLED_AFTER: Duration = Duration::from_secs(5);
/// Log lines about stalled clients (any peer can cause one).
static STALLED: crate::logs::Budget =
    crate::logs::Budget::new("not reading; disconnected", 10, 120);

/// The first byte of a renet packet that holds only acks (renet's `Packet::Ack`).
const RENET_ACK_PACKET: u8 = 4;
/// How often the tick's thread takes in decrypted packets while it waits for the next tick.
const PUMP_EVERY: Duration = Duration::from_millis(2);
/// The shortest sleep between two takes (a sleep rounds up to about this anyway).
const PUMP_STEP_MIN: Duration = Duration::from_micros(100);
/// How long a tick waits at most for the netcode thread to hand it what reached the socket before the
/// tick started (normally a fraction of a millisecond).
const SYNC_LIMIT: Duration = Duration::from_millis(2);
/// How long before a tick the lanes are asked to sync, so that the tick finds them answered instead of
/// waiting for each lane's thread to be scheduled (six lanes on two cores took milliseconds).
const SYNC_AHEAD: Duration = Duration::from_millis(1);

pub(crate) fn plugin(app: &mut App) {
    app.add_systems(
        PreUpdate,
        receive
            .in_set(RenetReceive)
            .after(RenetServerPlugin::update_system)
            .before(RenetServerPlugin::emit_server_events_system),
    )
    .init_resource::<Sent>()
    .add_systems(PostUpdate, send.in_set(RenetSend))
    .add_systems(Last, disconnect_on_exit)
    .add_plugins(ws::plugin);
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
    /// Clients that owed more than acks when their packets were last handed out (something queued or
    /// unacknowledged): looked at again every tick until they owe only acks.
    busy: FastSet<ClientId>,
    /// Clients renet was handed packets from since [`Transport::take_arrived`] was last called: only
    /// they can have messages to receive.
    arrived: FastSet<ClientId>,
    /// Clients that sent something other than acks since their last packet: owed an ack on their turn.
    owed_ack: FastSet<ClientId>,
    /// Clients holding more than [`STALLED_BACKLOG`] unacknowledged, since when.
    backlogged: HashMap<ClientId, Instant>,
    /// The last sync asked for (see [`Transport::update`]).
    synced: u64,
    /// Lanes asked for that sync, and how many answered it (`asked` is 0 when none is under way).
    asked: usize,
    answered: usize,
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
            asked: 0,
            answered: 0,
            busy: FastSet::default(),
            arrived: FastSet::default(),
            owed_ack: FastSet::default(),
            backlogged: HashMap::new(),
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
        // Sync: everything that reached the sockets before the tick started (within SYNC_AHEAD) is
        // this tick's, not the next one's. Each lane's thread stops resting, reads its socket to
        // empty, decrypts what its gate passes and says so; the sync was asked for SYNC_AHEAD before
        // the tick (by `pump_until`; here if it did not run), and the tick waits for the answers still
        // missing at most SYNC_LIMIT. (With nobody connected, nothing is due to anyone, and the
        // threads wait on their sockets rather than resting.)
        let mut taken = 0;
        if !self.clients.is_empty() {
            if self.asked == 0 {
                self.ask_sync();
            }
            let deadline = Instant::now() + SYNC_LIMIT;
            while self.answered < self.asked && taken < MAX_PER_TICK {
                match from_netcode.recv_deadline(deadline) {
                    Ok((lane, event)) => {
                        taken += usize::from(!matches!(event, ToTick::Synced(_)));
                        self.apply(server, lane, event);
                    }
                    Err(_) => break,
                }
            }
        }
        self.asked = 0;
        self.answered = 0;
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

    /// Asks every lane to read its socket to empty and say so (a new sync).
    fn ask_sync(&mut self) {
        self.synced += 1;
        let sync = self.synced;
        self.answered = 0;
        self.asked = self
            .lanes
            .iter()
            .filter_map(|lane| lane.to_netcode.as_ref())
            .filter(|to_netcode| to_netcode.try_send(FromTick::Sync(sync)).is_ok())
            .count();
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
                match server.process_packet_from(&bytes, client_id) {
                    Ok(()) => {
                        self.arrived.insert(client_id);
                        if bytes.first() != Some(&RENET_ACK_PACKET) {
                            self.owed_ack.insert(client_id);
                        }
                    }
                    Err(error) => debug!(client_id, %error, "payload for an unknown client"),
                }
            }
            ToTick::Disconnected { client_id } => {
                if self.refused.remove(&(lane, client_id)) {
                    return;
                }
                self.clients.remove(&client_id);
                self.closing.remove(&client_id);
                self.busy.remove(&client_id);
                self.arrived.remove(&client_id);
                self.owed_ack.remove(&client_id);
                self.backlogged.remove(&client_id);
                server.remove_connection(client_id);
            }
            ToTick::Synced(sync) => {
                // Else a sync answered after its tick gave up waiting.
                if sync == self.synced {
                    self.answered += 1;
                }
            }
        }
    }

    /// Between ticks: until `until`, hands renet what the netcode threads decrypted, a few times a
    /// tick (every `PUMP_EVERY`) rather than per packet, so that the next tick starts with its input
    /// already taken in. Sleeps out the rest.
    pub fn pump_until(&mut self, server: &mut RenetServer, until: Instant) {
        let ask_at = until.checked_sub(SYNC_AHEAD).unwrap_or(until);
        loop {
            let now = Instant::now();
            let Some(rest) = until.checked_duration_since(now) else {
                return;
            };
            if now >= ask_at && self.asked == 0 && !self.clients.is_empty() {
                self.ask_sync();
            }
            // With nobody connected there is nothing to take in early: one sleep.
            let step = if self.clients.is_empty() {
                rest
            } else if self.asked == 0 {
                rest.min(PUMP_EVERY)
                    .min(ask_at.saturating_duration_since(now).max(PUMP_STEP_MIN))
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

    /// The clients renet was handed packets from since the last call (only they can have messages to
    /// receive); [`Transport::still_arrived`] gives back those not ready to be read yet.
    pub fn take_arrived(&mut self) -> FastSet<ClientId> {
        std::mem::take(&mut self.arrived)
    }

    /// Gives back a client [`Transport::take_arrived`] returned whose messages were left unread.
    pub fn still_arrived(&mut self, client_id: ClientId) {
        if self.clients.contains_key(&client_id) {
            self.arrived.insert(client_id);
        }
    }

    /// Whether `client_id` owes more than acks: something queued or unacknowledged on a channel.
    fn owes_more_than_acks(&self, server: &RenetServer, client_id: ClientId) -> bool {
        !crate::protocol::owes_only_acks(&self.channels, |channel| {
            server.channel_available_memory(client_id, channel)
        })
    }

    /// Hands the lanes this tick's packets. A client gets a packet when it was sent something this
    /// tick (`sent`), when it owed more than acks last tick ([`Transport::busy`]: resends), and on its
    /// ack turn (every [`ACK_EVERY`] ticks, spread over the ticks by client id) when it is owed an ack
    /// ([`Transport::owed_ack`]); the other clients are not looked at.
    fn send_packets(&mut self, server: &mut RenetServer, sent: &mut FastSet<ClientId>) {
        self.sends = self.sends.wrapping_add(1);
        let sends = self.sends;
        let mut due: Vec<ClientId> = sent.drain().collect();
        due.extend(self.busy.iter().copied());
        due.extend(
            self.owed_ack
                .iter()
                .filter(|id| id.wrapping_add(sends).is_multiple_of(ACK_EVERY))
                .copied(),
        );
        due.sort_unstable();
        due.dedup();
        let mut busy = FastSet::default();
        let mut stalled = Vec::new();
        let now = Instant::now();
        let mut batches: Vec<Vec<(ClientId, Vec<Vec<u8>>)>> =
            (0..self.lanes.len()).map(|_| Vec::new()).collect();
        for client_id in due {
            let Some(lane) = self.client_lane(client_id) else {
                continue;
            };
            let Ok(packets) = server.get_packets_to_send(client_id) else {
                continue;
            };
            // Every renet packet carries the acks owed.
            if !packets.is_empty() {
                self.owed_ack.remove(&client_id);
            }
            if self.owes_more_than_acks(server, client_id) {
                busy.insert(client_id);
                let backlog = crate::protocol::SERVER_CHANNEL_MEMORY
                    - server.channel_available_memory(client_id, crate::protocol::CHANNEL);
                if backlog > STALLED_BACKLOG {
                    let since = *self.backlogged.entry(client_id).or_insert(now);
                    if now - since >= STALLED_AFTER {
                        stalled.push((client_id, backlog));
                    }
                } else {
                    self.backlogged.remove(&client_id);
                }
            } else {
                self.backlogged.remove(&client_id);
            }
            if !packets.is_empty() {
                batches[lane].push((client_id, packets));
            }
        }
        self.busy = busy;
        for (client_id, backlog) in stalled {
            if STALLED.allow(()) {
                warn!(client_id, backlog, "not reading; disconnected");
            }
            self.backlogged.remove(&client_id);
            server.disconnect(client_id);
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

fn send(mut transport: ResMut<Transport>, mut server: ResMut<RenetServer>, mut sent: ResMut<Sent>) {
    transport.send_packets(&mut server, &mut sent.0);
}

fn disconnect_on_exit(
    exit: MessageReader<AppExit>,
    transport: Res<Transport>,
    mut ws: ResMut<ws::WsPeers>,
) {
    if !exit.is_empty() {
        transport.disconnect_all();
        ws.disconnect_all(crate::protocol::SHUTTING_DOWN);
    }
}
