//! The WebSocket transport, the tick's side: browsers (and any WebSocket client) play over the HTTPS
//! listener's `/ws` ([`crate::http::ws`] runs the sockets on the HTTPS runtime). Each socket is a
//! connection like a UDP one: an id (with [`WS_ID_BIT`] set, so it never meets a netcode id), an
//! entity, the same messages; the game reaches both through [`super::outbox::Outbox`].
//!
//! The sockets' tasks hand the tick [`WsEvent`]s on one queue, in the order they happened: a connection
//! (its connect token already checked), its decoded messages, its end. The tick hands each socket
//! [`Out`]s on a queue of its own, and the socket's task writes them, a tick's worth in one TLS flush.
//!
//! Bounded both ways: a socket's task reads no further while [`INFLIGHT`] of its messages wait for the
//! tick (TCP pushes back on the sender); bytes queued for a socket are counted, snapshots are dropped
//! for a socket that is behind ([`SNAPSHOT_BACKLOG`]), and one that stays over
//! [`super::STALLED_BACKLOG`] for [`super::STALLED_AFTER`], or reaches
//! [`crate::protocol::SERVER_CHANNEL_MEMORY`], is closed, as renet closes a UDP client that stops
//! acknowledging.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bevy::prelude::*;
use bevy_renet::renet::{Bytes, ClientId};
use crossbeam_channel::Receiver;
use tokio::sync::{Semaphore, mpsc};

use crate::api::TokenUser;
use crate::protocol::{SERVER_CHANNEL_MEMORY, SNAPSHOT_CHANNEL};

/// Set in every WebSocket connection's client id; the connect tokens token mode issues have it clear,
/// so the two never meet (in-band mode, whose clients choose their ids, has no WebSocket).
pub const WS_ID_BIT: ClientId = 1 << 63;
/// A socket's messages that may wait for the tick at once; its task reads no more until some are taken.
pub const INFLIGHT: usize = 64;
/// Bytes queued for a socket past which its snapshots are dropped (a lost snapshot is replaced by the
/// next one, as on UDP's unreliable channel).
pub const SNAPSHOT_BACKLOG: usize = 64 * 1024;
/// Events the tick takes in one tick at most.
const MAX_EVENTS_PER_TICK: usize = super::MAX_PER_TICK;

/// Log lines any peer can cause.
static STALLED: crate::logs::Budget =
    crate::logs::Budget::new("websocket not reading; closed", 10, 120);

/// What the tick asks of a socket's task.
#[derive(Debug)]
pub enum Out {
    /// One message for the client, on `channel` (the frame's first byte).
    Message { channel: u8, bytes: Bytes },
    /// Close the socket, saying why (after what was queued before).
    Close(String),
}

/// The tick's handle on one socket.
#[derive(Debug, Clone)]
pub struct WsLink {
    pub out: mpsc::UnboundedSender<Out>,
    /// Bytes queued and not yet written to the socket.
    pub queued: Arc<AtomicUsize>,
    /// Permits for messages the task may hand the tick; the tick gives one back per message it takes.
    pub inflight: Arc<Semaphore>,
}

impl WsLink {
    /// A link and the task's ends of it.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Out>) {
        let (out, from_tick) = mpsc::unbounded_channel();
        let link = Self {
            out,
            queued: Arc::default(),
            inflight: Arc::new(Semaphore::new(INFLIGHT)),
        };
        (link, from_tick)
    }
}

/// What a socket's task tells the tick, in order.
#[derive(Debug)]
pub enum WsEvent {
    /// A socket presented a valid connect token for `user`.
    Connected {
        client_id: ClientId,
        addr: SocketAddr,
        user: TokenUser,
        link: WsLink,
    },
    /// One decoded message (the task decodes with the protocol's limits; a socket whose message does
    /// not decode is closed there).
    Message {
        client_id: ClientId,
        message: crate::protocol::ClientMessage,
    },
    /// The socket is closed.
    Closed { client_id: ClientId, reason: String },
}

/// A connection's coming or going, for the networking plugin to spawn or despawn its entity.
#[derive(Debug)]
pub enum Change {
    Connected {
        client_id: ClientId,
        addr: SocketAddr,
        user: TokenUser,
    },
    Disconnected {
        client_id: ClientId,
        reason: String,
    },
}

#[derive(Debug)]
struct Peer {
    link: WsLink,
    addr: SocketAddr,
    inbox: VecDeque<crate::protocol::ClientMessage>,
    closing: bool,
    /// Since when it has had more than [`super::STALLED_BACKLOG`] queued.
    behind_since: Option<Instant>,
}

/// The WebSocket connections, as the tick holds them.
#[derive(Resource, Default, Debug)]
pub struct WsPeers {
    events: Option<Receiver<WsEvent>>,
    peers: HashMap<ClientId, Peer>,
    /// Peers with messages in their inbox.
    arrived: Vec<ClientId>,
}

impl WsPeers {
    /// The peers the sockets' tasks report on `events`.
    pub fn new(events: Receiver<WsEvent>) -> Self {
        Self {
            events: Some(events),
            ..default()
        }
    }

    /// Takes what the sockets reported since the last call (at most [`super::MAX_PER_TICK`]): stashes
    /// messages, and answers connections and disconnections in order.
    pub fn take_events(&mut self) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(events) = &self.events else {
            return changes;
        };
        for event in events.try_iter().take(MAX_EVENTS_PER_TICK) {
            match event {
                WsEvent::Connected {
                    client_id,
                    addr,
                    user,
                    link,
                } => {
                    self.peers.insert(
                        client_id,
                        Peer {
                            link,
                            addr,
                            inbox: VecDeque::new(),
                            closing: false,
                            behind_since: None,
                        },
                    );
                    changes.push(Change::Connected {
                        client_id,
                        addr,
                        user,
                    });
                }
                WsEvent::Message { client_id, message } => {
                    if let Some(peer) = self.peers.get_mut(&client_id) {
                        if peer.inbox.is_empty() {
                            self.arrived.push(client_id);
                        }
                        peer.inbox.push_back(message);
                    }
                }
                WsEvent::Closed { client_id, reason } => {
                    if self.peers.remove(&client_id).is_some() {
                        changes.push(Change::Disconnected { client_id, reason });
                    }
                }
            }
        }
        changes
    }

    /// Whether `client_id` is one of these sockets (else it is renet's). Asked by membership, not by
    /// [`WS_ID_BIT`]: in-band clients choose their own ids, any of them (there are no sockets then).
    pub fn holds(&self, client_id: ClientId) -> bool {
        !self.peers.is_empty() && self.peers.contains_key(&client_id)
    }

    /// The peers with messages to take since the last call.
    pub fn take_arrived(&mut self) -> Vec<ClientId> {
        std::mem::take(&mut self.arrived)
    }

    /// The next message `client_id` sent, if any (its task may then read one more).
    pub fn receive(&mut self, client_id: ClientId) -> Option<crate::protocol::ClientMessage> {
        let peer = self.peers.get_mut(&client_id)?;
        let message = peer.inbox.pop_front()?;
        peer.link.inflight.add_permits(1);
        Some(message)
    }

    /// Queues `bytes` for `client_id` on `channel`. A snapshot for a peer that is behind is dropped.
    pub fn send(&mut self, client_id: ClientId, channel: u8, bytes: Bytes) {
        let Some(peer) = self.peers.get_mut(&client_id) else {
            return;
        };
        if peer.closing {
            return;
        }
        let queued = peer.link.queued.load(Ordering::Relaxed);
        if channel == SNAPSHOT_CHANNEL && queued > SNAPSHOT_BACKLOG {
            return;
        }
        peer.link.queued.fetch_add(bytes.len(), Ordering::Relaxed);
        let _ = peer.link.out.send(Out::Message { channel, bytes });
    }

    /// Whether everything sent to `client_id` was written to its socket.
    pub fn delivered(&self, client_id: ClientId) -> bool {
        self.peers
            .get(&client_id)
            .is_none_or(|peer| peer.link.queued.load(Ordering::Relaxed) == 0)
    }

    /// Closes `client_id`'s socket after what is queued for it, saying `reason`. Its entity goes when
    /// the task reports it closed.
    pub fn disconnect(&mut self, client_id: ClientId, reason: &str) {
        if let Some(peer) = self.peers.get_mut(&client_id)
            && !peer.closing
        {
            peer.closing = true;
            let _ = peer.link.out.send(Out::Close(reason.to_owned()));
        }
    }

    /// Closes every socket (the server is stopping).
    pub fn disconnect_all(&mut self, reason: &str) {
        let ids: Vec<ClientId> = self.peers.keys().copied().collect();
        for client_id in ids {
            self.disconnect(client_id, reason);
        }
    }

    pub fn is_connected(&self, client_id: ClientId) -> bool {
        self.peers.get(&client_id).is_some_and(|peer| !peer.closing)
    }

    /// The address `client_id` connected from.
    pub fn addr(&self, client_id: ClientId) -> Option<SocketAddr> {
        self.peers.get(&client_id).map(|peer| peer.addr)
    }

    /// Open sockets (closing ones included, until their tasks report them closed).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Closes the sockets that stopped reading: over [`SERVER_CHANNEL_MEMORY`] queued at once, or over
    /// [`super::STALLED_BACKLOG`] for [`super::STALLED_AFTER`].
    pub fn close_stalled(&mut self, now: Instant) {
        let mut stalled = Vec::new();
        for (&client_id, peer) in &mut self.peers {
            let queued = peer.link.queued.load(Ordering::Relaxed);
            if queued <= super::STALLED_BACKLOG {
                peer.behind_since = None;
                continue;
            }
            let since = *peer.behind_since.get_or_insert(now);
            if queued >= SERVER_CHANNEL_MEMORY
                || now.saturating_duration_since(since) >= super::STALLED_AFTER
            {
                stalled.push((client_id, queued));
            }
        }
        for (client_id, queued) in stalled {
            if STALLED.allow(client_id) {
                warn!(client_id, queued, "websocket not reading; closed");
            }
            self.disconnect(client_id, "Not reading");
        }
    }
}

/// The tick's WebSocket systems: closes stalled sockets after the game has sent.
pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<WsPeers>()
        .add_systems(PostUpdate, close_stalled);
}

fn close_stalled(mut peers: ResMut<WsPeers>) {
    if !peers.is_empty() {
        peers.close_stalled(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CHANNEL, ClientMessage};

    fn connect(
        events: &crossbeam_channel::Sender<WsEvent>,
        client_id: ClientId,
    ) -> (WsLink, mpsc::UnboundedReceiver<Out>) {
        let (link, from_tick) = WsLink::new();
        events
            .send(WsEvent::Connected {
                client_id,
                addr: "127.0.0.1:1".parse().unwrap(),
                user: TokenUser {
                    account_id: 1,
                    name: "Alice".into(),
                },
                link: link.clone(),
            })
            .unwrap();
        (link, from_tick)
    }

    #[test]
    fn events_come_in_order_and_messages_give_their_permit_back() {
        let (events, from_sockets) = crossbeam_channel::unbounded();
        let mut peers = WsPeers::new(from_sockets);
        let id = WS_ID_BIT | 1;
        let (link, _from_tick) = connect(&events, id);
        link.inflight.try_acquire().unwrap().forget();
        let message = ClientMessage::Chat { text: "hi".into() };
        events
            .send(WsEvent::Message {
                client_id: id,
                message: message.clone(),
            })
            .unwrap();
        assert!(
            !peers.holds(id),
            "an in-band client may pick any id: renet's until connected here"
        );
        let changes = peers.take_events();
        assert!(matches!(changes[..], [Change::Connected { client_id, .. }] if client_id == id));
        assert!(peers.holds(id) && !peers.holds(id ^ WS_ID_BIT));
        assert_eq!(peers.take_arrived(), vec![id]);
        assert_eq!(link.inflight.available_permits(), INFLIGHT - 1);
        assert_eq!(peers.receive(id), Some(message));
        assert_eq!(peers.receive(id), None);
        assert_eq!(link.inflight.available_permits(), INFLIGHT);
        events
            .send(WsEvent::Closed {
                client_id: id,
                reason: "bye".into(),
            })
            .unwrap();
        assert!(matches!(
            &peers.take_events()[..],
            [Change::Disconnected { reason, .. }] if reason == "bye"
        ));
        assert!(peers.is_empty());
    }

    #[test]
    fn sends_are_counted_until_written_and_a_peer_behind_loses_snapshots_then_is_closed() {
        let (events, from_sockets) = crossbeam_channel::unbounded();
        let mut peers = WsPeers::new(from_sockets);
        let id = WS_ID_BIT | 2;
        let (link, mut from_tick) = connect(&events, id);
        peers.take_events();
        assert!(peers.delivered(id));
        peers.send(id, CHANNEL, Bytes::from(vec![0u8; 10]));
        assert!(!peers.delivered(id));
        assert!(matches!(
            from_tick.try_recv(),
            Ok(Out::Message {
                channel: CHANNEL,
                ..
            })
        ));
        link.queued.fetch_sub(10, Ordering::Relaxed);
        assert!(peers.delivered(id));

        let big = Bytes::from(vec![0u8; super::super::STALLED_BACKLOG + 1]);
        peers.send(id, CHANNEL, big);
        from_tick.try_recv().unwrap();
        peers.send(id, SNAPSHOT_CHANNEL, Bytes::from_static(&[1, 2, 3]));
        assert!(from_tick.try_recv().is_err(), "snapshot dropped");
        let start = Instant::now();
        peers.close_stalled(start);
        assert!(peers.is_connected(id), "behind, not yet stalled");
        peers.close_stalled(start + super::super::STALLED_AFTER);
        assert!(!peers.is_connected(id));
        assert!(matches!(from_tick.try_recv(), Ok(Out::Close(reason)) if reason == "Not reading"));
        peers.disconnect(id, "again");
        assert!(from_tick.try_recv().is_err(), "closed once");
    }
}
