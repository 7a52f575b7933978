//! Non-player characters: `--npcs N` characters the server spawns in a village [`VILLAGE`] east of the
//! spawn point (out of view of a player who just appeared: walk east to meet them), each wandering near
//! its home while a player is near enough to see it (and standing still, costing nothing, while nobody
//! is), and answering `/greet NAME` from a player standing close by.
//!
//! The second model plugin, beside `crate::world`: everything of the feature is in this file. It puts
//! entities in the world with a [`Position`] and a [`Visible`] marker, so interest management shows
//! them to the players in view (a far player hears nothing of them); it moves them with [`Walking`] in
//! the [`ServerSystems::Simulation`] set; and it registers its command, so `/help` lists it. The rule
//! (when to wander, and where) is a plain function with time and chance passed in, unit-tested.

use std::time::Duration;

use bevy::prelude::*;
use rand::Rng;

use crate::commands::{Actor, AppCommands, Args, Call, CommandSpec, Needs, Outcome, answer};
use crate::config::Config;
use crate::players::Player;
use crate::protocol::Kind;
use crate::schedule::ServerSystems;
use crate::world::{Position, SPAWN, Visible, Walking, WorldRules};

/// Where the characters live: 220 units east of the spawn point, so that none is in view of a player
/// standing where players appear (within 32 units of it, seeing 100).
pub const VILLAGE: Vec2 = Vec2::new(SPAWN.x + 220.0, SPAWN.y);
/// How far from its home a character wanders, in world units.
pub const WANDER_RADIUS: f32 = 16.0;
/// How close a player must stand to greet a character, in world units.
pub const GREET_DISTANCE: f32 = 30.0;
/// A character rests between two walks for this long at least, and at most twice as long.
const REST: Duration = Duration::from_secs(2);

/// The first names characters get (then `Mira_2` and so on).
const NAMES: [&str; 8] = [
    "Mira", "Oswin", "Talia", "Brannoc", "Edda", "Corwin", "Ysolde", "Fenwick",
];
/// What they answer, by character.
const GREETINGS: [&str; 4] = [
    "Well met, {}!",
    "Good day to you, {}.",
    "Ah, {}. Mind the road east, it floods.",
    "Hello, {}! Lovely weather for walking.",
];

pub(crate) fn plugin(app: &mut App) {
    let count = app.world().resource::<Config>().npcs;
    app.insert_resource(NpcCount(count))
        .add_systems(Startup, spawn_npcs)
        .add_systems(Update, wander.in_set(ServerSystems::Simulation))
        .add_command(
            CommandSpec::new(
                "greet",
                Needs::Anyone,
                "greet NAME: say hello to a character standing near you",
            ),
            greet,
        );
}

/// How many characters to spawn (`--npcs`).
#[derive(Resource, Debug, Clone, Copy)]
struct NpcCount(u16);

/// A non-player character: where it lives and when it may next walk.
#[derive(Component, Debug, Clone)]
pub struct Npc {
    pub home: Vec2,
    /// Which of [`GREETINGS`] it says.
    greeting: usize,
    /// Time left resting before it may walk again.
    rest: Duration,
}

/// The name of character number `index` (0-based).
fn name(index: usize) -> String {
    match index / NAMES.len() {
        0 => NAMES[index].to_owned(),
        round => format!("{}_{}", NAMES[index % NAMES.len()], round + 1),
    }
}

/// Where character number `index` lives: on a spiral around the [`VILLAGE`]'s centre (the golden angle
/// apart), the first eight within 28 units of it, any number spread evenly.
pub fn home(index: usize) -> Vec2 {
    let angle = index as f32 * 2.399_963;
    let radius = 10.0 + 6.5 * (index as f32).sqrt();
    VILLAGE + Vec2::new(angle.cos(), angle.sin()) * radius
}

fn spawn_npcs(mut commands: Commands, count: Res<NpcCount>) {
    for index in 0..usize::from(count.0) {
        let home = home(index);
        commands.spawn((
            Npc {
                home,
                greeting: index % GREETINGS.len(),
                rest: REST,
            },
            Position(home),
            Visible {
                kind: Kind::Npc,
                name: name(index),
            },
        ));
    }
    if count.0 > 0 {
        info!(npcs = count.0, "spawned non-player characters");
    }
}

/// Where a character goes next, if anywhere: once rested and only while a player is near enough to see
/// it, a spot within [`WANDER_RADIUS`] of home (`chance` in 0..1 twice: the direction and the distance).
/// Rested but unwatched, it rests again (so nobody near costs a look every [`REST`], not every tick).
fn next_walk(npc: &mut Npc, elapsed: Duration, watched: bool, chance: (f32, f32)) -> Option<Vec2> {
    npc.rest = npc.rest.saturating_sub(elapsed);
    if !npc.rest.is_zero() {
        return None;
    }
    npc.rest = REST + REST.mul_f32(chance.0);
    if !watched {
        return None;
    }
    let angle = chance.0 * std::f32::consts::TAU;
    let distance = chance.1.sqrt() * WANDER_RADIUS;
    Some(npc.home + Vec2::new(angle.cos(), angle.sin()) * distance)
}

/// Characters that have rested walk somewhere near home, if a player could see them do it.
fn wander(
    mut commands: Commands,
    time: Res<Time>,
    rules: Res<WorldRules>,
    mut npcs: Query<(Entity, &mut Npc), Without<Walking>>,
    players: Query<&Position, With<Player>>,
) {
    let mut rng = rand::rng();
    // Anyone within view of a spot its wander could reach.
    let sees = |home: Vec2| {
        let reach = rules.view_radius + WANDER_RADIUS;
        players
            .iter()
            .any(|at| at.0.distance_squared(home) <= reach * reach)
    };
    for (entity, mut npc) in &mut npcs {
        // Checked only once rested: a player near is a scan of the players, a few times a second.
        let rested = npc.rest <= time.delta();
        let watched = rested && sees(npc.home);
        let chance = (rng.random::<f32>(), rng.random::<f32>());
        if let Some(target) = next_walk(&mut npc, time.delta(), watched, chance) {
            commands.entity(entity).insert(Walking { target });
        }
    }
}

/// `greet NAME`: the character answers a player standing within [`GREET_DISTANCE`].
fn greet(
    In(call): In<Call>,
    npcs: Query<(&Npc, &Visible, &Position)>,
    positions: Query<&Position>,
) -> Outcome {
    let wanted = parse(call.args())?;
    let Actor::Player { entity, name, .. } = &call.actor else {
        return Err("Only players can greet".into());
    };
    let Some((npc, visible, at)) = npcs
        .iter()
        .find(|(_, visible, _)| visible.name.eq_ignore_ascii_case(&wanted))
    else {
        return Err(format!("There is nobody called {wanted} here"));
    };
    let Ok(me) = positions.get(*entity) else {
        return Err("You are not in the world yet".into());
    };
    if me.0.distance(at.0) > GREET_DISTANCE {
        return Err(format!("{} is too far away to hear you", visible.name));
    }
    let line = GREETINGS[npc.greeting].replace("{}", name);
    answer(format!("{} says: \"{line}\"", visible.name))
}

/// The name `greet` is about (a character's name has a player name's shape).
fn parse(mut args: Args) -> Result<String, String> {
    let name = args.name()?;
    args.end()?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_have_names_and_homes_in_the_village_out_of_view_of_the_spawn_point() {
        assert_eq!(name(0), "Mira");
        assert_eq!(name(8), "Mira_2");
        assert_eq!(name(17), "Oswin_3");
        for index in 0..100 {
            let home = home(index);
            assert!(crate::protocol::validate_username(&name(index)).is_ok());
            assert!(home.distance(VILLAGE) <= 10.0 + 6.5 * 10.0);
            for other in 0..index {
                assert!(
                    home.distance(super::home(other)) > 4.0,
                    "{index} and {other}"
                );
            }
        }
        // A player appears within 32 units of the spawn point on each axis and sees 100 around it.
        for index in 0..8 {
            let nearest_player = home(index).clamp(SPAWN - 32.0, SPAWN + 32.0);
            let closest = home(index).distance(nearest_player) - WANDER_RADIUS;
            assert!(
                closest > 100.0,
                "character {index} could be seen from the spawn point"
            );
        }
    }

    #[test]
    fn a_character_walks_only_when_rested_and_watched_and_stays_near_home() {
        let mut npc = Npc {
            home: Vec2::new(100.0, 100.0),
            greeting: 0,
            rest: REST,
        };
        let second = Duration::from_secs(1);
        assert_eq!(
            next_walk(&mut npc, second, true, (0.5, 0.5)),
            None,
            "resting"
        );
        assert_eq!(
            next_walk(&mut npc, second, false, (0.0, 0.5)),
            None,
            "nobody near"
        );
        assert_eq!(npc.rest, REST, "rests again before the next look");
        assert_eq!(
            next_walk(&mut npc, second, true, (0.5, 0.5)),
            None,
            "resting"
        );
        let target = next_walk(&mut npc, second, true, (0.25, 1.0)).expect("walks");
        assert!((target.distance(npc.home) - WANDER_RADIUS).abs() < 1e-3);
        assert!(npc.rest >= REST && npc.rest <= REST * 2, "rests again");
        assert_eq!(next_walk(&mut npc, second, true, (0.5, 0.5)), None);
    }

    #[test]
    fn greet_takes_one_name() {
        let usage = "greet NAME";
        assert_eq!(parse(Args::new("mira", usage)), Ok("mira".into()));
        assert_eq!(parse(Args::new("", usage)), Err("Usage: greet NAME".into()));
        assert_eq!(
            parse(Args::new("mira now", usage)),
            Err("Usage: greet NAME".into())
        );
    }
}
