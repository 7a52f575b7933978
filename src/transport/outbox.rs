//! [`Outbox`]: the connections as the game's systems use them: send, receive, ask, close, whether they
//! came over UDP (renet's, the [`RenetServer`] underneath) or over a WebSocket ([`super::ws::WsPeers`],
//! ids with [`super::ws::WS_ID_BIT`] set); these few methods are the whole surface the game uses, and
//! they route each id to the transport that holds it. For renet's connections it notes who was sent
//! something this tick, so that the transport hands renet's packets out for those clients, the clients with
//! something unacknowledged and the clients whose ack turn it is, and does not look at every other
//! connection every tick (at 4,000 idle players, asking renet whether each of them owed anything cost a
//! millisecond and a half a tick in cache misses alone).
//!
//! A system that sends through `ResMut<RenetServer>` directly still has its message delivered: every
//! client is looked at on its ack turn, every [`super::ACK_EVERY`] ticks (100 ms at 60 Hz); only the
//! "at once" is lost.

use bevy::ecs::system::SystemParam;
use bevy::platform::collections::HashSet;
use bevy::prelude::*;
use bevy_renet::RenetServer;
use bevy_renet::renet::{Bytes, ClientId};

use super::ws::WsPeers;

/// The clients sent something since the transport last handed out packets.
#[derive(Resource, Default, Debug)]
pub struct Sent(pub(super) HashSet<ClientId>);

/// The connections, for systems that send, read or close them: `outbox.send_message(..)` queues the
/// message and tells the transport.
#[derive(SystemParam)]
pub struct Outbox<'w> {
    server: ResMut<'w, RenetServer>,
    sent: ResMut<'w, Sent>,
    ws: ResMut<'w, WsPeers>,
}

impl Outbox<'_> {
    /// Queues `message` for `client_id` on `channel_id` (as renet's `RenetServer::send_message`); it leaves
    /// in this tick's packets.
    pub fn send_message(
        &mut self,
        client_id: ClientId,
        channel_id: impl Into<u8>,
        message: impl Into<Bytes>,
    ) {
        if self.ws.holds(client_id) {
            self.ws.send(client_id, channel_id.into(), message.into());
            return;
        }
        self.sent.0.insert(client_id);
        self.server.send_message(client_id, channel_id, message);
    }

    /// The next message renet's `client_id` sent on `channel_id`, if any (a WebSocket's come decoded:
    /// [`WsPeers::receive`]).
    pub fn receive_message(
        &mut self,
        client_id: ClientId,
        channel_id: impl Into<u8>,
    ) -> Option<Bytes> {
        self.server.receive_message(client_id, channel_id)
    }

    pub fn is_connected(&self, client_id: ClientId) -> bool {
        if self.ws.holds(client_id) {
            return self.ws.is_connected(client_id);
        }
        self.server.is_connected(client_id)
    }

    /// The WebSocket connections.
    pub fn ws(&mut self) -> &mut WsPeers {
        &mut self.ws
    }

    /// Whether everything sent to `client_id` on `channel_id` was acknowledged (nothing waits in the
    /// channel's memory).
    pub fn delivered(&self, client_id: ClientId, channel_id: u8) -> bool {
        if self.ws.holds(client_id) {
            return self.ws.delivered(client_id);
        }
        self.server.channel_available_memory(client_id, channel_id)
            == crate::protocol::SERVER_CHANNEL_MEMORY
    }

    /// Closes the connection (the transport says so to the client).
    pub fn disconnect(&mut self, client_id: ClientId) {
        if self.ws.holds(client_id) {
            self.ws.disconnect(client_id, "Disconnected by the server");
            return;
        }
        self.server.disconnect(client_id);
    }

    /// How many connections there are, over both transports.
    pub fn connected_clients(&self) -> usize {
        self.server.connected_clients() + self.ws.len()
    }

    pub fn has_connections(&self) -> bool {
        self.server.has_connections() || !self.ws.is_empty()
    }
}
