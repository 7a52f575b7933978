//! The client plugin against the real server over loopback: register, log in, chat with another
//! player, whisper and ask `/who`, and be sent back to the login screen with the reason when the session is taken over.

mod common;

use bevy::prelude::App;

use common::*;
use mmo::config::Config;
use mmo::protocol::{ClientMessage, ServerMessage};
use mmo::server::ServerHandle;
use mmo_client::alert::DismissAlert;
use mmo_client::chat::{ChatInput, ChatLog};
use mmo_client::login::{LoginButton, PasswordField, RegisterButton, UsernameField};
use mmo_client::screens::Screen;

const PASSWORD: &str = "alice's password";

fn start_server(dir: &tempfile::TempDir) -> ServerHandle {
    ServerHandle::spawn(Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("db.sqlite3"),
    ))
    .expect("server starts")
}

/// Fills the login form as alice and presses Register; returns the alert it got, dismissed.
fn register_alice(app: &mut App) -> Option<String> {
    type_into::<UsernameField>(app, "alice");
    type_into::<PasswordField>(app, PASSWORD);
    click::<RegisterButton>(app);
    run_until(app, "registration", || {}, |app| alert(app).is_some());
    let said = alert(app);
    app.world_mut().write_message(DismissAlert);
    said
}

/// bob, registered and logged in with a plain client.
fn bob_logged_in(server: &ServerHandle) -> Peer {
    let mut bob = Peer::connect(server.addr());
    bob.send(&ClientMessage::Register {
        username: "bob".into(),
        password: "bob's password".into(),
    });
    bob.wait_for("registered", |m| {
        matches!(m, ServerMessage::Registered { .. })
    });
    bob.send(&ClientMessage::Login {
        username: "bob".into(),
        password: "bob's password".into(),
    });
    bob.wait_for("logged in", |m| matches!(m, ServerMessage::LoggedIn { .. }));
    bob
}

#[test]
fn register_login_chat_and_get_kicked_against_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir);

    let mut app = headless_client(server.addr());
    assert_eq!(
        register_alice(&mut app).as_deref(),
        Some("Registration successful")
    );
    app.update();

    click::<LoginButton>(&mut app);
    run_until(
        &mut app,
        "the chatbox",
        || {},
        |app| screen(app) == Screen::Chat,
    );

    // bob joins and speaks; alice's log shows it as the tutorial does.
    let mut bob = bob_logged_in(&server);
    bob.send(&ClientMessage::Chat {
        text: "hi alice".into(),
    });
    run_until(
        &mut app,
        "bob's line",
        || bob.pump(),
        |app| {
            app.world()
                .resource::<ChatLog>()
                .texts()
                .contains(&"bob says: \"hi alice\"")
        },
    );
    assert!(
        app.world()
            .resource::<ChatLog>()
            .texts()
            .contains(&"bob joined")
    );
    assert_eq!(app.world().resource::<ChatLog>().online, ["alice", "bob"]);

    // alice answers with Enter in the chat line; bob sees it under her name.
    type_into::<ChatInput>(&mut app, "hello bob, ça va?");
    press_enter::<ChatInput>(&mut app);
    app.update();
    bob.wait_for("alice's line", |m| {
        matches!(m, ServerMessage::Chat(l) if l.sender == "alice" && l.text == "hello bob, ça va?")
    });

    // Whispers and commands go through the same chat line; the answers show in the log.
    type_into::<ChatInput>(&mut app, "/w bob psst");
    press_enter::<ChatInput>(&mut app);
    app.update();
    bob.wait_for(
        "alice's whisper",
        |m| matches!(m, ServerMessage::Whisper(w) if w.from == "alice" && w.text == "psst"),
    );
    bob.send(&ClientMessage::Chat {
        text: "/w alice what?".into(),
    });
    type_into::<ChatInput>(&mut app, "/who");
    press_enter::<ChatInput>(&mut app);
    let expected = [
        "To bob: \"psst\"",
        "bob whispers: \"what?\"",
        "2 online: alice, bob",
    ];
    run_until(
        &mut app,
        "the whispers and the answer to /who",
        || bob.pump(),
        |app| {
            let log = app.world().resource::<ChatLog>();
            expected.iter().all(|line| log.texts().contains(line))
        },
    );

    // Someone logs in as alice elsewhere: this client goes back to the login screen and says why.
    let mut elsewhere = Peer::connect(server.addr());
    elsewhere.send(&ClientMessage::Login {
        username: "alice".into(),
        password: PASSWORD.into(),
    });
    run_until(
        &mut app,
        "the kick",
        || elsewhere.pump(),
        |app| screen(app) == Screen::Login && alert(app).is_some(),
    );
    assert_eq!(
        alert(&app).as_deref(),
        Some("Logged in from another location")
    );

    drop(app);
    server.stop();
}

#[test]
fn the_world_shows_a_player_nearby_and_follows_his_steps_smoothly() {
    use mmo_client::world::{WorldView, local_ms};

    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&dir);
    let mut app = headless_client(server.addr());
    register_alice(&mut app);
    click::<LoginButton>(&mut app);
    run_until(
        &mut app,
        "being placed",
        || {},
        |app| app.world().resource::<WorldView>().me.is_some(),
    );

    let mut bob = bob_logged_in(&server);
    bob.wait_for("placed", |m| matches!(m, ServerMessage::Spawned { .. }));
    let bob_id = |app: &App| {
        let view = app.world().resource::<WorldView>();
        view.players
            .iter()
            .find(|(_, seen)| seen.name == "bob")
            .map(|(id, _)| *id)
    };
    run_until(
        &mut app,
        "bob in view",
        || bob.pump(),
        |app| bob_id(app).is_some(),
    );
    let id = bob_id(&app).unwrap();
    let start = app
        .world()
        .resource::<WorldView>()
        .draw_at(id, local_ms())
        .unwrap();

    // bob walks 30 units east (40 a second: most of a second); alice sees him move a little at a time.
    bob.send(&ClientMessage::MoveTo {
        x: start.x + 30.0,
        y: start.y,
    });
    let mut seen_x = vec![start.x];
    run_until(
        &mut app,
        "bob arriving",
        || bob.pump(),
        |app| {
            let at = app.world().resource::<WorldView>().draw_at(id, local_ms());
            if let Some(at) = at
                && at.x != *seen_x.last().unwrap()
            {
                seen_x.push(at.x);
            }
            at.is_some_and(|at| (at.x - (start.x + 30.0)).abs() < 0.05)
        },
    );
    // Smooth: many small steps eastward, none backward, none of more than a few units.
    assert!(
        seen_x.len() > 10,
        "only {} distinct positions",
        seen_x.len()
    );
    for pair in seen_x.windows(2) {
        assert!(pair[1] > pair[0], "went back: {seen_x:?}");
        assert!(pair[1] - pair[0] < 6.0, "jumped: {seen_x:?}");
    }
}
