//! The scripted mode, for demos and screenshots: fill in the fields, register and log in by pressing
//! the same buttons a player would, say some lines, take a screenshot of the window and exit.

use std::time::Duration;

use bevy::prelude::*;
use bevy_simple_text_input::TextInputValue;
use mmo::protocol::{ClientMessage, Request, ServerMessage};

use crate::alert::{AlertSystems, Alerts, DismissAlert};
use crate::config::ClientConfig;
use crate::login::{LoginForm, LoginIntent, PasswordField, UsernameField};
use crate::net::{FromServer, ToServer};
use crate::screens::Screen;

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<Script>().add_systems(
        Update,
        (fill_fields, auto_login, say_lines, exit_after).after(AlertSystems),
    );
}

/// Where the script is.
#[derive(Resource, Debug, Default)]
pub struct Script {
    filled: bool,
    login: AutoLogin,
    said: usize,
    in_chat_for: Duration,
    /// Set once every scripted step is done (at once when there are none).
    pub done_for: Option<Duration>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum AutoLogin {
    #[default]
    Start,
    Registering,
    Registered,
    LoggingIn,
}

fn fill_fields(
    config: Res<ClientConfig>,
    mut script: ResMut<Script>,
    mut username: Query<&mut TextInputValue, (With<UsernameField>, Without<PasswordField>)>,
    mut password: Query<&mut TextInputValue, (With<PasswordField>, Without<UsernameField>)>,
) {
    if script.filled {
        return;
    }
    let (Ok(mut username), Ok(mut password)) = (username.single_mut(), password.single_mut())
    else {
        return;
    };
    if let Some(name) = &config.username {
        username.0 = name.clone();
    }
    if let Some(secret) = &config.password {
        password.0 = secret.clone();
    }
    script.filled = true;
}

fn auto_login(
    config: Res<ClientConfig>,
    mut script: ResMut<Script>,
    mut inbox: MessageReader<FromServer>,
    mut intents: MessageWriter<LoginIntent>,
    mut dismiss: MessageWriter<DismissAlert>,
    alerts: Res<Alerts>,
    form: Res<LoginForm>,
    screen: Res<State<Screen>>,
) {
    if !config.auto_login || !script.filled || *screen.get() != Screen::Login {
        return;
    }
    // Token mode may be logging in by itself with a remembered session: let it finish first.
    if script.login == AutoLogin::Start && form.pending.is_some() {
        return;
    }
    let answered = inbox.read().any(|FromServer(message)| {
        matches!(
            message,
            ServerMessage::Registered { .. }
                | ServerMessage::Denied {
                    request: Request::Register,
                    ..
                }
        )
    });
    match script.login {
        AutoLogin::Start => {
            intents.write(LoginIntent::Register);
            script.login = AutoLogin::Registering;
        }
        // "Registration successful", or "already taken" on a second run: either way, log in next.
        AutoLogin::Registering if answered => script.login = AutoLogin::Registered,
        AutoLogin::Registered if alerts.is_open() => {
            dismiss.write(DismissAlert);
        }
        AutoLogin::Registered => {
            intents.write(LoginIntent::Login);
            script.login = AutoLogin::LoggingIn;
        }
        // A refused login leaves its alert up for the screenshot to show.
        AutoLogin::Registering | AutoLogin::LoggingIn => {}
    }
}

fn say_lines(
    config: Res<ClientConfig>,
    time: Res<Time>,
    mut script: ResMut<Script>,
    screen: Res<State<Screen>>,
    mut outbox: MessageWriter<ToServer>,
) {
    let wants_chat = config.auto_login || !config.say.is_empty();
    if !wants_chat {
        script.done_for = Some(script.done_for.unwrap_or_default() + time.delta());
        return;
    }
    if *screen.get() != Screen::Chat {
        return;
    }
    script.in_chat_for += time.delta();
    let first = Duration::from_secs_f32(config.say_after.max(0.0));
    while script.said < config.say.len()
        && script.in_chat_for >= first + Duration::from_secs(script.said as u64)
    {
        outbox.write(ToServer(ClientMessage::Chat {
            text: config.say[script.said].clone(),
        }));
        script.said += 1;
    }
    if script.said >= config.say.len() {
        script.done_for = Some(script.done_for.unwrap_or_default() + time.delta());
    }
}

fn exit_after(config: Res<ClientConfig>, time: Res<Time<Real>>, mut exit: MessageWriter<AppExit>) {
    if config
        .exit_after
        .is_some_and(|seconds| time.elapsed_secs() >= seconds)
    {
        exit.write(AppExit::Success);
    }
}
