//! The world as players see it: spawning, authoritative walking, who is in view, snapshots.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mmo::protocol::{ClientMessage, Pos, Request, ServerMessage, WORLD_SIZE};
use mmo::world::{NOT_A_PLACE, NOT_LOGGED_IN};

/// A server whose players walk `speed` units a second and see 100 units around them.
fn world(speed: f32) -> TestServer {
    TestServer::start_with(move |config| {
        config.chat_burst = 1000;
        config.chat_per_second = 1000.0;
        config.move_speed = speed;
        config.view_radius = 100.0;
    })
}

/// The id under which `name` entered `client`'s view (waits for it).
fn entered(client: &mut TestClient, name: &str) -> u32 {
    client.expect(&format!("{name} entering view"), |m| match m {
        ServerMessage::EnteredView { id, name: n, .. } if n == name => Some(*id),
        _ => None,
    })
}

fn distance(a: Pos, b: Pos) -> f32 {
    ((a.x() - b.x()).powi(2) + (a.y() - b.y()).powi(2)).sqrt()
}

#[test]
fn players_near_each_other_see_each_other_and_each_others_steps() {
    let server = world(200.0);
    let mut alice = server.player("Alice");
    let (alice_id, alice_at) = alice.spawned();
    let mut bob = server.player("Bob");
    let (bob_id, _) = bob.spawned();
    assert_ne!(alice_id, bob_id);
    assert_eq!(entered(&mut alice, "Bob"), bob_id);
    assert_eq!(entered(&mut bob, "Alice"), alice_id);

    let target = Pos::quantize(alice_at.x() + 40.0, alice_at.y() + 30.0);
    alice.send(&ClientMessage::MoveTo {
        x: target.x(),
        y: target.y(),
    });
    alice.wait_until_at(alice_id, target);
    bob.wait_until_at(alice_id, target);
}

#[test]
fn walking_takes_the_time_the_speed_says_however_often_a_player_asks() {
    let speed = 100.0;
    let server = world(speed);
    let mut alice = server.player("Alice");
    let (id, start) = alice.spawned();
    let target = Pos::quantize(start.x() + 200.0, start.y());
    let asked = Instant::now();
    // A cheating client repeats its target every frame: it walks no faster.
    while alice.last_seen(id) != Some(target) {
        alice.send(&ClientMessage::MoveTo {
            x: target.x(),
            y: target.y(),
        });
        if let Some(at) = alice.last_seen(id) {
            let walked = distance(start, at);
            // The server walks in whole ticks: the one that takes the target in walks its full
            // length (1/60 s), so it may be one tick's walk ahead of the wall clock here.
            let allowed = speed * (asked.elapsed().as_secs_f32() + 1.0 / 60.0) + 1.0;
            assert!(
                walked <= allowed,
                "walked {walked} in {:?}",
                asked.elapsed()
            );
        }
        assert!(asked.elapsed() < PATIENCE, "never arrived");
        std::thread::sleep(Duration::from_millis(16));
    }
    // 200 units at 100 a second: not before 2 s (less a snapshot interval of rounding).
    assert!(
        asked.elapsed() >= Duration::from_millis(1_900),
        "arrived after {:?}",
        asked.elapsed()
    );
}

#[test]
fn targets_outside_the_world_are_clamped_and_non_numbers_refused() {
    let server = world(20_000.0);
    let mut alice = server.player("Alice");
    let (id, _) = alice.spawned();
    alice.send(&ClientMessage::MoveTo {
        x: f32::NAN,
        y: 10.0,
    });
    alice.expect("NaN refused", |m| {
        matches!(m, ServerMessage::Denied { request: Request::Move, reason } if reason == NOT_A_PLACE)
            .then_some(())
    });
    alice.send(&ClientMessage::MoveTo {
        x: f32::INFINITY,
        y: 0.0,
    });
    alice.expect("infinity refused", |m| {
        matches!(
            m,
            ServerMessage::Denied {
                request: Request::Move,
                ..
            }
        )
        .then_some(())
    });
    alice.send(&ClientMessage::MoveTo { x: -1e9, y: 1e9 });
    alice.wait_until_at(id, Pos::quantize(0.0, WORLD_SIZE));
    assert!(alice.is_connected());

    let mut stranger = server.client();
    stranger.send(&ClientMessage::MoveTo { x: 1.0, y: 1.0 });
    stranger.expect("a move before login refused", |m| {
        matches!(m, ServerMessage::Denied { request: Request::Move, reason } if reason == NOT_LOGGED_IN)
            .then_some(())
    });
}

#[test]
fn a_player_who_walks_out_of_view_leaves_it_and_is_heard_of_no_more() {
    let server = world(2_000.0);
    let mut alice = server.player("Alice");
    let mut bob = server.player("Bob");
    let (bob_id, bob_at) = bob.spawned();
    assert_eq!(entered(&mut alice, "Bob"), bob_id);

    let far = Pos::quantize(bob_at.x() + 500.0, bob_at.y());
    bob.send(&ClientMessage::MoveTo {
        x: far.x(),
        y: far.y(),
    });
    alice.expect("Bob leaving view", |m| {
        matches!(m, ServerMessage::LeftView { id } if *id == bob_id).then_some(())
    });
    bob.wait_until_at(bob_id, far);

    // Far away, Bob keeps walking: Alice hears nothing of him.
    alice.snapshots.clear();
    let heard_before = alice.received.len();
    for step in 1..=5 {
        bob.send(&ClientMessage::MoveTo {
            x: far.x(),
            y: far.y() + 20.0 * step as f32,
        });
        std::thread::sleep(Duration::from_millis(60));
        alice.pump();
    }
    bob.pump();
    assert_eq!(alice.last_seen(bob_id), None, "no snapshot names Bob");
    assert!(
        alice.received[heard_before..].iter().all(|m| !matches!(
            m,
            ServerMessage::EnteredView { .. } | ServerMessage::LeftView { .. }
        )),
        "nothing about Bob: {:?}",
        &alice.received[heard_before..]
    );

    // He comes back and is in view again.
    bob.send(&ClientMessage::MoveTo {
        x: bob_at.x(),
        y: bob_at.y(),
    });
    assert_eq!(entered(&mut alice, "Bob"), bob_id);
    // And when he logs out, he leaves it.
    drop(bob);
    alice.expect("Bob leaving view as he goes", |m| {
        matches!(m, ServerMessage::LeftView { id } if *id == bob_id).then_some(())
    });
}

#[test]
fn a_position_survives_logout_and_a_restart() {
    let mut server = world(2_000.0);
    let mut alice = server.player("Alice");
    let (id, start) = alice.spawned();
    let there = Pos::quantize(start.x() - 300.0, start.y() + 200.0);
    alice.send(&ClientMessage::MoveTo {
        x: there.x(),
        y: there.y(),
    });
    alice.wait_until_at(id, there);
    drop(alice);

    // Logged out: she comes back where she stood.
    let mut alice = server.login_again("Alice");
    assert_eq!(alice.spawned().1, there, "back where she logged out");
    let further = Pos::quantize(there.x() + 100.0, there.y());
    alice.send(&ClientMessage::MoveTo {
        x: further.x(),
        y: further.y(),
    });
    let (id, _) = alice.spawned();
    alice.wait_until_at(id, further);

    // The server stops with her still online, and starts again.
    server.restart();
    let mut alice = server.login_again("Alice");
    assert_eq!(
        alice.spawned().1,
        further,
        "where she was when the server stopped"
    );
}

#[test]
fn in_a_crowd_a_player_is_told_of_at_most_max_in_view_and_a_free_place_is_filled() {
    let server = TestServer::start_with(|config| {
        config.view_radius = 100.0;
        config.max_in_view = 2;
    });
    let mut alice = server.player("Alice");
    // Everyone appears within 32 units of the spawn point, in view of everyone else.
    let mut others: Vec<(&str, TestClient)> = ["Bob", "Carol", "Dave"]
        .into_iter()
        .map(|name| (name, server.player(name)))
        .collect();
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        alice.pump();
        std::thread::sleep(Duration::from_millis(10));
    }
    let told: Vec<(u32, String)> = alice
        .received
        .iter()
        .filter_map(|m| match m {
            ServerMessage::EnteredView { id, name, .. } => Some((*id, name.clone())),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = told.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(names, ["Bob", "Carol"], "the first two, and no more");

    // Bob logs out: Dave, whom she was not told of, takes his place.
    let bob = others.iter().position(|(name, _)| *name == "Bob").unwrap();
    drop(others.remove(bob));
    alice.expect("Bob leaving view", |m| {
        matches!(m, ServerMessage::LeftView { id } if *id == told[0].0).then_some(())
    });
    entered(&mut alice, "Dave");
}
