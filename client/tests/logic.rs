//! The client's logic, headless: what pressing the buttons sends, and what each server answer shows.

mod common;

use bevy::prelude::*;
use common::*;
use mmo::protocol::{ChatLine, ClientMessage, Request, ServerMessage, WhisperLine};
use mmo_client::chat::{ChatInput, ChatLog, LogEntry, OnlineList};
use mmo_client::login::{
    LoginButton, LoginForm, PasswordField, RegisterButton, StatusLine, UsernameField,
};
use mmo_client::net::{CONNECT_TIMEOUT, FromServer};
use mmo_client::screens::Screen;
use mmo_client::theme::{self, Disabled};

fn server_says(app: &mut App, message: ServerMessage) {
    app.world_mut().write_message(FromServer(message));
    app.update();
    app.update(); // state transitions apply on the next frame
}

fn status(app: &mut App) -> String {
    texts_of::<StatusLine>(app).concat()
}

#[test]
fn login_screen_has_the_tutorials_fields_and_buttons() {
    let mut app = headless_client(nowhere());
    assert_eq!(screen(&app), Screen::Login);
    let labels: Vec<String> = {
        let world = app.world_mut();
        world
            .query::<&Text>()
            .iter(world)
            .map(|t| t.0.clone())
            .collect()
    };
    for label in ["Username:", "Password:", "Login", "Register"] {
        assert!(
            labels.iter().any(|l| l == label),
            "{label} missing from {labels:?}"
        );
    }
    let password = entity_with::<PasswordField>(&mut app);
    let settings = app
        .world()
        .get::<bevy_simple_text_input::TextInputSettings>(password)
        .unwrap();
    assert_eq!(
        settings.mask_character,
        Some('*'),
        "the password is shown as *"
    );
}

#[test]
fn pressing_login_sends_a_login_with_the_fields_and_waits() {
    let mut app = headless_client(nowhere());
    type_into::<UsernameField>(&mut app, "  alice ");
    type_into::<PasswordField>(&mut app, "hunter2hunter2");
    click::<LoginButton>(&mut app);
    let login = ClientMessage::Login {
        username: "alice".into(),
        password: "hunter2hunter2".into(),
    };
    assert_eq!(app.world().resource::<common::Sent>().0, [login]);
    assert_eq!(status(&mut app), "Logging in…");
    let login_button = entity_with::<LoginButton>(&mut app);
    assert!(
        app.world().get::<Disabled>(login_button).is_some(),
        "buttons are disabled while waiting"
    );

    // A second press while waiting sends nothing.
    click::<LoginButton>(&mut app);
    click::<RegisterButton>(&mut app);
    assert_eq!(app.world().resource::<common::Sent>().0.len(), 1);
}

#[test]
fn pressing_register_sends_a_register() {
    let mut app = headless_client(nowhere());
    type_into::<UsernameField>(&mut app, "bob");
    type_into::<PasswordField>(&mut app, "correct horse");
    click::<RegisterButton>(&mut app);
    let register = ClientMessage::Register {
        username: "bob".into(),
        password: "correct horse".into(),
    };
    assert_eq!(app.world().resource::<common::Sent>().0, [register]);
    assert_eq!(status(&mut app), "Registering…");
}

#[test]
fn enter_in_the_password_field_logs_in() {
    let mut app = headless_client(nowhere());
    type_into::<UsernameField>(&mut app, "carol");
    type_into::<PasswordField>(&mut app, "password123");
    press_enter::<PasswordField>(&mut app);
    let login = ClientMessage::Login {
        username: "carol".into(),
        password: "password123".into(),
    };
    assert_eq!(app.world().resource::<common::Sent>().0, [login]);
}

#[test]
fn register_answers_show_in_alerts_and_free_the_buttons() {
    let mut app = headless_client(nowhere());
    click::<RegisterButton>(&mut app);
    server_says(
        &mut app,
        ServerMessage::Registered {
            username: "bob".into(),
        },
    );
    assert_eq!(alert(&app).as_deref(), Some("Registration successful"));
    assert_eq!(screen(&app), Screen::Login, "registering does not log in");
    let register_button = entity_with::<RegisterButton>(&mut app);
    assert!(app.world().get::<Disabled>(register_button).is_none());
    assert_eq!(status(&mut app), "");

    app.world_mut()
        .write_message(mmo_client::alert::DismissAlert);
    app.update();
    click::<RegisterButton>(&mut app);
    let reason = "This username is already taken";
    server_says(
        &mut app,
        ServerMessage::Denied {
            request: Request::Register,
            reason: reason.into(),
        },
    );
    assert_eq!(alert(&app).as_deref(), Some(reason));
}

#[test]
fn a_denied_login_shows_the_reason_and_stays_on_the_login_screen() {
    let mut app = headless_client(nowhere());
    click::<LoginButton>(&mut app);
    let reason = "Username or password incorrect";
    server_says(
        &mut app,
        ServerMessage::Denied {
            request: Request::Login,
            reason: reason.into(),
        },
    );
    assert_eq!(alert(&app).as_deref(), Some(reason));
    assert_eq!(screen(&app), Screen::Login);
    assert!(app.world().resource::<LoginForm>().pending.is_none());
}

#[test]
fn a_successful_login_opens_the_chatbox_which_shows_what_the_server_says() {
    let mut app = headless_client(nowhere());
    click::<LoginButton>(&mut app);
    let line = |sender: &str, text: &str| ChatLine {
        sender: sender.into(),
        text: text.into(),
        sent_at_ms: 1,
    };
    // The server sends these back to back; they may all arrive in one frame.
    for message in [
        ServerMessage::LoggedIn {
            name: "alice".into(),
        },
        ServerMessage::OnlinePlayers {
            names: vec!["alice".into(), "bob".into()],
        },
        ServerMessage::ChatHistory {
            lines: vec![line("bob", "earlier")],
        },
    ] {
        app.world_mut().write_message(FromServer(message));
    }
    app.update();
    app.update();
    assert_eq!(screen(&app), Screen::Chat);
    assert!(
        app.world_mut()
            .query::<&UsernameField>()
            .iter(app.world())
            .next()
            .is_none(),
        "login screen gone"
    );

    server_says(
        &mut app,
        ServerMessage::Chat(line("bob", "hello, Алиса! καλημέρα")),
    );
    server_says(
        &mut app,
        ServerMessage::PlayerJoined {
            name: "carol".into(),
        },
    );
    server_says(
        &mut app,
        ServerMessage::Denied {
            request: Request::Chat,
            reason: "You are sending messages too fast".into(),
        },
    );
    server_says(&mut app, ServerMessage::PlayerLeft { name: "bob".into() });

    let expected = [
        "bob says: \"earlier\"",
        "bob says: \"hello, Алиса! καλημέρα\"",
        "carol joined",
        "You are sending messages too fast",
        "bob left",
    ];
    assert_eq!(app.world().resource::<ChatLog>().texts(), expected);
    let mut shown: Vec<(u64, String)> = {
        let world = app.world_mut();
        world
            .query::<(&LogEntry, &Text)>()
            .iter(world)
            .map(|(e, t)| (e.0, t.0.clone()))
            .collect()
    };
    shown.sort();
    assert_eq!(
        shown.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
        expected,
        "the log shows every line in order"
    );
    assert_eq!(texts_of::<OnlineList>(&mut app), ["alice\ncarol"]);
}

#[test]
fn system_lines_whispers_and_refused_commands_show_in_their_own_colours() {
    let mut app = headless_client(nowhere());
    click::<LoginButton>(&mut app);
    server_says(
        &mut app,
        ServerMessage::LoggedIn {
            name: "alice".into(),
        },
    );
    let whisper = |from: &str, to: &str, text: &str| {
        ServerMessage::Whisper(WhisperLine {
            from: from.into(),
            to: to.into(),
            text: text.into(),
            sent_at_ms: 1,
        })
    };
    for message in [
        ServerMessage::System {
            text: "Server shutting down in 5m: update".into(),
        },
        whisper("bob", "alice", "psst"),
        whisper("alice", "bob", "what?"),
        ServerMessage::Denied {
            request: Request::Command,
            reason: "carol is not online".into(),
        },
        ServerMessage::Chat(ChatLine {
            sender: "bob".into(),
            text: "hi all".into(),
            sent_at_ms: 1,
        }),
    ] {
        server_says(&mut app, message);
    }
    let mut shown: Vec<(u64, String, Color)> = {
        let world = app.world_mut();
        world
            .query::<(&LogEntry, &Text, &TextColor)>()
            .iter(world)
            .map(|(e, t, c)| (e.0, t.0.clone(), c.0))
            .collect()
    };
    shown.sort_by_key(|(seq, ..)| *seq);
    let shown: Vec<(&str, Color)> = shown.iter().map(|(_, t, c)| (t.as_str(), *c)).collect();
    assert_eq!(
        shown,
        [
            ("Server shutting down in 5m: update", theme::SYSTEM),
            ("bob whispers: \"psst\"", theme::WHISPER),
            ("To bob: \"what?\"", theme::WHISPER),
            ("carol is not online", theme::ERROR),
            ("bob says: \"hi all\"", theme::TEXT),
        ]
    );
}

#[test]
fn enter_in_the_chat_line_sends_it() {
    let mut app = headless_client(nowhere());
    click::<LoginButton>(&mut app);
    server_says(
        &mut app,
        ServerMessage::LoggedIn {
            name: "alice".into(),
        },
    );
    type_into::<ChatInput>(&mut app, "hi there");
    press_enter::<ChatInput>(&mut app);
    type_into::<ChatInput>(&mut app, "   ");
    press_enter::<ChatInput>(&mut app);
    let sent = &app.world().resource::<common::Sent>().0;
    assert_eq!(
        sent.last(),
        Some(&ClientMessage::Chat {
            text: "hi there".into()
        }),
        "blank lines are not sent"
    );
}

#[test]
fn an_unreachable_server_is_reported_and_the_form_stays_usable() {
    let mut app = headless_client(nowhere());
    type_into::<UsernameField>(&mut app, "alice");
    type_into::<PasswordField>(&mut app, "password123");
    click::<LoginButton>(&mut app);
    run_until(
        &mut app,
        "the unreachable alert",
        || {},
        |app| alert(app).is_some(),
    );
    let text = alert(&app).unwrap();
    assert!(
        text.starts_with("Cannot reach the server at 127.0.0.1:"),
        "{text}"
    );
    assert!(
        app.world().resource::<LoginForm>().pending.is_none(),
        "buttons usable again"
    );
    assert!(CONNECT_TIMEOUT.as_secs() <= 5);

    // Retry: the press connects again and resends.
    app.world_mut()
        .write_message(mmo_client::alert::DismissAlert);
    app.update();
    click::<LoginButton>(&mut app);
    assert_eq!(app.world().resource::<common::Sent>().0.len(), 2);
    assert_eq!(status(&mut app), "Logging in…");
}

#[test]
fn tab_moves_between_the_fields() {
    let mut app = headless_client(nowhere());
    app.init_resource::<ButtonInput<KeyCode>>();
    let username = entity_with::<UsernameField>(&mut app);
    let password = entity_with::<PasswordField>(&mut app);
    let focus = |app: &App| app.world().resource::<mmo_client::focus::Focus>().0;
    let active = |app: &App, e: Entity| {
        !app.world()
            .get::<bevy_simple_text_input::TextInputInactive>(e)
            .unwrap()
            .0
    };
    assert_eq!(
        focus(&app),
        Some(username),
        "the username field starts focused"
    );
    app.update();
    assert!(
        active(&app, username) && !active(&app, password),
        "only the focused field takes keys"
    );

    let tab = |app: &mut App| {
        app.world_mut()
            .resource_mut::<ButtonInput<KeyCode>>()
            .press(KeyCode::Tab);
        app.update();
        let mut keys = app.world_mut().resource_mut::<ButtonInput<KeyCode>>();
        keys.release(KeyCode::Tab);
        keys.clear();
    };
    tab(&mut app);
    assert_eq!(focus(&app), Some(password));
    assert!(active(&app, password) && !active(&app, username));
    tab(&mut app);
    assert_eq!(focus(&app), Some(username), "Tab wraps around");
}
