//! The client plugin against the real server over loopback: register, log in, chat with another
//! player, and be sent back to the login screen with the reason when the session is taken over.

mod common;

use common::*;
use mmo::config::Config;
use mmo::protocol::{ClientMessage, ServerMessage};
use mmo::server::ServerHandle;
use mmo_client::alert::DismissAlert;
use mmo_client::chat::{ChatInput, ChatLog};
use mmo_client::login::{LoginButton, PasswordField, RegisterButton, UsernameField};
use mmo_client::screens::Screen;

const PASSWORD: &str = "alice's password";

#[test]
fn register_login_chat_and_get_kicked_against_the_real_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerHandle::spawn(Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("db.sqlite3"),
    ))
    .expect("server starts");

    let mut app = headless_client(server.addr());
    type_into::<UsernameField>(&mut app, "alice");
    type_into::<PasswordField>(&mut app, PASSWORD);
    click::<RegisterButton>(&mut app);
    run_until(&mut app, "registration", || {}, |app| alert(app).is_some());
    assert_eq!(alert(&app).as_deref(), Some("Registration successful"));
    app.world_mut().write_message(DismissAlert);
    app.update();

    click::<LoginButton>(&mut app);
    run_until(
        &mut app,
        "the chatbox",
        || {},
        |app| screen(app) == Screen::Chat,
    );

    // bob joins and speaks; alice's log shows it as the tutorial does.
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
