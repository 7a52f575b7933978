//! The world: every player has a position, walks where it asks to at the server's speed, and hears of
//! the players within its view radius: "entered view" and "left view" on the reliable channel, their
//! positions in snapshots on the unreliable one. Who is near whom comes from a grid of cells one view
//! radius wide, so a crowded server spends players × neighbours, not players².
//!
//! Positions persist: a player enters the world where its account left it (a new one at the spawn
//! point), loaded by the world's database thread; positions are stored by that thread, batched, every
//! [`SAVE_EVERY`] while players walk, at logout and at shutdown (a killed server loses at most the last
//! [`SAVE_EVERY`] of walking).
//!
//! The model gameplay plugin: components on the player entity ([`Position`], [`Walking`], [`Sight`]),
//! client input read from [`Inbound`] and checked, authoritative movement in the tick, persistence off
//! the tick, output encoded once per message.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy::ecs::entity::EntityHashMap;
use bevy::prelude::*;
use bevy_renet::renet::Bytes;
use bevy_renet::{RenetSend, RenetServer};

use crossbeam_channel::{Receiver, Sender};

use crate::config::Config;
use crate::db::models::SavedPosition;
use crate::db::{self, Database, DbPool, queries};
use crate::metrics::{self, Metrics};
use crate::net::{self, Connection, Inbound};
use crate::players::Player;
use crate::protocol::{
    ClientMessage, Pos, Request, SNAPSHOT_CHANNEL, ServerMessage, Snapshot, WORLD_SIZE,
};
use crate::shutdown::ServerStopping;
use crate::time::now_ms;
use prometheus_client::metrics::histogram::Histogram;

/// Snapshots a player's position keeps appearing in after it stops moving, so that one lost snapshot
/// does not leave it drawn at a stale spot.
const REPEATS: u8 = 3;
/// Positions in one snapshot message at most: 90 of at most 9 bytes each, with the header, keeps it
/// under [`crate::protocol::MAX_SNAPSHOT_BYTES`] and in one datagram.
const PER_SNAPSHOT: usize = 90;
/// Where new players appear: the middle of the world (see [`spawn_point`]).
const SPAWN: Vec2 = Vec2::splat(WORLD_SIZE / 2.0);

/// How often the positions of players who walked are stored.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);

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
        snapshot_every: Duration::from_secs_f64(1.0 / f64::from(config.snapshot_hz.max(1))),
    };
    let pool = app.world().resource::<Database>().0.clone();
    let writes = app
        .world()
        .resource::<Metrics>()
        .world_write_seconds
        .clone();
    app.insert_resource(rules)
        .insert_resource(WorldStore::start(pool, writes))
        .init_resource::<WorldIds>()
        .init_resource::<Departed>()
        .insert_resource(SnapshotClock {
            last: Instant::now(),
            seq: 0,
        })
        .insert_resource(SaveClock(Instant::now()))
        .add_systems(Update, (place_loaded, handle_moves, walk).chain())
        .add_systems(PostUpdate, (send_snapshots.before(RenetSend), save_walkers))
        .add_observer(enter_world)
        .add_observer(leave_world)
        .add_observer(flush_store);
}

/// The world's settings, from the server's flags.
#[derive(Resource, Debug, Clone, Copy)]
pub struct WorldRules {
    /// World units a second.
    pub speed: f32,
    pub view_radius: f32,
    /// Other players one player is told of at most.
    pub max_in_view: usize,
    pub snapshot_every: Duration,
}

/// Where a player stands, in world units.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Position(pub Vec2);

/// Where a player is walking to; removed when it arrives.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct Walking {
    pub target: Vec2,
}

/// The id snapshots name a player by (stable for one login).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldId(pub u32);

/// The players this player has been told are in view, by entity, with their ids.
#[derive(Component, Debug, Default)]
pub struct Sight {
    in_view: EntityHashMap<u32>,
}

/// A player's position as last put in snapshots, and for how many snapshots it has not changed.
#[derive(Component, Debug)]
struct Motion {
    sent: Pos,
    quiet: u8,
}

/// The position last handed to the database thread.
#[derive(Component, Debug)]
struct Stored(Vec2);

/// When walkers' positions were last stored.
#[derive(Resource, Debug)]
struct SaveClock(Instant);

/// Where players who left the world since the last snapshot pass stood: those near there are told.
#[derive(Resource, Debug, Default)]
struct Departed(Vec<Vec2>);

/// The next [`WorldId`].
#[derive(Resource, Debug, Default)]
struct WorldIds(u32);

/// When snapshots last went out, and their counter.
#[derive(Resource, Debug)]
struct SnapshotClock {
    last: Instant,
    seq: u32,
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

/// Players whose saved position arrived enter the world there (a new account at the spawn point) and
/// are told their id and position.
fn place_loaded(
    mut commands: Commands,
    store: Res<WorldStore>,
    players: Query<(&Player, &Connection), Without<Position>>,
    mut ids: ResMut<WorldIds>,
    mut server: ResMut<RenetServer>,
) {
    for Loaded {
        entity,
        account_id,
        saved,
    } in store.loaded.try_iter()
    {
        // Gone meanwhile (logged out, or the account logged in again elsewhere): nothing to place.
        let Ok((player, connection)) = players.get(entity) else {
            continue;
        };
        if player.account_id != account_id {
            continue;
        }
        ids.0 = ids.0.wrapping_add(1);
        let at = saved.unwrap_or_else(|| spawn_point(account_id));
        let pos = Pos::quantize(at.x, at.y);
        commands.entity(entity).insert((
            Position(at),
            Stored(at),
            WorldId(ids.0),
            Sight::default(),
            Motion {
                sent: pos,
                quiet: 0,
            },
        ));
        net::send(
            &mut server,
            connection.client_id,
            &ServerMessage::Spawned { id: ids.0, at: pos },
        );
    }
}

/// Where a new account appears: the middle of the world, spread over a small square by account.
fn spawn_point(account_id: i32) -> Vec2 {
    let spread = |salt: i32| (account_id.wrapping_mul(salt).rem_euclid(64) - 32) as f32;
    SPAWN + Vec2::new(spread(37), spread(53))
}

/// A player who logs out (or is disconnected) leaves the world: its position is stored, and the others'
/// next snapshot pass tells those who saw it.
fn leave_world(
    remove: On<Remove, Player>,
    mut commands: Commands,
    players: Query<(&Player, &Position)>,
    store: Res<WorldStore>,
    mut departed: ResMut<Departed>,
) {
    if let Ok((player, position)) = players.get(remove.entity) {
        store.send(StoreJob::Save(vec![saved(player.account_id, position.0)]));
        departed.0.push(position.0);
    }
    if let Ok(mut entity) = commands.get_entity(remove.entity) {
        entity.try_remove::<(Position, Stored, Walking, WorldId, Sight, Motion)>();
    }
}

/// Every [`SAVE_EVERY`]: the positions of the players who walked since they were last stored.
fn save_walkers(
    mut clock: ResMut<SaveClock>,
    store: Res<WorldStore>,
    mut players: Query<(&Player, &Position, &mut Stored)>,
) {
    let now = Instant::now();
    if now - clock.0 < SAVE_EVERY {
        return;
    }
    clock.0 = now;
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

/// At shutdown, after every player left (and was saved): stores what is queued and stops the thread.
fn flush_store(_: On<ServerStopping>, mut store: ResMut<WorldStore>) {
    store.flush();
}

fn saved(account_id: i32, at: Vec2) -> SavedPosition {
    SavedPosition {
        account_id,
        x: at.x,
        y: at.y,
        saved_at_ms: i64::try_from(now_ms()).unwrap_or(i64::MAX),
    }
}

/// `MoveTo`: checked, clamped into the world, and set as the player's target.
fn handle_moves(
    mut commands: Commands,
    mut inbound: MessageReader<Inbound>,
    mut server: ResMut<RenetServer>,
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

/// Moves every walking player toward its target at the world's speed; it stops there.
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

/// One player as the snapshot pass sees it.
struct Seen {
    entity: Entity,
    id: u32,
    at: Vec2,
    pos: Pos,
    /// Its position goes into snapshots (it moved lately).
    fresh: bool,
}

/// At `--snapshot-hz`: tells each player who entered and left its view, and sends it the positions
/// that changed lately among itself and the players in view.
#[allow(clippy::type_complexity)]
fn send_snapshots(
    rules: Res<WorldRules>,
    mut clock: ResMut<SnapshotClock>,
    mut server: ResMut<RenetServer>,
    mut movers: Query<(Entity, &WorldId, &Position, &mut Motion), With<Player>>,
    names: Query<&Player>,
    mut viewers: Query<(Entity, &Connection, &WorldId, &mut Sight)>,
    mut departed: ResMut<Departed>,
) {
    let now = Instant::now();
    if now - clock.last < rules.snapshot_every {
        return;
    }
    clock.last = now;
    clock.seq = clock.seq.wrapping_add(1);
    let sent_at_ms = now_ms();

    // Cells where something changed: a player moved (from and to), appeared or left. Only the players
    // with such a cell around them can have anything new to hear; a crowd standing still costs nothing.
    let cell = rules.view_radius;
    let mut changed: HashSet<(i32, i32)> =
        departed.0.drain(..).map(|at| Grid::key(at, cell)).collect();
    let mut seen = Vec::new();
    for (entity, id, position, mut motion) in &mut movers {
        let pos = Pos::quantize(position.0.x, position.0.y);
        if pos == motion.sent {
            motion.quiet = motion.quiet.saturating_add(1);
        } else {
            changed.insert(Grid::key(Vec2::new(motion.sent.x(), motion.sent.y()), cell));
            motion.sent = pos;
            motion.quiet = 0;
        }
        let fresh = motion.quiet < REPEATS;
        if fresh {
            changed.insert(Grid::key(position.0, cell));
        }
        seen.push(Seen {
            entity,
            id: id.0,
            at: position.0,
            pos,
            fresh,
        });
    }
    if changed.is_empty() {
        return;
    }
    let grid = Grid::new(&seen, cell);
    let by_entity: EntityHashMap<usize> = seen
        .iter()
        .enumerate()
        .map(|(index, one)| (one.entity, index))
        .collect();

    let mut near = Vec::new();
    // `near_to[i] == viewer`: player `i` is near the viewer numbered `viewer` (numbers start at 1).
    let mut near_to = vec![0u32; seen.len()];
    for (viewer, (entity, connection, own_id, mut sight)) in (1..).zip(&mut viewers) {
        let Some(&me) = by_entity.get(&entity) else {
            continue;
        };
        if !Grid::around(seen[me].at, cell).any(|key| changed.contains(&key)) {
            continue;
        }
        let client_id = connection.client_id;
        near.clear();
        grid.near(&seen, seen[me].at, rules.view_radius, |index| {
            if index != me {
                near.push(index);
            }
        });
        if near.len() > rules.max_in_view {
            crowd_cut(&mut near, &seen, me, &sight, rules.max_in_view);
        }
        for &index in &near {
            near_to[index] = viewer;
        }
        // Who left: known before, not near now (walked away, logged out, disconnected).
        sight.in_view.retain(|known, id| {
            let stays = by_entity
                .get(known)
                .is_some_and(|&index| near_to[index] == viewer);
            if !stays {
                net::send(&mut server, client_id, &ServerMessage::LeftView { id: *id });
            }
            stays
        });
        let mut positions = Vec::new();
        if seen[me].fresh {
            positions.push((own_id.0, seen[me].pos));
        }
        for &index in &near {
            let other = &seen[index];
            if sight.in_view.insert(other.entity, other.id).is_none() {
                let name = names
                    .get(other.entity)
                    .map(|player| player.name.clone())
                    .unwrap_or_default();
                net::send(
                    &mut server,
                    client_id,
                    &ServerMessage::EnteredView {
                        id: other.id,
                        name,
                        at: other.pos,
                    },
                );
            } else if other.fresh {
                positions.push((other.id, other.pos));
            }
        }
        for chunk in positions.chunks(PER_SNAPSHOT) {
            let snapshot = Snapshot {
                seq: clock.seq,
                sent_at_ms,
                positions: chunk.to_vec(),
            };
            server.send_message(client_id, SNAPSHOT_CHANNEL, Bytes::from(snapshot.encode()));
        }
    }
}

/// In a crowd, who of `near` (the players within view of `seen[me]`) it is told of: those it already
/// knows keep their place (no "left, entered" churn while they stay in the radius), the nearest of the
/// others fill the rest, `cap` in all.
fn crowd_cut(near: &mut Vec<usize>, seen: &[Seen], me: usize, sight: &Sight, cap: usize) {
    let (mut kept, mut others): (Vec<usize>, Vec<usize>) = near
        .iter()
        .partition(|&&index| sight.in_view.contains_key(&seen[index].entity));
    kept.truncate(cap);
    let room = cap - kept.len();
    if others.len() > room {
        let at = seen[me].at;
        let distance = |index: &usize| seen[*index].at.distance_squared(at);
        if room > 0 {
            others.select_nth_unstable_by(room - 1, |a, b| distance(a).total_cmp(&distance(b)));
        }
        others.truncate(room);
    }
    kept.append(&mut others);
    *near = kept;
}

/// Players by grid cell, a cell one view radius wide: everyone within a player's view is in its own
/// cell or one of the eight around it.
struct Grid {
    cell: f32,
    cells: HashMap<(i32, i32), Vec<usize>>,
}

impl Grid {
    fn new(seen: &[Seen], cell: f32) -> Self {
        let mut cells: HashMap<(i32, i32), Vec<usize>> = HashMap::new();
        for (index, one) in seen.iter().enumerate() {
            cells
                .entry(Self::key(one.at, cell))
                .or_default()
                .push(index);
        }
        Self { cell, cells }
    }

    fn key(at: Vec2, cell: f32) -> (i32, i32) {
        ((at.x / cell).floor() as i32, (at.y / cell).floor() as i32)
    }

    /// The cell of `at` and the eight around it: where everyone within a cell's width of `at` is.
    fn around(at: Vec2, cell: f32) -> impl Iterator<Item = (i32, i32)> {
        let (cx, cy) = Self::key(at, cell);
        (-1..=1).flat_map(move |dx| (-1..=1).map(move |dy| (cx + dx, cy + dy)))
    }

    /// Calls `found` with every player within `radius` of `at`.
    fn near(&self, seen: &[Seen], at: Vec2, radius: f32, mut found: impl FnMut(usize)) {
        for key in Self::around(at, self.cell) {
            let Some(indices) = self.cells.get(&key) else {
                continue;
            };
            for &index in indices {
                if seen[index].at.distance_squared(at) <= radius * radius {
                    found(index);
                }
            }
        }
    }
}

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

/// The world's database thread: loads a player's position when it logs in, stores positions in
/// batches. One thread, so a position saved at logout is stored before the next login loads it.
#[derive(Resource)]
pub struct WorldStore {
    jobs: Option<Sender<StoreJob>>,
    loaded: Receiver<Loaded>,
    thread: Option<JoinHandle<()>>,
    /// Set by [`WorldStore::flush`]: saves the database refuses are then given up after a while.
    stopping: Arc<AtomicBool>,
}

impl WorldStore {
    fn start(pool: DbPool, writes: Histogram) -> Self {
        let (jobs, inbox) = crossbeam_channel::unbounded::<StoreJob>();
        let (answers, loaded) = crossbeam_channel::unbounded();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("world-store".into())
            .spawn(move || {
                while let Ok(first) = inbox.recv() {
                    // Saves queued together go in one transaction.
                    let mut saves = Vec::new();
                    for job in std::iter::once(first).chain(inbox.try_iter()) {
                        match job {
                            StoreJob::Save(batch) => saves.extend(batch),
                            StoreJob::Load { entity, account_id } => {
                                store_positions(&pool, &mut saves, &writes, &stop);
                                let saved = load_position(&pool, account_id);
                                let _ = answers.send(Loaded {
                                    entity,
                                    account_id,
                                    saved,
                                });
                            }
                        }
                    }
                    store_positions(&pool, &mut saves, &writes, &stop);
                }
            })
            .expect("spawning the world store thread");
        Self {
            jobs: Some(jobs),
            loaded,
            thread: Some(thread),
            stopping,
        }
    }

    fn send(&self, job: StoreJob) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Stores every position still queued, then stops the thread.
    pub fn flush(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.jobs = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the world store panicked");
        }
    }
}

impl Drop for WorldStore {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Stores `saves` (waiting for the database if it is away), then empties it.
fn store_positions(
    pool: &DbPool,
    saves: &mut Vec<SavedPosition>,
    writes: &Histogram,
    stopping: &AtomicBool,
) {
    if saves.is_empty() {
        return;
    }
    metrics::time(writes, || {
        db::write_until_done(pool, stopping, "positions", saves.len(), |conn| {
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
