//! [`Outbox`]: the renet server as the game's systems use it. It is the [`RenetServer`] (it derefs to
//! it) and it notes who was sent something this tick, so that the transport hands renet's packets out
//! for those clients, the clients with something unacknowledged and the clients whose ack turn it is,
//! and does not look at every other connection every tick (at 4,000 idle players, asking renet whether
//! each of them owed anything cost a millisecond and a half a tick in cache misses alone).
//!
//! A system that sends through `ResMut<RenetServer>` directly still has its message delivered: every
//! client is looked at on its ack turn, every [`super::ACK_EVERY`] ticks (100 ms at 60 Hz); only the
//! "at once" is lost.

use std::ops::{Deref, DerefMut};

use bevy::ecs::system::SystemParam;
use bevy::platform::collections::HashSet;
use bevy::prelude::*;
use bevy_renet::RenetServer;
use bevy_renet::renet::{Bytes, ClientId};

/// The clients sent something since the transport last handed out packets.
#[derive(Resource, Default, Debug)]
pub struct Sent(pub(super) HashSet<ClientId>);

/// The renet server, for systems that send: `outbox.send_message(..)` queues the message and tells the
/// transport; everything else is [`RenetServer`]'s own (`is_connected`, `disconnect`, ...).
#[derive(SystemParam)]
pub struct Outbox<'w> {
    server: ResMut<'w, RenetServer>,
    sent: ResMut<'w, Sent>,
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
        self.sent.0.insert(client_id);
        self.server.send_message(client_id, channel_id, message);
    }
}

impl Deref for Outbox<'_> {
    type Target = RenetServer;

    fn deref(&self) -> &RenetServer {
        &self.server
    }
}

impl DerefMut for Outbox<'_> {
    fn deref_mut(&mut self) -> &mut RenetServer {
        &mut self.server
    }
}
