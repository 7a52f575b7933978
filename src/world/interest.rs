//! Interest management: who hears of what stands in the world. Anything with a [`Position`] and a
//! [`Visible`] marker (a player, a non-player character, an item) gets a [`WorldId`] and is seen by the
//! players within view radius: "entered view" (with its kind and name) and "left view" on the reliable
//! channel, its position in snapshots on the unreliable one while it moves. Who is near whom comes from a
//! grid of cells one view radius wide, so a crowded server spends viewers × neighbours, not viewers ×
//! everything; only viewers near a cell where something changed are looked at in a pass, so a crowd (or a
//! non-player character nobody is near) standing still costs nothing; each viewer is told of at most
//! `--max-in-view` others (those it knows keep their place, the nearest others fill the rest).
//!
//! Snapshots are staggered: with `--snapshot-hz` 20 at 60 ticks a second, each viewer hears every third
//! tick and a third of the viewers are served each tick (by world id), so no tick carries the whole
//! pass (1,000 walkers made every third tick 20 ms long). What happened since a viewer's last snapshot
//! is what happened in the last [`WorldRules::snapshot_ticks`] ticks: the cells left and departed are
//! kept that long.
//!
//! A viewer is a player placed in the world: it has a [`Sight`] (the world's store gives it one, with
//! `Visible`, when the player enters the world) and is told its own id by [`ServerMessage::Spawned`].

use std::collections::{HashMap, HashSet, VecDeque};

use bevy::ecs::entity::EntityHashMap;
use bevy::prelude::*;
use bevy_renet::renet::{Bytes, ClientId};

use super::{Position, WorldRules};
use crate::net::{self, Connection, Outbox};
use crate::protocol::{Kind, Pos, SNAPSHOT_CHANNEL, ServerMessage, Snapshot};
use crate::schedule::ServerSystems;
use crate::time::now_ms;

/// Snapshots an entity's position keeps appearing in after it stops moving, so that one lost snapshot
/// does not leave it drawn at a stale spot.
const REPEATS: u32 = 3;
/// Positions in one snapshot message at most: 90 of at most 9 bytes each, with the header, keeps it
/// under [`crate::protocol::MAX_SNAPSHOT_BYTES`] and in one datagram.
const PER_SNAPSHOT: usize = 90;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<WorldIds>()
        .init_resource::<Departed>()
        .init_resource::<SnapshotClock>()
        .add_systems(Update, send_snapshots.in_set(ServerSystems::Replication))
        .add_observer(appear)
        .add_observer(disappear);
}

/// What players see of an entity that stands in the world: its kind and name, as
/// [`ServerMessage::EnteredView`] tells them. With a [`Position`], it is seen by every player in view.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub struct Visible {
    pub kind: Kind,
    pub name: String,
}

/// The id snapshots name a visible entity by (stable while it is visible).
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldId(pub u32);

/// The entities this player has been told are in view, by entity, with their ids.
#[derive(Component, Debug, Default)]
pub struct Sight {
    in_view: EntityHashMap<u32>,
}

/// An entity's position as last seen by the snapshot pass, and for how many ticks it has not changed.
#[derive(Component, Debug)]
struct Motion {
    sent: Pos,
    quiet: u32,
}

/// Where visible entities that disappeared since the last snapshot pass stood: viewers near there are
/// told.
#[derive(Resource, Debug, Default)]
struct Departed(Vec<Vec2>);

/// The next [`WorldId`].
#[derive(Resource, Debug, Default)]
struct WorldIds(u32);

/// The snapshot pass's tick counter (snapshots' sequence number, and whose turn it is), and the cells
/// where something left or departed in each of the last [`WorldRules::snapshot_ticks`] ticks.
#[derive(Resource, Debug, Default)]
struct SnapshotClock {
    seq: u32,
    left: VecDeque<HashSet<(i32, i32)>>,
}

/// An entity became visible: it gets its id; a player (a viewer) is told its own id and position.
fn appear(
    add: On<Add, Visible>,
    mut commands: Commands,
    mut ids: ResMut<WorldIds>,
    entities: Query<(&Position, Option<&Connection>, Has<Sight>)>,
    mut server: Outbox,
) {
    let Ok((position, connection, viewer)) = entities.get(add.entity) else {
        warn!(entity = ?add.entity, "a Visible entity without a Position is not seen");
        return;
    };
    ids.0 = ids.0.wrapping_add(1);
    let at = Pos::quantize(position.0.x, position.0.y);
    commands
        .entity(add.entity)
        .insert((WorldId(ids.0), Motion { sent: at, quiet: 0 }));
    if let (Some(connection), true) = (connection, viewer) {
        net::send(
            &mut server,
            connection.client_id,
            &ServerMessage::Spawned { id: ids.0, at },
        );
    }
}

/// An entity stopped being visible (left the world, despawned): those who saw it are told next pass.
fn disappear(
    remove: On<Remove, Visible>,
    mut commands: Commands,
    positions: Query<&Position>,
    mut departed: ResMut<Departed>,
) {
    if let Ok(position) = positions.get(remove.entity) {
        departed.0.push(position.0);
    }
    if let Ok(mut entity) = commands.get_entity(remove.entity) {
        entity.try_remove::<(WorldId, Motion)>();
    }
}

/// One visible entity as the snapshot pass sees it.
struct Seen {
    entity: Entity,
    id: u32,
    at: Vec2,
    pos: Pos,
    /// Its position goes into snapshots (it moved lately).
    fresh: bool,
}

/// Every tick, for the viewers whose turn it is (one group in [`WorldRules::snapshot_ticks`]): tells
/// each what entered and left its view, and sends it the positions that changed lately among itself
/// and what is in view.
fn send_snapshots(
    rules: Res<WorldRules>,
    mut clock: ResMut<SnapshotClock>,
    mut server: Outbox,
    mut movers: Query<(Entity, &WorldId, &Position, &mut Motion)>,
    visible: Query<&'static Visible>,
    mut viewers: Query<(Entity, &Connection, &WorldId, &mut Sight)>,
    mut departed: ResMut<Departed>,
) {
    clock.seq = clock.seq.wrapping_add(1);
    let turns = rules.snapshot_ticks.max(1);
    let turn = clock.seq % turns;
    let cell = rules.view_radius;
    let mut left: HashSet<(i32, i32)> =
        departed.0.drain(..).map(|at| Grid::key(at, cell)).collect();
    let mut changed = HashSet::new();
    let seen = look(&mut movers, cell, turns, &mut left, &mut changed);
    // What left a cell is news for every group once: kept for a round of turns.
    if clock.left.len() == turns as usize {
        clock.left.pop_front();
    }
    clock.left.push_back(left);
    changed.extend(clock.left.iter().flatten().copied());
    if changed.is_empty() {
        return;
    }
    let pass = Pass {
        rules: &rules,
        grid: Grid::new(&seen, cell),
        by_entity: seen
            .iter()
            .enumerate()
            .map(|(index, one)| (one.entity, index))
            .collect(),
        seen: &seen,
        changed: &changed,
        snapshot: (clock.seq, now_ms()),
        visible: &visible,
    };
    // `near_to[i] == viewer`: entity `i` is near the viewer numbered `viewer` (numbers start at 1).
    let mut near_to = vec![0u32; seen.len()];
    let theirs = viewers
        .iter_mut()
        .filter(|(_, _, own_id, _)| own_id.0 % turns == turn);
    for (viewer, (entity, connection, own_id, mut sight)) in (1..).zip(theirs) {
        let to = (connection.client_id, own_id.0);
        pass.tell(&mut server, entity, to, &mut sight, viewer, &mut near_to);
    }
}

/// Every visible entity where it stands. Marks in `left` the cells something moved out of this tick,
/// and in `changed` those where something moved in the last `turns` × [`REPEATS`] ticks: only viewers
/// near those can have anything new to hear.
fn look(
    movers: &mut Query<(Entity, &WorldId, &Position, &mut Motion)>,
    cell: f32,
    turns: u32,
    left: &mut HashSet<(i32, i32)>,
    changed: &mut HashSet<(i32, i32)>,
) -> Vec<Seen> {
    let mut seen = Vec::new();
    for (entity, id, position, mut motion) in movers {
        let pos = Pos::quantize(position.0.x, position.0.y);
        if pos == motion.sent {
            motion.quiet = motion.quiet.saturating_add(1);
        } else {
            left.insert(Grid::key(Vec2::new(motion.sent.x(), motion.sent.y()), cell));
            motion.sent = pos;
            motion.quiet = 0;
        }
        // In each viewer's next REPEATS snapshots after it stops.
        let fresh = motion.quiet < REPEATS * turns;
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
    seen
}

/// One snapshot pass: what every viewer is told is computed from this.
struct Pass<'a, 'w, 's> {
    rules: &'a WorldRules,
    grid: Grid,
    by_entity: EntityHashMap<usize>,
    seen: &'a [Seen],
    changed: &'a HashSet<(i32, i32)>,
    /// The snapshots' sequence number and server time.
    snapshot: (u32, u64),
    visible: &'a Query<'w, 's, &'static Visible>,
}

impl Pass<'_, '_, '_> {
    /// Tells the viewer `entity` (client and own id `to`) who left and entered its view and what moved.
    fn tell(
        &self,
        server: &mut Outbox,
        entity: Entity,
        (client_id, own_id): (ClientId, u32),
        sight: &mut Sight,
        viewer: u32,
        near_to: &mut [u32],
    ) {
        let Some(&me) = self.by_entity.get(&entity) else {
            return;
        };
        let cell = self.rules.view_radius;
        if !Grid::around(self.seen[me].at, cell).any(|key| self.changed.contains(&key)) {
            return;
        }
        let mut near = Vec::new();
        let radius = self.rules.view_radius;
        self.grid
            .near(self.seen, self.seen[me].at, radius, |index| {
                if index != me {
                    near.push(index);
                }
            });
        if near.len() > self.rules.max_in_view {
            crowd_cut(&mut near, self.seen, me, sight, self.rules.max_in_view);
        }
        for &index in &near {
            near_to[index] = viewer;
        }
        // Who left: known before, not near now (walked away, logged out, disconnected, despawned).
        sight.in_view.retain(|known, id| {
            let stays = self
                .by_entity
                .get(known)
                .is_some_and(|&index| near_to[index] == viewer);
            if !stays {
                net::send(server, client_id, &ServerMessage::LeftView { id: *id });
            }
            stays
        });
        let mut positions = Vec::new();
        if self.seen[me].fresh {
            positions.push((own_id, self.seen[me].pos));
        }
        for &index in &near {
            let other = &self.seen[index];
            if sight.in_view.insert(other.entity, other.id).is_none() {
                let (kind, name) = self
                    .visible
                    .get(other.entity)
                    .map_or((Kind::Player, String::new()), |v| (v.kind, v.name.clone()));
                let entered = ServerMessage::EnteredView {
                    id: other.id,
                    kind,
                    name,
                    at: other.pos,
                };
                net::send(server, client_id, &entered);
            } else if other.fresh {
                positions.push((other.id, other.pos));
            }
        }
        let (seq, sent_at_ms) = self.snapshot;
        for chunk in positions.chunks(PER_SNAPSHOT) {
            let snapshot = Snapshot {
                seq,
                sent_at_ms,
                positions: chunk.to_vec(),
            };
            server.send_message(client_id, SNAPSHOT_CHANNEL, Bytes::from(snapshot.encode()));
        }
    }
}

/// In a crowd, who of `near` (the entities within view of `seen[me]`) it is told of: those it already
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

/// Visible entities by grid cell, a cell one view radius wide: everything within a viewer's view is in
/// its own cell or one of the eight around it.
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

    /// The cell of `at` and the eight around it: where everything within a cell's width of `at` is.
    fn around(at: Vec2, cell: f32) -> impl Iterator<Item = (i32, i32)> {
        let (cx, cy) = Self::key(at, cell);
        (-1..=1).flat_map(move |dx| (-1..=1).map(move |dy| (cx + dx, cy + dy)))
    }

    /// Calls `found` with every entity within `radius` of `at`.
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

/// Ticks between two snapshots to one viewer for `snapshot_hz` snapshots a second at `tick_hz` ticks
/// a second (at least one: a viewer cannot hear more than once a tick).
pub fn snapshot_ticks(tick_hz: u16, snapshot_hz: u16) -> u32 {
    (f64::from(tick_hz) / f64::from(snapshot_hz.max(1)))
        .round()
        .max(1.0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(at: &[(f32, f32)]) -> Vec<Seen> {
        at.iter()
            .enumerate()
            .map(|(i, &(x, y))| Seen {
                entity: Entity::from_raw_u32(i as u32 + 1).unwrap(),
                id: i as u32,
                at: Vec2::new(x, y),
                pos: Pos::quantize(x, y),
                fresh: true,
            })
            .collect()
    }

    #[test]
    fn the_grid_finds_what_is_within_the_radius_and_nothing_beyond() {
        let all = seen(&[
            (150.0, 150.0),
            (240.0, 150.0),
            (260.0, 150.0),
            (150.0, 900.0),
        ]);
        let grid = Grid::new(&all, 100.0);
        let mut found = Vec::new();
        grid.near(&all, Vec2::new(150.0, 150.0), 100.0, |i| found.push(i));
        found.sort_unstable();
        assert_eq!(
            found,
            [0, 1],
            "the one 110 away and the far one are out of view"
        );
    }

    #[test]
    fn viewers_are_served_in_groups_of_ticks_between_snapshots() {
        assert_eq!(
            snapshot_ticks(60, 20),
            3,
            "every third tick, a third a tick"
        );
        assert_eq!(snapshot_ticks(60, 60), 1);
        assert_eq!(snapshot_ticks(60, 240), 1, "at most once a tick");
        assert_eq!(snapshot_ticks(30, 20), 2, "rounded");
    }

    #[test]
    fn in_a_crowd_the_known_stay_and_the_nearest_fill_the_rest() {
        let all = seen(&[
            (0.0, 0.0),
            (50.0, 0.0),
            (10.0, 0.0),
            (20.0, 0.0),
            (30.0, 0.0),
        ]);
        let mut sight = Sight::default();
        sight.in_view.insert(all[1].entity, 1);
        let mut near = vec![1, 2, 3, 4];
        crowd_cut(&mut near, &all, 0, &sight, 2);
        assert_eq!(near, [1, 2], "the far one it knows, then the nearest");
    }
}
