//! Non-player characters as players see them, with real clients over UDP: seen only in view (a far
//! player hears nothing of them), greeted only from near, and a plugin's command listed in `/help` by
//! itself, kept across a restart.

mod common;

use std::time::Duration;

use bevy::prelude::*;
use common::*;
use mmo::commands::{AppCommands, Call, CommandSpec, Needs, Outcome, answer};
use mmo::npc::{GREET_DISTANCE, VILLAGE, home};
use mmo::protocol::{Kind, Pos, ServerMessage};

/// A server with `npcs` characters; players walk fast and see 100 units around them.
fn village(npcs: u16) -> TestServer {
    TestServer::start_with(move |config| {
        config.chat_burst = 1000;
        config.chat_per_second = 1000.0;
        config.move_speed = 1_000.0;
        config.view_radius = 100.0;
        config.npcs = npcs;
    })
}

fn pos(at: Vec2) -> Pos {
    Pos::quantize(at.x, at.y)
}

/// A character entering view: its id and name.
fn character_entered(message: &ServerMessage) -> Option<(u32, String)> {
    match message {
        ServerMessage::EnteredView {
            id,
            kind: Kind::Npc,
            name,
            ..
        } => Some((*id, name.clone())),
        _ => None,
    }
}

/// The characters `client` was told entered its view so far.
fn characters_in_view(client: &TestClient) -> Vec<(u32, String)> {
    client
        .received
        .iter()
        .filter_map(character_entered)
        .collect()
}

#[test]
fn characters_are_seen_only_by_players_near_them() {
    let server = village(3);
    let mut alice = server.player("Alice");
    let mut bob = server.player("Bob");
    alice.spawned();
    bob.spawned();
    pump_for(&mut [&mut alice, &mut bob], Duration::from_millis(500));
    assert_eq!(
        characters_in_view(&alice),
        [],
        "none is in view of the spawn point"
    );

    // Alice walks into the village: all three come into view, and walk while she watches.
    alice.walk_to(pos(VILLAGE));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(alice.expect("a character entering view", character_entered));
    }
    let mut names: Vec<&str> = seen.iter().map(|(_, name)| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Mira", "Oswin", "Talia"]);
    let ids: Vec<u32> = seen.iter().map(|(id, _)| *id).collect();
    let deadline = std::time::Instant::now() + PATIENCE;
    while !ids.iter().any(|id| alice.last_seen(*id).is_some()) {
        assert!(std::time::Instant::now() < deadline, "nobody wandered");
        alice.pump();
        std::thread::sleep(Duration::from_millis(5));
    }

    // Bob, who stayed at the spawn point, heard nothing of them.
    bob.pump();
    assert_eq!(characters_in_view(&bob), []);
    assert!(
        ids.iter().all(|id| bob.last_seen(*id).is_none()),
        "no snapshot names a character"
    );

    // Alice walks away: they leave her view, and she hears of them no more.
    alice.walk_to(pos(VILLAGE - Vec2::new(400.0, 0.0)));
    let mut left = Vec::new();
    while left.len() < ids.len() {
        left.push(alice.expect("a character leaving view", |m| match m {
            ServerMessage::LeftView { id } if ids.contains(id) => Some(*id),
            _ => None,
        }));
    }
    alice.snapshots.clear();
    pump_for(&mut [&mut alice], Duration::from_millis(600));
    assert!(ids.iter().all(|id| alice.last_seen(*id).is_none()));
}

#[test]
fn a_character_answers_a_greeting_only_from_near() {
    let server = village(2);
    let mut alice = server.player("Alice");
    assert_eq!(
        alice.command("greet Mira"),
        Err("Mira is too far away to hear you".into())
    );
    assert_eq!(
        alice.command("greet Nobody"),
        Err("There is nobody called Nobody here".into())
    );
    assert_eq!(
        alice.command("greet"),
        Err("Usage: greet NAME: say hello to a character standing near you".into())
    );

    // Next to her home: she wanders at most 16 units from it, so within greeting distance.
    let beside = home(0) + Vec2::new(GREET_DISTANCE - 16.0 - 2.0, 0.0);
    alice.walk_to(pos(beside));
    assert_eq!(
        alice.command("GREET mira"),
        Ok("Mira says: \"Well met, Alice!\"".into())
    );
}

/// A game's own command, added the way `src/npc.rs` adds `greet`.
fn dance(In(call): In<Call>) -> Outcome {
    answer(format!("{} dances", call.actor.name()))
}

#[test]
fn a_plugins_command_is_listed_in_help_by_itself_and_kept_across_a_restart() {
    let mut server = TestServer::start_extended(
        |config| {
            config.chat_burst = 1000;
            config.chat_per_second = 1000.0;
        },
        |app| {
            app.add_command(
                CommandSpec::new("dance", Needs::Anyone, "dance: show your moves")
                    .aliases(&["jig"]),
                dance,
            );
        },
    );
    let mut alice = server.player("Alice");
    let help = alice.command("help").unwrap();
    for line in [
        "  /greet NAME: say hello to a character standing near you",
        "  /dance: show your moves",
    ] {
        assert!(help.lines().any(|l| l == line), "{line:?} in {help}");
    }
    assert_eq!(alice.command("jig"), Ok("Alice dances".into()));
    drop(alice);

    server.restart();
    let mut alice = server.login_again("Alice");
    assert_eq!(alice.command("dance"), Ok("Alice dances".into()));
}
