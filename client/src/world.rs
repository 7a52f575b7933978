//! The world view: a field above the chat log where each player in view is a round dot with its name
//! (the local player highlighted) and each non-player character a square in [`theme::NOTICE`]'s amber,
//! drawn where the server's snapshots put it, interpolated a little behind the newest snapshot so that
//! 20 snapshots a second move smoothly; a click walks there. How each [`Kind`] looks is [`Look::of`]. What the server
//! says is kept in [`WorldView`] whatever the screen (the login answer and the first snapshots can arrive
//! in the same frame); the widgets show it.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use bevy::prelude::*;
use bevy::ui::RelativeCursorPosition;
use mmo::protocol::{ClientMessage, Kind, Pos, ServerMessage, Snapshot, WORLD_SIZE};

use crate::net::{FromServer, FromSnapshot, LinkEvent, ToServer};
use crate::screens::Screen;
use crate::theme::{self, Theme};

/// How far behind the newest snapshot players are drawn: two snapshot intervals at 20 Hz, so there is
/// nearly always a snapshot on each side of the moment drawn.
pub const INTERPOLATION_DELAY_MS: i64 = 100;
/// World units across the field: the view radius (100) on each side of the local player, and a margin.
pub const FIELD_SPAN: f32 = 260.0;
/// Positions kept per player (a second at 20 snapshots a second, more than interpolation needs).
const TRACK_LEN: usize = 20;

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<WorldView>()
        .add_systems(PreUpdate, collect.after(bevy_renet::RenetReceive))
        .add_systems(
            Update,
            (walk_on_click, draw_grid, draw_players)
                .chain()
                .run_if(in_state(Screen::Chat)),
        );
}

/// Where one player has been, as the server said: (server time in ms, position), oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Track(VecDeque<(i64, Vec2)>);

impl Track {
    fn push(&mut self, at_ms: i64, position: Vec2) {
        // A snapshot arriving late says nothing new.
        if self.0.back().is_some_and(|&(last, _)| at_ms < last) {
            return;
        }
        if self.0.len() == TRACK_LEN {
            self.0.pop_front();
        }
        self.0.push_back((at_ms, position));
    }

    /// The newest position known and its server time.
    pub fn newest(&self) -> Option<(i64, Vec2)> {
        self.0.back().copied()
    }

    /// Where the player was at `at_ms`: between the two positions around it, linearly; the oldest or
    /// newest known when `at_ms` is outside them (no guessing ahead).
    pub fn at(&self, at_ms: i64) -> Option<Vec2> {
        let (first, last) = (self.0.front()?, self.0.back()?);
        if at_ms <= first.0 {
            return Some(first.1);
        }
        if at_ms >= last.0 {
            return Some(last.1);
        }
        let after = self.0.iter().position(|&(t, _)| t >= at_ms)?;
        let (t1, p1) = self.0[after];
        let (t0, p0) = self.0[after.checked_sub(1)?];
        let span = (t1 - t0).max(1) as f32;
        Some(p0.lerp(p1, (at_ms - t0) as f32 / span))
    }
}

/// Something in view (another player, a character), or the local player.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub kind: Kind,
    pub name: String,
    pub track: Track,
}

/// Everything the client knows of the world.
#[derive(Resource, Debug, Default)]
pub struct WorldView {
    /// The local player's id, once the server placed it.
    pub me: Option<u32>,
    pub players: HashMap<u32, Seen>,
    /// Server clock minus local clock (ms), from the snapshots: the smallest apparent delay seen.
    clock_offset: Option<i64>,
    newest_seq: Option<u32>,
}

impl WorldView {
    /// Takes in a message on the reliable channel.
    pub fn apply(&mut self, message: &ServerMessage, local_ms: i64) {
        let now = self.server_ms(local_ms);
        match message {
            ServerMessage::LoggedIn { .. } => *self = Self::default(),
            ServerMessage::Spawned { id, at } => {
                self.me = Some(*id);
                self.see(*id, Kind::Player, String::new(), now, *at);
            }
            ServerMessage::EnteredView { id, kind, name, at } => {
                self.see(*id, *kind, name.clone(), now, *at)
            }
            ServerMessage::LeftView { id } => {
                self.players.remove(id);
            }
            _ => {}
        }
    }

    /// Takes in a snapshot (late ones only add what they know of players seen since).
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot, local_ms: i64) {
        let offset = snapshot.sent_at_ms as i64 - local_ms;
        // The smallest delay seen is the best estimate of the clocks' difference.
        self.clock_offset = Some(self.clock_offset.map_or(offset, |known| known.max(offset)));
        if self.newest_seq.is_none_or(|newest| snapshot.seq > newest) {
            self.newest_seq = Some(snapshot.seq);
        }
        for (id, at) in &snapshot.positions {
            // Only players announced (Spawned/EnteredView) are drawn: a snapshot may overtake them.
            if let Some(seen) = self.players.get_mut(id) {
                seen.track.push(snapshot.sent_at_ms as i64, position(*at));
            }
        }
    }

    /// The server's clock now, as far as the snapshots tell.
    pub fn server_ms(&self, local_ms: i64) -> i64 {
        local_ms + self.clock_offset.unwrap_or(0)
    }

    /// Where to draw player `id` now: [`INTERPOLATION_DELAY_MS`] behind the server's clock.
    pub fn draw_at(&self, id: u32, local_ms: i64) -> Option<Vec2> {
        let seen = self.players.get(&id)?;
        seen.track
            .at(self.server_ms(local_ms) - INTERPOLATION_DELAY_MS)
    }

    fn see(&mut self, id: u32, kind: Kind, name: String, now: i64, at: Pos) {
        let seen = self.players.entry(id).or_insert_with(|| Seen {
            kind,
            name: name.clone(),
            track: Track::default(),
        });
        if !name.is_empty() {
            seen.name = name;
        }
        // Drawn there from now on (placed back in time, so it does not slide in from nowhere).
        seen.track.push(now - INTERPOLATION_DELAY_MS, position(at));
    }
}

fn position(at: Pos) -> Vec2 {
    Vec2::new(at.x(), at.y())
}

/// The local clock in ms since the Unix epoch.
pub fn local_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn collect(
    mut view: ResMut<WorldView>,
    mut messages: MessageReader<FromServer>,
    mut snapshots: MessageReader<FromSnapshot>,
    mut link: MessageReader<LinkEvent>,
) {
    let now = local_ms();
    if link.read().any(|event| matches!(event, LinkEvent::Lost(_))) {
        *view = WorldView::default();
    }
    for FromServer(message) in messages.read() {
        view.apply(message, now);
    }
    for FromSnapshot(snapshot) in snapshots.read() {
        view.apply_snapshot(snapshot, now);
    }
}

/// The field's node (players are drawn in it).
#[derive(Component)]
pub struct WorldField;

/// The dot and name of player `.0`.
#[derive(Component)]
struct Marker(u32);

/// The field: spawned by the chatbox above its log.
pub fn spawn_field(commands: &mut Commands) -> Entity {
    commands
        .spawn((
            WorldField,
            Node {
                width: percent(100),
                height: px(300),
                flex_shrink: 0.0,
                overflow: Overflow::clip(),
                ..default()
            },
            BackgroundColor(Color::srgb(0.16, 0.24, 0.18)),
            Interaction::default(),
            RelativeCursorPosition::default(),
        ))
        .with_children(|field| {
            // First children, so the players' markers (added later) are drawn over them.
            for vertical in [true, false] {
                for _ in 0..GRID_LINES {
                    field.spawn((
                        GridLine { vertical },
                        Node {
                            position_type: PositionType::Absolute,
                            display: Display::None,
                            ..default()
                        },
                        BackgroundColor(GRID_COLOUR),
                    ));
                }
            }
        })
        .id()
}

/// World units between two lines of the field's grid (it shows the local player walking, too: the
/// player stays in the middle and the ground moves).
pub const GRID_STEP: f32 = 50.0;
/// Grid lines kept each way: enough for a field 8 times wider than high.
const GRID_LINES: usize = 48;
const GRID_COLOUR: Color = Color::srgba(1.0, 1.0, 1.0, 0.07);

/// One of the field's grid lines (vertical: at a constant x).
#[derive(Component)]
struct GridLine {
    vertical: bool,
}

/// Where the grid lines are, in world units along one axis, for a field showing `centre ± half`: every
/// [`GRID_STEP`], inside the world.
pub fn grid_lines(centre: f32, half: f32) -> impl Iterator<Item = f32> {
    let first = ((centre - half).max(0.0) / GRID_STEP).ceil() as i32;
    let last = ((centre + half).min(WORLD_SIZE) / GRID_STEP).floor() as i32;
    (first..=last).map(|line| line as f32 * GRID_STEP)
}

/// Places the grid lines around the local player (nothing before it is placed).
fn draw_grid(
    view: Res<WorldView>,
    fields: Query<&ComputedNode, With<WorldField>>,
    mut lines: Query<(&GridLine, &mut Node)>,
) {
    let Ok(node) = fields.single() else {
        return;
    };
    let size = node.size() * node.inverse_scale_factor();
    let centre = view.me.and_then(|me| view.draw_at(me, local_ms()));
    let scale = size.x.min(size.y).max(1.0) / FIELD_SPAN;
    let half = size / 2.0 / scale;
    let mut xs = centre.into_iter().flat_map(|c| grid_lines(c.x, half.x));
    let mut ys = centre.into_iter().flat_map(|c| grid_lines(c.y, half.y));
    for (line, mut style) in &mut lines {
        let (spot, offset) = if line.vertical {
            (xs.next(), centre.map_or(0.0, |c| c.x))
        } else {
            (ys.next(), centre.map_or(0.0, |c| c.y))
        };
        let Some(spot) = spot else {
            style.display = Display::None;
            continue;
        };
        let pixel = (spot - offset) * scale;
        style.display = Display::Flex;
        if line.vertical {
            style.left = px(pixel + size.x / 2.0);
            style.top = px(0);
            style.width = px(1);
            style.height = percent(100);
        } else {
            style.top = px(pixel + size.y / 2.0);
            style.left = px(0);
            style.height = px(1);
            style.width = percent(100);
        }
    }
}

/// A click (or tap) on the field walks there.
fn walk_on_click(
    view: Res<WorldView>,
    fields: Query<(&Interaction, &RelativeCursorPosition, &ComputedNode), Changed<Interaction>>,
    mut outbox: MessageWriter<ToServer>,
) {
    let now = local_ms();
    for (interaction, cursor, node) in &fields {
        if *interaction != Interaction::Pressed {
            continue;
        }
        let (Some(me), Some(normalized)) = (view.me, cursor.normalized) else {
            continue;
        };
        let Some(centre) = view.draw_at(me, now) else {
            continue;
        };
        let target = centre + field_offset(normalized, node.size());
        outbox.write(ToServer(ClientMessage::MoveTo {
            x: target.x,
            y: target.y,
        }));
    }
}

/// World units from the field's centre for a point given as the field's normalized position
/// ((-0.5, -0.5) top-left): [`FIELD_SPAN`] across the field's shorter side, y pointing down as the
/// world's does.
pub fn field_offset(normalized: Vec2, size: Vec2) -> Vec2 {
    let scale = FIELD_SPAN / size.x.min(size.y).max(1.0);
    normalized * size * scale
}

/// Moves, adds and removes the players' markers to match the view, centred on the local player.
fn draw_players(
    mut commands: Commands,
    view: Res<WorldView>,
    theme: Res<Theme>,
    fields: Query<(Entity, &ComputedNode), With<WorldField>>,
    mut markers: Query<(Entity, &Marker, &mut Node)>,
) {
    let Ok((field, node)) = fields.single() else {
        return;
    };
    let now = local_ms();
    let size = node.size() * node.inverse_scale_factor();
    let centre = view.me.and_then(|me| view.draw_at(me, now));
    let scale = size.x.min(size.y).max(1.0) / FIELD_SPAN;
    let place = |at: Vec2| {
        let centre = centre.unwrap_or(at);
        (at - centre) * scale + size / 2.0
    };
    let mut drawn = HashMap::new();
    for (entity, marker, mut style) in &mut markers {
        match view.draw_at(marker.0, now) {
            Some(at) => {
                let spot = place(at);
                style.left = px(spot.x - DOT / 2.0);
                style.top = px(spot.y - DOT / 2.0);
                drawn.insert(marker.0, entity);
            }
            None => commands.entity(entity).despawn(),
        }
    }
    for (&id, seen) in &view.players {
        if drawn.contains_key(&id) {
            continue;
        }
        let Some(at) = view.draw_at(id, now) else {
            continue;
        };
        let spot = place(at);
        let mine = view.me == Some(id);
        let look = Look::of(seen.kind, mine);
        let label = if mine { "you" } else { seen.name.as_str() };
        let marker = commands
            .spawn((
                Marker(id),
                Node {
                    position_type: PositionType::Absolute,
                    left: px(spot.x - DOT / 2.0),
                    top: px(spot.y - DOT / 2.0),
                    flex_direction: FlexDirection::Row,
                    column_gap: px(4),
                    align_items: AlignItems::Center,
                    ..default()
                },
                children![
                    (
                        Node {
                            width: px(DOT),
                            height: px(DOT),
                            border_radius: look.corners,
                            ..default()
                        },
                        BackgroundColor(look.colour),
                    ),
                    theme.text(label, 13.0, look.colour),
                ],
            ))
            .id();
        commands.entity(field).add_child(marker);
    }
}

/// A player's dot, in pixels.
const DOT: f32 = 10.0;

/// How a kind of thing is drawn on the field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look {
    pub colour: Color,
    /// Round for players, square for characters.
    pub corners: BorderRadius,
}

impl Look {
    /// The look of a `kind` (`mine`: the local player). A new kind of thing gets its look here.
    pub fn of(kind: Kind, mine: bool) -> Self {
        match (kind, mine) {
            (_, true) => Self {
                colour: theme::FIELD_FOCUS,
                corners: BorderRadius::MAX,
            },
            (Kind::Player, false) => Self {
                colour: theme::TEXT,
                corners: BorderRadius::MAX,
            },
            (Kind::Npc, false) => Self {
                colour: theme::NOTICE,
                corners: BorderRadius::all(px(2)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f32, y: f32) -> Pos {
        Pos::quantize(x, y)
    }

    #[test]
    fn a_track_interpolates_between_snapshots_and_never_guesses_ahead() {
        let mut track = Track::default();
        track.push(1_000, Vec2::new(0.0, 0.0));
        track.push(1_050, Vec2::new(10.0, 0.0));
        assert_eq!(track.at(900), Some(Vec2::new(0.0, 0.0)));
        assert_eq!(track.at(1_025), Some(Vec2::new(5.0, 0.0)));
        assert_eq!(track.at(2_000), Some(Vec2::new(10.0, 0.0)));
        track.push(1_020, Vec2::new(99.0, 0.0)); // late: ignored
        assert_eq!(track.at(1_050), Some(Vec2::new(10.0, 0.0)));
    }

    #[test]
    fn the_view_follows_what_the_server_says() {
        let mut view = WorldView::default();
        view.apply(
            &ServerMessage::Spawned {
                id: 1,
                at: at(100.0, 100.0),
            },
            0,
        );
        view.apply(
            &ServerMessage::EnteredView {
                id: 2,
                kind: Kind::Player,
                name: "Bob".into(),
                at: at(120.0, 100.0),
            },
            0,
        );
        // A snapshot for a player never announced is not drawn.
        let snapshot = |seq, sent_at_ms, x| Snapshot {
            seq,
            sent_at_ms,
            positions: vec![(2, at(x, 100.0)), (9, at(1.0, 1.0))],
        };
        view.apply_snapshot(&snapshot(1, 10_000, 130.0), 10_000);
        view.apply_snapshot(&snapshot(2, 10_050, 140.0), 10_050);
        assert_eq!(view.me, Some(1));
        assert!(!view.players.contains_key(&9));
        assert_eq!(view.players[&2].name, "Bob");
        // 100 ms behind the newest: halfway between the two snapshots at local 10,125.
        assert_eq!(view.draw_at(2, 10_125), Some(Vec2::new(135.0, 100.0)));
        view.apply(&ServerMessage::LeftView { id: 2 }, 10_200);
        assert_eq!(view.draw_at(2, 10_200), None);
    }

    #[test]
    fn grid_lines_fall_every_step_inside_the_world() {
        let lines = |centre, half| grid_lines(centre, half).collect::<Vec<_>>();
        assert_eq!(
            lines(1_024.0, 130.0),
            [900.0, 950.0, 1_000.0, 1_050.0, 1_100.0, 1_150.0]
        );
        assert_eq!(lines(20.0, 100.0), [0.0, 50.0, 100.0]);
        assert_eq!(lines(2_040.0, 60.0), [2_000.0]);
    }

    #[test]
    fn a_click_maps_to_world_units_around_the_player() {
        let size = Vec2::new(600.0, 300.0);
        assert_eq!(field_offset(Vec2::ZERO, size), Vec2::ZERO);
        // The top-left corner of a 600 x 300 field: 260 units across its 300 px height.
        assert_eq!(
            field_offset(Vec2::new(-0.5, -0.5), size),
            Vec2::new(-260.0, -130.0)
        );
    }
}
