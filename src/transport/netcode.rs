//! The netcode thread: netcode's per-packet work off the tick. It owns renetcode's [`NetcodeServer`] and
//! the sending socket; it takes the datagrams the [`gate`](super::gate) let through, decrypts them and
//! hands the tick whole renet packets and connection events; it takes the tick's renet packets,
//! encrypts and sends them (`sendmmsg`, 64 datagrams a call); and it runs netcode's keep-alives and
//! timeouts on its own clock.
//!
//! The tick and this thread meet only through bounded queues. A payload that finds the tick's queue
//! full is dropped (counted; renet resends what mattered, as for any lost datagram); connection events
//! always get through (at most two per client). When the tick's side goes away, the thread sends
//! everything already queued, then stops.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy_renet::renet::ClientId;
use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, select};
use renetcode::{NETCODE_USER_DATA_BYTES, NetcodeServer, ServerResult};

use super::gate::{Control, Gated};
use crate::udp::SendBatch;

/// How often netcode's clock advances (keep-alives every 250 ms, timeouts) when no datagram arrives.
const UPDATE_EVERY: Duration = Duration::from_millis(10);
/// How often every connected client is checked for its keep-alive (due 250 ms after the last packet
/// to it) and its timeout: a keep-alive leaves at most this much late.
const SWEEP_EVERY: Duration = Duration::from_millis(50);
/// The same with nobody connected: an empty server wakes this thread 10 times a second, not 100.
const IDLE_UPDATE_EVERY: Duration = Duration::from_millis(100);
/// Datagrams (or tick requests) handled in one batch before the clock and the other queue get a look.
const BATCH: usize = 256;

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
    /// Everything the gate passed before the tick's sync request `n` is above.
    Synced(u64),
}

/// What the tick asks of the netcode thread.
#[derive(Debug)]
pub enum FromTick {
    /// One tick's renet packets, by client, to encrypt and send.
    Packets(Vec<(ClientId, Vec<Vec<u8>>)>),
    Disconnect(ClientId),
    DisconnectAll,
}

/// What the netcode thread counts.
#[derive(Debug, Default)]
pub struct NetcodeCounters {
    /// Payloads dropped because the tick's queue was full.
    pub to_tick_full: AtomicU64,
    /// Datagrams sent.
    pub sent: AtomicU64,
}

/// The running thread; see the module docs.
pub struct NetcodeThread {
    thread: Option<JoinHandle<()>>,
}

impl NetcodeThread {
    pub fn spawn(
        netcode: NetcodeServer,
        socket: UdpSocket,
        gated: Receiver<Gated>,
        from_tick: Receiver<FromTick>,
        to_tick: Sender<ToTick>,
        control: Sender<Control>,
        counters: Arc<NetcodeCounters>,
    ) -> std::io::Result<Self> {
        let mut state = State {
            netcode,
            out: Outlet {
                socket,
                to_tick,
                control,
                counters,
                clients: HashMap::new(),
                batch: SendBatch::default(),
            },
        };
        let thread = std::thread::Builder::new()
            .name("mmo-netcode".into())
            .spawn(move || state.run(&gated, &from_tick))?;
        Ok(Self {
            thread: Some(thread),
        })
    }

    /// Waits for the thread, which ends once the tick's sender is dropped and its queue is sent.
    pub fn join(&mut self) {
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the netcode thread panicked");
        }
    }
}

struct State {
    netcode: NetcodeServer,
    out: Outlet,
}

/// Where netcode's decisions go: the socket, the tick, the gate.
struct Outlet {
    socket: UdpSocket,
    to_tick: Sender<ToTick>,
    control: Sender<Control>,
    counters: Arc<NetcodeCounters>,
    /// Connected clients by address (for the gate's blocks).
    clients: HashMap<SocketAddr, ClientId>,
    /// Datagrams to send, flushed with one system call per 64 (and before the thread waits).
    batch: SendBatch,
}

impl State {
    fn run(&mut self, gated: &Receiver<Gated>, from_tick: &Receiver<FromTick>) {
        let mut last_update = Instant::now();
        let mut last_sweep = last_update;
        loop {
            let mut open = true;
            // The tick's packets first: they are due now, while what the gate passed is needed only
            // by the next tick (which syncs with this thread before it reads).
            loop {
                match from_tick.try_recv() {
                    Ok(request) => self.requested(request),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let wait = if self.netcode.connected_clients() == 0 {
                IDLE_UPDATE_EVERY
            } else {
                UPDATE_EVERY
            };
            if open {
                self.out.flush();
                select! {
                    recv(gated) -> first => {
                        if let Ok(first) = first {
                            self.gated(first);
                            for next in gated.try_iter().take(BATCH) {
                                self.gated(next);
                            }
                        }
                    }
                    recv(from_tick) -> first => match first {
                        Ok(first) => self.requested(first),
                        Err(_) => open = false,
                    },
                    default(wait) => {}
                }
            }
            if !open {
                // The tick is gone; everything it queued was handled above (a disconnected channel
                // reports its end only once empty).
                self.out.flush();
                return;
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
        }
    }

    fn gated(&mut self, gated: Gated) {
        match gated {
            Gated::Datagram { addr, mut bytes } => {
                let result = self.netcode.process_packet(addr, &mut bytes);
                self.out.handle(result);
            }
            Gated::Synced(sync) => {
                let _ = self.out.to_tick.try_send(ToTick::Synced(sync));
            }
            Gated::Blocked(addr) => {
                if let Some(&client_id) = self.out.clients.get(&addr) {
                    tracing::warn!(client_id, %addr, "disconnecting a flooding client");
                    let result = self.netcode.disconnect(client_id);
                    self.out.handle(result);
                }
            }
        }
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
    /// tell the gate who connected and left).
    fn handle(&mut self, result: ServerResult<'_, '_>) {
        match result {
            ServerResult::None => {}
            ServerResult::PacketToSend { addr, payload } => self.send(payload, addr),
            ServerResult::Payload { client_id, payload } => {
                let bytes = payload.to_vec();
                match self.to_tick.try_send(ToTick::Payload { client_id, bytes }) {
                    Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    Err(TrySendError::Full(_)) => {
                        self.counters.to_tick_full.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            ServerResult::ClientConnected {
                client_id,
                addr,
                user_data,
                payload,
            } => {
                let _ = self.control.send(Control::Connected(addr));
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
                let _ = self.control.send(Control::Disconnected(addr));
                self.clients.remove(&addr);
                if let Some(payload) = payload {
                    self.send(payload, addr);
                }
                self.tell_tick(ToTick::Disconnected { client_id });
            }
        }
    }

    /// A connection event: it must reach the tick, so this waits for room (the tick drains its queue
    /// every tick); only a tick that is gone loses it.
    fn tell_tick(&self, event: ToTick) {
        let _ = self.to_tick.send(event);
    }
}
