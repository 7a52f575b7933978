//! Players in the world, persisted: a player enters the world where its account left it (a new one at
//! the spawn point), loaded by the world's database thread, and its position is stored by that thread,
//! batched, every [`SAVE_EVERY`] while it walks (a round is skipped while the thread is behind: the
//! queue stays bounded and the positions go in the next round), at logout and at shutdown (a killed
//! server loses at most the last [`SAVE_EVERY`] of walking). One thread, so a position saved at logout
//! is stored before the next login loads it.

use std::time::{Duration, Instant};

use bevy::prelude::*;
use crossbeam_channel::Receiver;
use prometheus_client::metrics::histogram::Histogram;

use super::interest::{Sight, Visible};
use super::{Position, Walking, spawn_point};
use crate::db::models::SavedPosition;
use crate::db::{self, Database, DbPool, queries};
use crate::metrics::{self, Metrics};
use crate::players::Player;
use crate::protocol::Kind;
use crate::schedule::ServerSystems;
use crate::time::now_ms;
use crate::worker::{Stop, Stopping, Worker, stop_at_shutdown};

/// How often the positions of players who walked are stored.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);
/// Jobs waiting for the world's database thread past which a round of saves is skipped (the database
/// is slow or away): the positions stay unsaved and go in the next round that finds room, so the
/// queue holds at most this many rounds, plus a save for each logout and a load for each login.
const MAX_QUEUED_JOBS: usize = 8;

pub(super) fn plugin(app: &mut App) {
    let pool = app.world().resource::<Database>().pool("world", 1);
    let writes = app
        .world()
        .resource::<Metrics>()
        .world_write_seconds
        .clone();
    app.insert_resource(WorldStore::start(pool, writes))
        .insert_resource(SaveClock(Instant::now()))
        .add_systems(Update, place_loaded.in_set(ServerSystems::Receive))
        .add_systems(Update, save_walkers.in_set(ServerSystems::Replication))
        .add_observer(enter_world)
        .add_observer(leave_world);
    stop_at_shutdown::<WorldStore>(app);
}

/// The position last handed to the database thread.
#[derive(Component, Debug)]
struct Stored(Vec2);

/// When walkers' positions were last stored.
#[derive(Resource, Debug)]
struct SaveClock(Instant);

/// What the world's database thread does.
enum StoreJob {
    Load { entity: Entity, account_id: i32 },
    Save(Vec<SavedPosition>),
}

/// A saved position (or none: a new account) for a player entering the world.
struct Loaded {
    entity: Entity,
    account_id: i32,
    saved: Option<Vec2>,
}

/// The world's database thread (see the module docs).
#[derive(Resource)]
pub struct WorldStore {
    worker: Worker<StoreJob>,
    loaded: Receiver<Loaded>,
}

impl WorldStore {
    fn start(pool: DbPool, writes: Histogram) -> Self {
        let (answers, loaded) = crossbeam_channel::unbounded();
        let worker = Worker::single(
            "world-store",
            None,
            move |jobs: Receiver<StoreJob>, stopping| {
                while let Ok(first) = jobs.recv() {
                    // Saves queued together go in one transaction.
                    let mut saves = Vec::new();
                    for job in std::iter::once(first).chain(jobs.try_iter()) {
                        match job {
                            StoreJob::Save(batch) => saves.extend(batch),
                            StoreJob::Load { entity, account_id } => {
                                store_positions(&pool, &mut saves, &writes, &stopping);
                                let saved = load_position(&pool, account_id);
                                let _ = answers.send(Loaded {
                                    entity,
                                    account_id,
                                    saved,
                                });
                            }
                        }
                    }
                    store_positions(&pool, &mut saves, &writes, &stopping);
                }
            },
        );
        Self { worker, loaded }
    }

    fn send(&self, job: StoreJob) {
        // Unbounded, but bounded in practice: the rounds of saves stop at `MAX_QUEUED_JOBS`; what else
        // comes is one job per login or logout. It refuses only once the server has stopped.
        let _ = self.worker.send(job);
    }
}

impl Stop for WorldStore {
    /// Stores every position still queued, then stops the thread.
    fn stop(&mut self) {
        self.worker.stop();
    }
}

/// A new player's saved position is asked of the world's database thread; it enters the world when
/// the answer comes ([`place_loaded`]).
fn enter_world(add: On<Add, Player>, players: Query<&Player>, store: Res<WorldStore>) {
    if let Ok(player) = players.get(add.entity) {
        store.send(StoreJob::Load {
            entity: add.entity,
            account_id: player.account_id,
        });
    }
}

/// Players whose saved position arrived enter the world there (a new account at the spawn point): they
/// become visible, and see (interest management tells them their id and who is near).
fn place_loaded(
    mut commands: Commands,
    store: Res<WorldStore>,
    players: Query<&Player, Without<Position>>,
) {
    for Loaded {
        entity,
        account_id,
        saved,
    } in store.loaded.try_iter()
    {
        // Gone meanwhile (logged out, or the account logged in again elsewhere): nothing to place.
        let Ok(player) = players.get(entity) else {
            continue;
        };
        if player.account_id != account_id {
            continue;
        }
        let at = saved.unwrap_or_else(|| spawn_point(account_id));
        commands.entity(entity).insert((
            Position(at),
            Stored(at),
            Sight::default(),
            Visible {
                kind: Kind::Player,
                name: player.name.clone(),
            },
        ));
    }
}

/// A player who logs out (or is disconnected) leaves the world: its position is stored, and the others'
/// next snapshot pass tells those who saw it.
fn leave_world(
    remove: On<Remove, Player>,
    mut commands: Commands,
    players: Query<(&Player, &Position)>,
    store: Res<WorldStore>,
) {
    if let Ok((player, position)) = players.get(remove.entity) {
        store.send(StoreJob::Save(vec![saved(player.account_id, position.0)]));
    }
    if let Ok(mut entity) = commands.get_entity(remove.entity) {
        entity.try_remove::<(Position, Stored, Walking, Visible, Sight)>();
    }
}

/// Every [`SAVE_EVERY`]: the positions of the players who walked since they were last stored.
fn save_walkers(
    mut clock: ResMut<SaveClock>,
    store: Res<WorldStore>,
    mut players: Query<(&Player, &Position, &mut Stored)>,
    metrics: Res<Metrics>,
) {
    let now = Instant::now();
    if now - clock.0 < SAVE_EVERY {
        return;
    }
    clock.0 = now;
    let queued = store.worker.queued();
    metrics.queue_depth.world.set(queued as i64);
    if queued >= MAX_QUEUED_JOBS {
        return;
    }
    let batch: Vec<SavedPosition> = players
        .iter_mut()
        .filter(|(_, position, stored)| position.0 != stored.0)
        .map(|(player, position, mut stored)| {
            stored.0 = position.0;
            saved(player.account_id, position.0)
        })
        .collect();
    if !batch.is_empty() {
        store.send(StoreJob::Save(batch));
    }
}

fn saved(account_id: i32, at: Vec2) -> SavedPosition {
    SavedPosition {
        account_id,
        x: at.x,
        y: at.y,
        saved_at_ms: i64::try_from(now_ms()).unwrap_or(i64::MAX),
    }
}

/// Stores `saves` (waiting for the database if it is away), then empties it.
fn store_positions(
    pool: &DbPool,
    saves: &mut Vec<SavedPosition>,
    writes: &Histogram,
    stopping: &Stopping,
) {
    if saves.is_empty() {
        return;
    }
    metrics::time(writes, || {
        db::write_until_done(pool, stopping.flag(), "positions", saves.len(), |conn| {
            queries::save_positions(conn, saves)
        })
    });
    saves.clear();
}

/// The saved position of `account_id`; `None` for a new account or when it cannot be read (logged: the
/// player then starts at the spawn point rather than not at all).
fn load_position(pool: &DbPool, account_id: i32) -> Option<Vec2> {
    let loaded = db::with_conn(pool, |conn| queries::saved_position(conn, account_id));
    match loaded {
        Ok(saved) => saved
            .map(|saved| Vec2::new(saved.x, saved.y))
            .filter(|at| at.is_finite()),
        Err(error) => {
            error!(%error, account_id, "could not load a position");
            None
        }
    }
}
