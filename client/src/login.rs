//! The login screen, like the Godot tutorial's Login scene: a centred panel with "Username:" and
//! "Password:" fields (the password shown as `*`), Login and Register buttons, and a status line.
//! Pressing a button (or Enter in the password field) sends the request; while it is in flight the
//! buttons are disabled. The answer shows in an alert, or, for a successful login, opens the chatbox.

use bevy::prelude::*;
use bevy_simple_text_input::{
    TextInputSettings, TextInputSubmitMessage, TextInputSystem, TextInputValue,
};
use mmo::protocol::{ClientMessage, Request, ServerMessage};

use crate::alert::{AlertSystems, ShowAlert};
use crate::focus::{Focus, TabOrder};
use crate::net::{FromServer, LinkEvent, ServerAddress, ToServer};
use crate::screens::Screen;
use crate::theme::{self, Disabled, Theme};

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<LoginForm>()
        .add_message::<LoginIntent>()
        .add_systems(OnEnter(Screen::Login), spawn_login_screen)
        .add_systems(
            Update,
            (
                press_buttons,
                submit_on_enter.after(TextInputSystem),
                send_intent,
                handle_answers,
                show_status,
            )
                .chain()
                .before(AlertSystems)
                .run_if(in_state(Screen::Login)),
        );
}

/// The request the form is waiting for, if any.
#[derive(Resource, Debug, Default)]
pub struct LoginForm {
    pub pending: Option<Request>,
    /// A line under the buttons: what is happening, or why the server cannot be reached.
    pub status: String,
}

/// Log in or register with what the fields hold (buttons, Enter and the scripted mode write this).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginIntent {
    Login,
    Register,
}

#[derive(Component)]
pub struct UsernameField;
#[derive(Component)]
pub struct PasswordField;
#[derive(Component)]
pub struct LoginButton;
#[derive(Component)]
pub struct RegisterButton;
#[derive(Component)]
pub struct StatusLine;
/// The form's panel: fields, buttons, status line (token mode adds its "Remember me" here).
#[derive(Component)]
pub struct LoginPanel;

fn text_field(theme: &Theme, order: u8, mask: Option<char>) -> impl Bundle + use<> {
    let settings = TextInputSettings {
        mask_character: mask,
        retain_on_submit: true,
        max_length: Some(128),
    };
    (TabOrder(order), theme.text_field(20.0, 1.0, settings))
}

fn spawn_login_screen(
    mut commands: Commands,
    theme: Res<Theme>,
    mut form: ResMut<LoginForm>,
    mut focus: ResMut<Focus>,
) {
    form.pending = None;
    let username = commands
        .spawn((UsernameField, text_field(&theme, 0, None)))
        .id();
    let password = commands
        .spawn((PasswordField, text_field(&theme, 1, Some('*'))))
        .id();
    focus.0 = Some(username);
    let label = |text: &str| {
        (
            theme.text(text, 20.0, theme::TEXT),
            Node {
                align_self: AlignSelf::Center,
                ..default()
            },
        )
    };
    let grid = commands
        .spawn(Node {
            display: Display::Grid,
            grid_template_columns: vec![GridTrack::auto(), GridTrack::fr(1.0)],
            row_gap: px(10),
            column_gap: px(12),
            ..default()
        })
        .id();
    let username_label = commands.spawn(label("Username:")).id();
    let password_label = commands.spawn(label("Password:")).id();
    commands
        .entity(grid)
        .add_children(&[username_label, username, password_label, password]);

    let panel = commands
        .spawn((
            LoginPanel,
            Node {
                position_type: PositionType::Absolute,
                left: percent(20),
                width: percent(60),
                top: percent(40),
                min_height: percent(20),
                flex_direction: FlexDirection::Column,
                row_gap: px(14),
                padding: UiRect::all(px(20)),
                border_radius: BorderRadius::all(px(8)),
                ..default()
            },
            BackgroundColor(theme::PANEL),
        ))
        .id();
    let buttons = commands
        .spawn((
            Node {
                justify_content: JustifyContent::Center,
                column_gap: px(16),
                ..default()
            },
            children![
                theme.button("Login", LoginButton),
                theme.button("Register", RegisterButton)
            ],
        ))
        .id();
    let status = commands
        .spawn((
            StatusLine,
            theme.text("", 16.0, theme::MUTED),
            Node {
                align_self: AlignSelf::Center,
                ..default()
            },
        ))
        .id();
    commands
        .entity(panel)
        .add_children(&[grid, buttons, status]);
    commands
        .spawn((
            DespawnOnExit(Screen::Login),
            Node {
                width: percent(100),
                height: percent(100),
                ..default()
            },
            BackgroundColor(theme::BACKGROUND),
        ))
        .add_child(panel);
}

fn press_buttons(
    mut intents: MessageWriter<LoginIntent>,
    login: Query<&Interaction, (Changed<Interaction>, With<LoginButton>)>,
    register: Query<&Interaction, (Changed<Interaction>, With<RegisterButton>)>,
) {
    if login.iter().any(|i| *i == Interaction::Pressed) {
        intents.write(LoginIntent::Login);
    }
    if register.iter().any(|i| *i == Interaction::Pressed) {
        intents.write(LoginIntent::Register);
    }
}

/// Enter in the password field logs in; Enter in the username field moves to the password.
fn submit_on_enter(
    mut submits: MessageReader<TextInputSubmitMessage>,
    mut intents: MessageWriter<LoginIntent>,
    mut focus: ResMut<Focus>,
    username: Query<(), With<UsernameField>>,
    password: Query<Entity, With<PasswordField>>,
) {
    for submit in submits.read() {
        if password.contains(submit.entity) {
            intents.write(LoginIntent::Login);
        } else if username.contains(submit.entity) {
            focus.0 = password.single().ok();
        }
    }
}

fn send_intent(
    mut intents: MessageReader<LoginIntent>,
    mut form: ResMut<LoginForm>,
    mut outbox: MessageWriter<ToServer>,
    username: Query<&TextInputValue, With<UsernameField>>,
    password: Query<&TextInputValue, With<PasswordField>>,
) {
    for intent in intents.read() {
        if form.pending.is_some() {
            continue;
        }
        let (Ok(username), Ok(password)) = (username.single(), password.single()) else {
            continue;
        };
        let (username, password) = (username.0.trim().to_owned(), password.0.clone());
        let (request, message, status) = match intent {
            LoginIntent::Login => (
                Request::Login,
                ClientMessage::Login { username, password },
                "Logging in…",
            ),
            LoginIntent::Register => (
                Request::Register,
                ClientMessage::Register { username, password },
                "Registering…",
            ),
        };
        form.pending = Some(request);
        form.status = status.to_owned();
        outbox.write(ToServer(message));
    }
}

fn handle_answers(
    mut inbox: MessageReader<FromServer>,
    mut links: MessageReader<LinkEvent>,
    mut form: ResMut<LoginForm>,
    mut alerts: MessageWriter<ShowAlert>,
    mut next: ResMut<NextState<Screen>>,
    address: Res<ServerAddress>,
    mut password: Query<&mut TextInputValue, With<PasswordField>>,
) {
    for FromServer(message) in inbox.read() {
        match message {
            ServerMessage::Registered { .. } if form.pending == Some(Request::Register) => {
                form.pending = None;
                form.status.clear();
                alerts.write(ShowAlert("Registration successful".into()));
            }
            ServerMessage::LoggedIn { .. } if form.pending == Some(Request::Login) => {
                form.pending = None;
                form.status.clear();
                if let Ok(mut password) = password.single_mut() {
                    password.0.clear();
                }
                next.set(Screen::Chat);
            }
            ServerMessage::Denied { request, reason } if form.pending == Some(*request) => {
                form.pending = None;
                form.status.clear();
                alerts.write(ShowAlert(reason.clone()));
            }
            ServerMessage::Kicked { reason } => {
                form.status = reason.clone();
            }
            _ => {}
        }
    }
    for event in links.read() {
        match event {
            LinkEvent::Connected => form.status = format!("Connected to {}", address.0),
            LinkEvent::Unreachable(reason) | LinkEvent::Lost(reason) => {
                if form.pending.take().is_some() {
                    alerts.write(ShowAlert(reason.clone()));
                }
                form.status = reason.clone();
            }
        }
    }
}

fn show_status(
    mut commands: Commands,
    form: Res<LoginForm>,
    mut status: Query<&mut Text, With<StatusLine>>,
    buttons: Query<Entity, Or<(With<LoginButton>, With<RegisterButton>)>>,
) {
    if !form.is_changed() {
        return;
    }
    if let Ok(mut text) = status.single_mut()
        && text.0 != form.status
    {
        text.0 = form.status.clone();
    }
    for button in &buttons {
        if form.pending.is_some() {
            commands.entity(button).insert(Disabled);
        } else {
            commands.entity(button).remove::<Disabled>();
        }
    }
}
