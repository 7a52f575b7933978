//! The transport's thread: netcode's per-packet work off the tick. It owns the socket, the
//! [`gate`](super::gate) and renetcode's [`NetcodeServer`]:
//!
//! - it drains the socket (`recvmmsg`, 64 datagrams a call) whenever there is something to read, while
//!   the tick runs or sleeps, asks the gate about each datagram, and decrypts those it passes in the
//!   buffer they were read into, handing the tick whole renet packets and connection events;
//! - it takes the tick's renet packets (one batch a tick), encrypts and sends them (`sendmmsg`), before
//!   it reads again: they are due now, what it reads is needed only by the next tick;
//! - it runs netcode's clock, keep-alives and timeouts;
//! - at the start of each tick it answers the tick's sync: the socket read to empty, everything that
//!   reached it before the tick started is in the tick's queue.
//!
//! Between reads it rests [`REST`] (waking at once for the tick), so that under load one wake-up reads
//! many datagrams; with nobody connected it waits on the socket instead.
//!
//! The tick and this thread meet only through queues. At most `--transport-queue` payloads wait for the
//! tick; beyond that a payload is dropped (counted; renet resends what mattered, as for any lost
//! datagram), so a stalled tick costs bounded memory and never stops this thread, which keeps reading
//! the socket and keeping clients alive. Connection events always get through (at most two per client). When the tick's side goes away, the thread sends
//! everything already queued, then stops.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bevy_renet::renet::ClientId;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use renetcode::{NETCODE_USER_DATA_BYTES, NetcodeServer, ServerResult};

use super::gate::{Control, Counters, GateState, Verdict};
use crate::logs::Budget;
use crate::udp::{RecvBatch, SendBatch, wait_readable};
use crate::worker::{Stop, Threads};

/// The log line of a player address blocked for flooding (`crate::logs`).
static FLOODING: Budget = Budget::new("player address flooding", 2, 60);

/// How often netcode's clock advances (its keep-alives and timeouts count in it).
const UPDATE_EVERY: Duration = Duration::from_millis(10);
/// How often every connected client is checked for its keep-alive (due 250 ms after the last packet
/// to it) and its timeout: a keep-alive leaves at most this much late.
const SWEEP_EVERY: Duration = Duration::from_millis(50);
/// How long the thread rests after emptying the socket (unless the tick asks for something): at
/// 60,000 datagrams a second, 120 wait in the kernel's buffer meanwhile and are read with two calls.
/// Small beside a 16.7 ms tick, and the tick's sync reads the socket at each tick's start anyway.
pub const REST: Duration = Duration::from_millis(2);
/// With nobody connected: how long it waits on an empty socket before looking at the tick's queue.
const IDLE_WAIT: Duration = Duration::from_millis(50);
/// `recvmmsg` calls (64 datagrams each) before the tick's requests get a look again, under a flood.
const READS_PER_TURN: usize = 16;

/// What the netcode thread tells the tick.
#[derive(Debug)]
pub enum ToTick {
    Connected {
        client_id: ClientId,
        addr: SocketAddr,
        user_data: Box<[u8; NETCODE_USER_DATA_BYTES]>,
    },
    /// A decrypted renet packet from a connected client.
    Payload {
        client_id: ClientId,
        bytes: Vec<u8>,
    },
    Disconnected {
        client_id: ClientId,
    },
    /// The answer to [`FromTick::Sync`]: what reached the socket before it is above.
    Synced(u64),
}

/// What the tick asks of the netcode thread.
#[derive(Debug)]
pub enum FromTick {
    /// One tick's renet packets, by client, to encrypt and send.
    Packets(Vec<(ClientId, Vec<Vec<u8>>)>),
    Disconnect(ClientId),
    DisconnectAll,
    /// Read the socket to empty now and say so with [`ToTick::Synced`].
    Sync(u64),
}

/// What the netcode thread counts.
#[derive(Debug, Default)]
pub struct NetcodeCounters {
    /// Payloads handed to the tick and not yet taken (the tick takes one off as it reads each).
    pub waiting: AtomicUsize,
    /// Payloads dropped because [`NetcodeCounters::waiting`] was at the queue's limit.
    pub to_tick_full: AtomicU64,
    /// Datagrams sent.
    pub sent: AtomicU64,
}

/// The running thread; see the module docs.
pub struct NetcodeThread {
    thread: Threads,
}

impl NetcodeThread {
    /// Starts lane `lane`'s thread on `socket` (non-blocking). At most `queue` payloads (of every lane
    /// together) wait in `to_tick` (which is unbounded: connection events are never dropped nor waited
    /// for). `gate_counters` count what the gate decides.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        lane: usize,
        netcode: NetcodeServer,
        gate: GateState,
        socket: UdpSocket,
        from_tick: Receiver<FromTick>,
        to_tick: Sender<(usize, ToTick)>,
        queue: usize,
        counters: Arc<NetcodeCounters>,
        gate_counters: Arc<Counters>,
    ) -> io::Result<Self> {
        let mut state = State {
            netcode,
            received: RecvBatch::default(),
            gate_counters,
            sync: None,
            out: Outlet {
                lane,
                socket,
                to_tick,
                queue,
                gate,
                counters,
                clients: HashMap::new(),
                batch: SendBatch::default(),
            },
        };
        // The first lane keeps the name tools and tests look for.
        let name = match lane {
            0 => "mmo-netcode".to_owned(),
            lane => format!("mmo-netcode-{lane}"),
        };
        let thread = Threads::default().try_spawn(name, move |_| state.run(&from_tick))?;
        Ok(Self { thread })
    }

    /// Waits for the thread, which ends once the tick's sender is dropped and its queue is sent.
    pub fn join(&mut self) {
        self.thread.stop();
    }
}

struct State {
    netcode: NetcodeServer,
    /// The datagrams of the last read.
    received: RecvBatch,
    gate_counters: Arc<Counters>,
    /// A sync the tick asked for, answered once the socket is read to empty.
    sync: Option<u64>,
    out: Outlet,
}

/// Where netcode's decisions go: the socket, the tick, the gate.
struct Outlet {
    /// Which of the transport's lanes this is (every event to the tick says so).
    lane: usize,
    socket: UdpSocket,
    to_tick: Sender<(usize, ToTick)>,
    /// Payloads that may wait for the tick at once.
    queue: usize,
    gate: GateState,
    counters: Arc<NetcodeCounters>,
    /// Connected clients by address (for the gate's blocks).
    clients: HashMap<SocketAddr, ClientId>,
    /// Datagrams to send, flushed with one system call per 64 (and before the thread waits).
    batch: SendBatch,
}

/// How a read of the socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Read to empty; it had this many datagrams.
    Emptied(usize),
    /// More is waiting (a flood): go round again after the tick's requests.
    More,
}

impl State {
    fn run(&mut self, from_tick: &Receiver<FromTick>) {
        let mut last_update = Instant::now();
        let mut last_sweep = last_update;
        loop {
            // The tick's requests first: its packets are due now.
            let open = loop {
                match from_tick.try_recv() {
                    Ok(request) => self.requested(request),
                    Err(TryRecvError::Empty) => break true,
                    Err(TryRecvError::Disconnected) => break false,
                }
            };
            self.out.flush();
            if !open {
                // The tick is gone; everything it queued was sent above (a disconnected channel
                // reports its end only once empty).
                return;
            }
            let read = self.read_socket();
            if read != Read::More
                && let Some(sync) = self.sync.take()
            {
                self.out.tell_tick(ToTick::Synced(sync));
            }
            let now = Instant::now();
            if now - last_update >= UPDATE_EVERY {
                self.netcode.update(now - last_update);
                last_update = now;
            }
            if now - last_sweep >= SWEEP_EVERY {
                last_sweep = now;
                // renetcode finds each client by a scan of all 1,024 slots: a sweep of 1,000 clients
                // is a million slot looks, so it runs at 20 Hz, not at the clock's 100 Hz.
                for client_id in self.netcode.clients_id() {
                    let result = self.netcode.update_client(client_id);
                    self.out.handle(result);
                }
            }
            self.out.flush();
            match read {
                Read::More => {}
                Read::Emptied(0) if self.netcode.connected_clients() == 0 => {
                    // Nobody connected and nothing arriving: wait on the socket, not the clock.
                    wait_readable(&self.out.socket, IDLE_WAIT);
                }
                // Let datagrams gather: one wake-up per batch, not per datagram; the tick's packets
                // and syncs end the rest at once.
                Read::Emptied(_) => match from_tick.recv_timeout(REST) {
                    Ok(request) => self.requested(request),
                    Err(RecvTimeoutError::Timeout) => {}
                    // Seen (and sent what was queued) at the top of the loop.
                    Err(RecvTimeoutError::Disconnected) => {}
                },
            }
        }
    }

    /// Reads the socket until it is empty (or [`READS_PER_TURN`] calls), passing each datagram the
    /// gate lets through to netcode.
    fn read_socket(&mut self) -> Read {
        let mut count = 0;
        for _ in 0..READS_PER_TURN {
            match self.received.recv(&self.out.socket) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Read::Emptied(count);
                }
                // An ICMP "port unreachable" from an earlier send, or a signal: go on.
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, "UDP receive failed");
                    return Read::Emptied(count);
                }
            }
            let now = Instant::now();
            for (addr, bytes) in self.received.datagrams_mut() {
                count += 1;
                let verdict = self.out.gate.judge(addr, bytes, now);
                self.gate_counters.record(verdict);
                match verdict {
                    Verdict::Pass => {
                        let result = self.netcode.process_packet(addr, bytes);
                        self.out.handle(result);
                    }
                    Verdict::NewlyBlocked { player: true } => {
                        if FLOODING.allow(addr.ip()) {
                            tracing::warn!(%addr, "player address flooding; blocking it and closing its connection");
                        }
                        if let Some(&client_id) = self.out.clients.get(&addr) {
                            let result = self.netcode.disconnect(client_id);
                            self.out.handle(result);
                        }
                    }
                    _ => {}
                }
            }
        }
        Read::More
    }

    fn requested(&mut self, request: FromTick) {
        match request {
            FromTick::Packets(batch) => {
                for (client_id, packets) in batch {
                    for packet in packets {
                        match self.netcode.generate_payload_packet(client_id, &packet) {
                            Ok((addr, payload)) => self.out.send(payload, addr),
                            // The client left meanwhile: its Disconnected is on its way to the tick.
                            Err(_) => break,
                        }
                    }
                }
            }
            FromTick::Disconnect(client_id) => {
                let result = self.netcode.disconnect(client_id);
                if matches!(result, ServerResult::ClientDisconnected { .. }) {
                    self.out.handle(result);
                } else {
                    // Unknown here already: the tick still waits to hear it is gone.
                    self.out.tell_tick(ToTick::Disconnected { client_id });
                }
            }
            FromTick::DisconnectAll => {
                for client_id in self.netcode.clients_id() {
                    let result = self.netcode.disconnect(client_id);
                    self.out.handle(result);
                }
            }
            FromTick::Sync(sync) => self.sync = Some(sync),
        }
    }
}

impl Outlet {
    /// Queues a datagram (sent at the next flush, or sooner when 64 are queued).
    fn send(&mut self, payload: &[u8], addr: SocketAddr) {
        self.batch.push(&self.socket, addr, payload);
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends every queued datagram.
    fn flush(&mut self) {
        self.batch.flush(&self.socket);
    }

    /// Carries out what netcode decided: send its packet, hand a payload or an event to the tick (and
    /// tell the gate who connected and left: players get a player's budget).
    fn handle(&mut self, result: ServerResult<'_, '_>) {
        match result {
            ServerResult::None => {}
            ServerResult::PacketToSend { addr, payload } => self.send(payload, addr),
            ServerResult::Payload { client_id, payload } => {
                if self.counters.waiting.load(Ordering::Relaxed) >= self.queue {
                    // The tick is late: like a datagram lost on the wire (renet resends).
                    self.counters.to_tick_full.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                self.counters.waiting.fetch_add(1, Ordering::Relaxed);
                let bytes = payload.to_vec();
                let _ = self
                    .to_tick
                    .send((self.lane, ToTick::Payload { client_id, bytes }));
            }
            ServerResult::ClientConnected {
                client_id,
                addr,
                user_data,
                payload,
            } => {
                self.gate.apply(Control::Connected(addr));
                self.clients.insert(addr, client_id);
                self.send(payload, addr);
                self.tell_tick(ToTick::Connected {
                    client_id,
                    addr,
                    user_data,
                });
            }
            ServerResult::ClientDisconnected {
                client_id,
                addr,
                payload,
            } => {
                self.gate.apply(Control::Disconnected(addr));
                self.clients.remove(&addr);
                if let Some(payload) = payload {
                    self.send(payload, addr);
                }
                self.tell_tick(ToTick::Disconnected { client_id });
            }
        }
    }

    /// A connection event: it must reach the tick, and the queue takes it whatever the payloads waiting
    /// (there are at most two per connection, and connections are paced by the gate's budgets); only a
    /// tick that is gone loses it.
    fn tell_tick(&self, event: ToTick) {
        let _ = self.to_tick.send((self.lane, event));
    }
}
