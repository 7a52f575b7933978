//! The world: everything that stands in it has a [`Position`] and walks where it is told at the
//! server's speed ([`Walking`]); players ask with `MoveTo`, checked here. What players hear of it is
//! [`interest`] management: anything [`Visible`] (players, non-player characters, items) is seen by the
//! players in view, through one grid, one crowd cap and one snapshot budget. Players' positions
//! persist ([`store`]).
//!
//! The model gameplay plugin, with `crate::npc`: components on entities, client input read from
//! [`Inbound`] and checked, authoritative movement in the tick, persistence off the tick, output encoded
//! once per message, each system in its [`ServerSystems`] set.

pub mod interest;
pub mod store;

use bevy::prelude::*;

use crate::config::Config;
use crate::net::{self, Inbound, Outbox};
use crate::players::Player;
use crate::protocol::{ClientMessage, Request, WORLD_SIZE};
use crate::schedule::ServerSystems;
pub use interest::{Sight, Visible, WorldId};
pub use store::{SAVE_EVERY, WorldStore};

/// Where new players appear: the middle of the world (see [`spawn_point`]).
pub const SPAWN: Vec2 = Vec2::splat(WORLD_SIZE / 2.0);

/// What a player is told when it asks to walk before logging in.
pub const NOT_LOGGED_IN: &str = "You must log in to move";
/// What a player is told when its target is not a place (NaN or infinite).
pub const NOT_A_PLACE: &str = "That is not a place in the world";

pub(crate) fn plugin(app: &mut App) {
    let config = app.world().resource::<Config>();
    let rules = WorldRules {
        speed: config.move_speed,
        view_radius: config.view_radius,
        max_in_view: usize::from(config.max_in_view),
        snapshot_ticks: interest::snapshot_ticks(config.tick_hz, config.snapshot_hz),
    };
    app.insert_resource(rules)
        .add_systems(Update, handle_moves.in_set(ServerSystems::Requests))
        .add_systems(Update, walk.in_set(ServerSystems::Simulation))
        .add_plugins((interest::plugin, store::plugin));
}

/// The world's settings, from the server's flags.
#[derive(Resource, Debug, Clone, Copy)]
pub struct WorldRules {
    /// World units a second.
    pub speed: f32,
    pub view_radius: f32,
    /// Other entities one player is told of at most.
    pub max_in_view: usize,
    /// Ticks between two snapshots to one player (`--tick-hz` / `--snapshot-hz`, at least 1): the
    /// players are served in that many groups, one group a tick.
    pub snapshot_ticks: u32,
}

/// Where something stands, in world units.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Position(pub Vec2);

/// Where something is walking to; removed when it arrives.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Walking {
    pub target: Vec2,
}

/// Where a new account appears: the middle of the world, spread over a small square by account.
pub fn spawn_point(account_id: i32) -> Vec2 {
    let spread = |salt: i32| (account_id.wrapping_mul(salt).rem_euclid(64) - 32) as f32;
    SPAWN + Vec2::new(spread(37), spread(53))
}

/// `MoveTo`: checked, clamped into the world, and set as the player's target.
fn handle_moves(
    mut commands: Commands,
    mut inbound: MessageReader<Inbound>,
    mut server: Outbox,
    walkers: Query<Has<Position>, With<Player>>,
) {
    for Inbound {
        entity,
        client_id,
        message,
    } in inbound.read()
    {
        let ClientMessage::MoveTo { x, y } = *message else {
            continue;
        };
        match walkers.get(*entity) {
            Ok(true) => {}
            // Logged in, its saved position not loaded yet (a few milliseconds): the click is lost, as
            // one during a lag spike would be.
            Ok(false) => continue,
            Err(_) => {
                net::deny(&mut server, *client_id, Request::Move, NOT_LOGGED_IN);
                continue;
            }
        }
        if !x.is_finite() || !y.is_finite() {
            net::deny(&mut server, *client_id, Request::Move, NOT_A_PLACE);
            continue;
        }
        let target = Vec2::new(x, y).clamp(Vec2::ZERO, Vec2::splat(WORLD_SIZE));
        commands.entity(*entity).insert(Walking { target });
    }
}

/// Moves everything walking toward its target at the world's speed; it stops there.
fn walk(
    mut commands: Commands,
    time: Res<Time>,
    rules: Res<WorldRules>,
    mut walkers: Query<(Entity, &mut Position, &Walking)>,
) {
    let step = rules.speed * time.delta_secs();
    for (entity, mut position, walking) in &mut walkers {
        let to_go = walking.target - position.0;
        if to_go.length() <= step {
            position.0 = walking.target;
            commands.entity(entity).remove::<Walking>();
        } else {
            position.0 += to_go.normalize() * step;
        }
    }
}
