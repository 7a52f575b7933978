//! The order of a tick, as public system sets every plugin puts its `Update` systems in, so that a new
//! plugin can say "after movement" or "before the snapshots" without naming another plugin's private
//! system (bevy_new_2d's `AppSystems`, for a server).
//!
//! One tick flows one way: what arrived is taken in ([`ServerSystems::Receive`]), players' requests are
//! acted on ([`ServerSystems::Requests`]), commands run ([`ServerSystems::Commands`]), the world moves
//! ([`ServerSystems::Simulation`]), what changed goes to the players who should hear of it
//! ([`ServerSystems::Replication`]), and connections are closed or sent what is queued
//! ([`ServerSystems::Send`]). renet itself receives before all of them (`PreUpdate`) and sends after
//! (`PostUpdate`).

use bevy::prelude::*;

/// The sets of `Update`, chained in this order (see the module docs).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerSystems {
    /// Client messages decoded into `net::Inbound`; answers from worker threads (logins, loaded
    /// positions, database commands) and from other shards applied.
    Receive,
    /// Players' requests acted on: login, chat lines, moves. A chat line starting with `/` becomes a
    /// command here and runs in the same tick.
    Requests,
    /// Commands from players and the console, and what they change (bans, roles).
    Commands,
    /// The world moves: walking, non-player characters, timers.
    Simulation,
    /// What changed goes out to those who should hear of it: snapshots, stores, the bus.
    Replication,
    /// Connections closed (kicked ones, once told why) and other last words of the tick.
    Send,
}

pub(crate) fn plugin(app: &mut App) {
    app.configure_sets(
        Update,
        (
            ServerSystems::Receive,
            ServerSystems::Requests,
            ServerSystems::Commands,
            ServerSystems::Simulation,
            ServerSystems::Replication,
            ServerSystems::Send,
        )
            .chain(),
    );
}
