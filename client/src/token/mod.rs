//! Token mode (`--login-url`): the login form's Register and Login go to the login server over HTTPS on
//! a background thread (the frame never waits on the network), and their answers come back to the
//! screens as the [`FromServer`] messages in-band mode gets (`Registered`, or `Denied` with the server's
//! wording), so the login screen, its status line and the alerts work unchanged. A successful login
//! hands the connect token to `net`, which connects over encrypted UDP ([`net::connect_with`]); the
//! server then sends `LoggedIn`, the online list and the history, as in in-band mode.
//!
//! When the connection is lost while chatting (the shard stopped or crashed), the client reconnects by
//! itself with the login's session ([`Reconnecting`]): the chatbox stays, says "Reconnecting…", and the
//! login server hands a new connect token, to the shard when it is back or to another; after
//! [`RECONNECT_FOR`] without success, or if the session is refused, it goes back to the login screen.
//! A kick (logged in elsewhere, banned) is not reconnected.
//!
//! Token mode's two widgets live here too: "Remember me" on the login screen (the session token is kept
//! in the config folder, see [`remember`], and the next start logs in by itself with it) and "Log out"
//! in the chatbox (revokes the session on the server, forgets it, and goes back to the login screen).

pub mod remember;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::ui::FocusPolicy;
use bevy_renet::RenetReceive;
use bevy_renet::netcode::NetcodeClientTransport;
use bevy_simple_text_input::TextInputValue;
use mmo::api::LoggedIn;
use mmo::client::api::{ApiClient, ApiError, decode_connect_token, secure_transport, token_server};
use mmo::protocol::{ClientMessage, Request, SHUTTING_DOWN, ServerMessage};

use crate::alert::ShowAlert;
use crate::chat::Sidebar;
use crate::config::ClientConfig;
use crate::login::{LoginForm, LoginPanel, UsernameField};
use crate::net::{self, CONNECTION_LOST, FromServer, LinkEvent, ToServer};
use crate::screens::{self, Reconnecting, Screen};
use crate::theme::{self, Theme};
use remember::RememberedSession;

/// The status line while a login (with the password or a remembered session) is in flight.
pub const LOGGING_IN: &str = "Logging in…";
/// The status line after "Log out".
pub const LOGGED_OUT: &str = "Logged out";
/// What the chatbox says while the client reconnects.
pub const RECONNECTING: &str = "Reconnecting…";
/// How long the client keeps trying to reconnect before it goes back to the login screen.
pub const RECONNECT_FOR: Duration = Duration::from_secs(60);
/// Between two tries to reconnect.
const RETRY_EVERY: Duration = Duration::from_millis(500);

pub(crate) fn plugin(app: &mut App) {
    let config = app.world().resource::<ClientConfig>().clone();
    let Some(login_url) = config.login_url.clone() else {
        return;
    };
    let api = ApiClient::with_ca_file(&login_url, config.ca_cert.as_deref()).map_err(|error| {
        error!(%error, "cannot set up the HTTPS login");
        error.to_string()
    });
    let config_dir = config.config_dir();
    info!(%login_url, ca_cert = ?config.ca_cert, config_dir = ?config_dir, "token mode");
    app.insert_resource(TokenLogin {
        login_url,
        api,
        config_dir,
        remember: false,
        session: None,
        in_flight: None,
        logout: None,
    })
    .add_systems(
        Startup,
        (report_setup_error, resume_remembered_session).chain(),
    )
    .add_systems(PreUpdate, finish_requests.after(RenetReceive))
    .add_systems(PostUpdate, start_requests)
    .add_systems(
        Update,
        (add_remember_box, toggle_remember, show_remember)
            .chain()
            .run_if(in_state(Screen::Login)),
    )
    .add_systems(
        Update,
        (add_logout_button, log_out)
            .chain()
            .run_if(in_state(Screen::Chat)),
    )
    .add_systems(
        Update,
        (
            start_reconnecting.before(screens::back_to_login_when_lost),
            try_reconnecting.run_if(resource_exists::<Reconnecting>),
        ),
    );
}

/// Token mode's login state: the HTTPS client, the request in flight, the session of this login.
#[derive(Resource)]
pub struct TokenLogin {
    login_url: String,
    /// The HTTPS client, or why there is none (an unreadable `--ca-cert`), for the player.
    api: Result<ApiClient, String>,
    /// Where "Remember me" keeps the session (none without a home folder).
    config_dir: Option<PathBuf>,
    /// Whether "Remember me" is ticked.
    pub remember: bool,
    /// The session token of the current login, for "Log out".
    session: Option<String>,
    in_flight: Option<InFlight>,
    logout: Option<JoinHandle<Result<(), ApiError>>>,
}

impl TokenLogin {
    /// Whether an HTTPS request (a login, a registration or a logout) is still running.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some() || self.logout.is_some()
    }

    /// The file a remembered session is kept in.
    pub fn session_file(&self) -> Option<PathBuf> {
        self.config_dir.as_deref().map(remember::path_in)
    }
}

/// A login-screen request running on its thread.
enum InFlight {
    Register(JoinHandle<Result<String, ApiError>>),
    Login {
        job: JoinHandle<Result<LoggedIn, ApiError>>,
        /// Keep the session if it succeeds.
        remember: bool,
        /// With a remembered session rather than the password.
        resumed: bool,
    },
}

impl InFlight {
    fn is_finished(&self) -> bool {
        match self {
            InFlight::Register(job) => job.is_finished(),
            InFlight::Login { job, .. } => job.is_finished(),
        }
    }
}

/// Runs `work` (a blocking HTTPS request) on its own thread.
fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name("mmo-https-login".into())
        .spawn(work)
}

fn denied(request: Request, reason: impl Into<String>) -> FromServer {
    FromServer(ServerMessage::Denied {
        request,
        reason: reason.into(),
    })
}

fn report_setup_error(login: Res<TokenLogin>, mut alerts: MessageWriter<ShowAlert>) {
    if let Err(reason) = &login.api {
        alerts.write(ShowAlert(reason.clone()));
    }
}

/// At start: log in with the remembered session, if there is a valid one for this server.
fn resume_remembered_session(
    mut login: ResMut<TokenLogin>,
    mut form: ResMut<LoginForm>,
    mut username: Query<&mut TextInputValue, With<UsernameField>>,
) {
    let Some(dir) = login.config_dir.clone() else {
        return;
    };
    let path = remember::path_in(&dir);
    let session = match remember::load(&dir) {
        Ok(Some(session)) => session,
        Ok(None) => return,
        Err(error) => {
            warn!(%error, path = %path.display(), "cannot read the remembered session");
            if error.kind() == std::io::ErrorKind::InvalidData {
                forget(&dir);
            }
            return;
        }
    };
    if !session.is_for(&login.login_url) {
        info!(remembered_for = %session.login_url, "the remembered session is for another server");
        return;
    }
    if !session.is_usable(&login.login_url, remember::unix_now()) {
        info!(name = %session.name, "the remembered session has expired");
        forget(&dir);
        return;
    }
    let Ok(api) = login.api.clone() else {
        return;
    };
    let token = session.session_token.clone();
    let job = match in_background(move || api.resume(&token)) {
        Ok(job) => job,
        Err(error) => {
            error!(%error, "cannot start the login request");
            return;
        }
    };
    info!(name = %session.name, "logging in with the remembered session");
    login.remember = true;
    login.in_flight = Some(InFlight::Login {
        job,
        remember: true,
        resumed: true,
    });
    form.pending = Some(Request::Login);
    form.status = LOGGING_IN.to_owned();
    if let Ok(mut field) = username.single_mut()
        && field.0.is_empty()
    {
        field.0 = session.name;
    }
}

/// Turns the login form's Register and Login into HTTPS requests (`net` does not send them in token
/// mode).
fn start_requests(
    mut outbox: MessageReader<ToServer>,
    mut login: ResMut<TokenLogin>,
    mut inbox: MessageWriter<FromServer>,
) {
    for ToServer(message) in outbox.read() {
        let (request, username, password) = match message {
            ClientMessage::Register { username, password } => {
                (Request::Register, username.clone(), password.clone())
            }
            ClientMessage::Login { username, password } => {
                (Request::Login, username.clone(), password.clone())
            }
            _ => continue,
        };
        if login.in_flight.is_some() {
            // The form waits for one answer at a time; this cannot come from it.
            warn!(?request, "a login request is already in flight");
            continue;
        }
        let api = match &login.api {
            Ok(api) => api.clone(),
            Err(reason) => {
                inbox.write(denied(request, reason.clone()));
                continue;
            }
        };
        info!(?request, %username, url = %api.url(), "over HTTPS");
        let started = match request {
            Request::Register => {
                in_background(move || api.register(&username, &password)).map(InFlight::Register)
            }
            _ => {
                in_background(move || api.login(&username, &password)).map(|job| InFlight::Login {
                    job,
                    remember: login.remember,
                    resumed: false,
                })
            }
        };
        match started {
            Ok(in_flight) => login.in_flight = Some(in_flight),
            Err(error) => {
                error!(%error, "cannot start the login request");
                inbox.write(denied(
                    request,
                    format!("Cannot start the request: {error}"),
                ));
            }
        }
    }
}

/// Applies a finished request: its answer goes to the screens as a server message; a login connects.
fn finish_requests(
    mut commands: Commands,
    mut login: ResMut<TokenLogin>,
    mut inbox: MessageWriter<FromServer>,
    reconnecting: Option<Res<Reconnecting>>,
    mut next: ResMut<NextState<Screen>>,
    mut alerts: MessageWriter<ShowAlert>,
) {
    if login.logout.as_ref().is_some_and(JoinHandle::is_finished)
        && let Some(job) = login.logout.take()
    {
        match job.join() {
            Ok(Ok(())) => info!("session revoked"),
            Ok(Err(error)) => warn!(%error, "cannot revoke the session"),
            Err(_) => error!("the logout request panicked"),
        }
    }
    if !login.in_flight.as_ref().is_some_and(InFlight::is_finished) {
        return;
    }
    match login.in_flight.take() {
        Some(InFlight::Register(job)) => match job.join() {
            Ok(Ok(name)) => {
                info!(%name, "registered");
                inbox.write(FromServer(ServerMessage::Registered { username: name }));
            }
            Ok(Err(error)) => {
                info!(%error, "registration refused");
                inbox.write(denied(Request::Register, error.to_string()));
            }
            Err(_) => {
                error!("the registration request panicked");
                inbox.write(denied(Request::Register, "The registration failed"));
            }
        },
        Some(InFlight::Login {
            job,
            remember,
            resumed,
        }) => match job.join() {
            Ok(Ok(answer)) => match secure_link(&answer) {
                Ok((server, transport)) => {
                    info!(name = %answer.name, %server, resumed, "logged in over HTTPS");
                    commands.queue(net::connect_with(server, transport));
                    keep_session(&mut login, &answer, remember);
                }
                Err(reason) => {
                    warn!(%reason, "cannot use the connect token");
                    inbox.write(denied(Request::Login, reason));
                }
            },
            Ok(Err(error)) if reconnecting.is_some() => {
                let refused = matches!(error.status(), Some(400 | 401));
                info!(%error, refused, "cannot reconnect yet");
                if refused {
                    give_up(&mut commands, &mut next, &mut alerts, error.to_string());
                }
            }
            Ok(Err(error)) => {
                info!(%error, resumed, "login refused");
                if resumed
                    && matches!(error.status(), Some(400 | 401))
                    && let Some(dir) = &login.config_dir
                {
                    forget(dir);
                    login.remember = false;
                }
                inbox.write(denied(Request::Login, error.to_string()));
            }
            Err(_) => {
                error!("the login request panicked");
                inbox.write(denied(Request::Login, "The login failed"));
            }
        },
        None => {}
    }
}

/// A secure transport to the server the connect token names.
fn secure_link(answer: &LoggedIn) -> Result<(SocketAddr, NetcodeClientTransport), String> {
    let token = decode_connect_token(&answer.connect_token).map_err(|error| error.to_string())?;
    let server = token_server(&token)
        .ok_or("The login server sent a connect token without a server address")?;
    let transport = secure_transport(token)
        .map_err(|error| format!("Cannot connect to the server at {server}: {error}"))?;
    Ok((server, NetcodeClientTransport(transport)))
}

/// Holds on to the login's session (for "Log out"), and remembers it on disk or forgets the old one.
fn keep_session(login: &mut TokenLogin, answer: &LoggedIn, remember: bool) {
    login.session = Some(answer.session_token.clone());
    let Some(dir) = login.config_dir.clone() else {
        if remember {
            warn!(
                "no config folder (neither XDG_CONFIG_HOME nor HOME is set): the session is not remembered"
            );
        }
        return;
    };
    if !remember {
        forget(&dir);
        return;
    }
    let session = RememberedSession {
        login_url: login.login_url.clone(),
        name: answer.name.clone(),
        session_token: answer.session_token.clone(),
        session_expires_at: answer.session_expires_at,
    };
    let path = remember::path_in(&dir);
    match remember::save(&dir, &session) {
        Ok(()) => {
            info!(path = %path.display(), expires_at = answer.session_expires_at, "session remembered")
        }
        Err(error) => warn!(%error, path = %path.display(), "cannot remember the session"),
    }
}

/// Deletes the remembered session in `dir`, logging what happened.
fn forget(dir: &std::path::Path) {
    let path = remember::path_in(dir);
    match remember::forget(dir) {
        Ok(true) => info!(path = %path.display(), "remembered session forgotten"),
        Ok(false) => {}
        Err(error) => warn!(%error, path = %path.display(), "cannot delete the remembered session"),
    }
}

/// The "Remember me" checkbox and its label: pressing it toggles [`TokenLogin::remember`]. Not a
/// `Button` (the theme would paint it as one).
#[derive(Component)]
#[require(Interaction, FocusPolicy::Block)]
pub struct RememberMe;
/// The checkbox's square, outlined while hovered.
#[derive(Component)]
pub struct RememberBox;
/// The checkbox's mark, filled while ticked.
#[derive(Component)]
pub struct RememberTick;

fn tick_color(ticked: bool) -> Color {
    if ticked {
        theme::FIELD_FOCUS
    } else {
        Color::NONE
    }
}

/// Puts "Remember me" on the login panel, between the fields and the buttons.
fn add_remember_box(
    mut commands: Commands,
    theme: Res<Theme>,
    login: Res<TokenLogin>,
    panels: Query<Entity, Added<LoginPanel>>,
) {
    for panel in &panels {
        let checkbox = commands
            .spawn((
                RememberMe,
                Node {
                    align_self: AlignSelf::Center,
                    align_items: AlignItems::Center,
                    column_gap: px(8),
                    ..default()
                },
                children![
                    (
                        RememberBox,
                        Node {
                            width: px(18),
                            height: px(18),
                            border: UiRect::all(px(1)),
                            border_radius: BorderRadius::all(px(3)),
                            justify_content: JustifyContent::Center,
                            align_items: AlignItems::Center,
                            ..default()
                        },
                        BackgroundColor(theme::FIELD),
                        BorderColor::all(theme::FIELD_BORDER),
                        children![(
                            RememberTick,
                            Node {
                                width: px(10),
                                height: px(10),
                                border_radius: BorderRadius::all(px(2)),
                                ..default()
                            },
                            BackgroundColor(tick_color(login.remember)),
                        )],
                    ),
                    theme.text("Remember me", 18.0, theme::TEXT),
                ],
            ))
            .id();
        commands.entity(panel).insert_children(1, &[checkbox]);
    }
}

fn toggle_remember(
    mut login: ResMut<TokenLogin>,
    boxes: Query<&Interaction, (Changed<Interaction>, With<RememberMe>)>,
) {
    if boxes.iter().any(|i| *i == Interaction::Pressed) {
        login.remember = !login.remember;
        debug!(remember = login.remember, "remember me");
    }
}

fn show_remember(
    login: Res<TokenLogin>,
    checkbox: Query<&Interaction, With<RememberMe>>,
    mut squares: Query<&mut BorderColor, With<RememberBox>>,
    mut ticks: Query<&mut BackgroundColor, With<RememberTick>>,
) {
    let color = tick_color(login.remember);
    for mut background in &mut ticks {
        if background.0 != color {
            background.0 = color;
        }
    }
    let hovered = checkbox.iter().any(|i| *i != Interaction::None);
    let border = if hovered {
        theme::FIELD_FOCUS
    } else {
        theme::FIELD_BORDER
    };
    for mut square in &mut squares {
        if square.top != border {
            *square = BorderColor::all(border);
        }
    }
}

/// The chatbox's "Log out" button.
#[derive(Component)]
pub struct LogoutButton;

/// Puts "Log out" at the bottom of the chatbox's sidebar.
fn add_logout_button(
    mut commands: Commands,
    theme: Res<Theme>,
    sidebars: Query<Entity, Added<Sidebar>>,
) {
    for sidebar in &sidebars {
        let button = commands
            .spawn((
                Node {
                    margin: UiRect::top(Val::Auto),
                    justify_content: JustifyContent::Center,
                    ..default()
                },
                children![theme.button("Log out", LogoutButton)],
            ))
            .id();
        commands.entity(sidebar).add_child(button);
    }
}

/// "Log out": revoke the session on the server (in the background), forget it here, close the link and
/// go back to the login screen, with no "connection lost".
fn log_out(
    mut commands: Commands,
    mut login: ResMut<TokenLogin>,
    mut form: ResMut<LoginForm>,
    mut next: ResMut<NextState<Screen>>,
    pressed: Query<&Interaction, (Changed<Interaction>, With<LogoutButton>)>,
) {
    if !pressed.iter().any(|i| *i == Interaction::Pressed) {
        return;
    }
    info!("logging out");
    if let (Some(token), Ok(api)) = (login.session.take(), login.api.clone()) {
        match in_background(move || api.logout(&token)) {
            Ok(job) => login.logout = Some(job),
            Err(error) => error!(%error, "cannot start the logout request"),
        }
    }
    if let Some(dir) = login.config_dir.clone() {
        forget(&dir);
    }
    commands.queue(net::disconnect());
    commands.remove_resource::<Reconnecting>();
    form.status = LOGGED_OUT.to_owned();
    next.set(Screen::Login);
}

/// The connection was lost while chatting, not by a kick: with a session, the client reconnects.
fn start_reconnecting(
    mut commands: Commands,
    mut events: MessageReader<LinkEvent>,
    screen: Res<State<Screen>>,
    login: Res<TokenLogin>,
    reconnecting: Option<Res<Reconnecting>>,
    mut inbox: MessageWriter<FromServer>,
) {
    for event in events.read() {
        match event {
            LinkEvent::Lost(reason)
                if *screen.get() == Screen::Chat
                    && login.session.is_some()
                    && (reason == CONNECTION_LOST || reason == SHUTTING_DOWN) =>
            {
                let now = Instant::now();
                let since = reconnecting.as_ref().map_or(now, |r| r.since);
                info!(%reason, "connection lost; reconnecting");
                commands.insert_resource(Reconnecting {
                    since,
                    next_try: now,
                });
                inbox.write(FromServer(ServerMessage::System {
                    text: RECONNECTING.to_owned(),
                }));
            }
            // A new shard's connect token that does not work (it died too): ask again.
            LinkEvent::Unreachable(reason) if reconnecting.is_some() => {
                info!(%reason, "cannot reach the shard; asking again");
            }
            LinkEvent::Connected if reconnecting.is_some() => {
                info!("reconnected");
                commands.remove_resource::<Reconnecting>();
            }
            _ => {}
        }
    }
}

/// While reconnecting: trades the session for a new connect token every [`RETRY_EVERY`] (the answer
/// connects, in [`finish_requests`]), until [`RECONNECT_FOR`] has passed.
fn try_reconnecting(
    mut commands: Commands,
    mut reconnecting: ResMut<Reconnecting>,
    mut login: ResMut<TokenLogin>,
    link: Res<net::Link>,
    lost: Res<net::ServerAddress>,
    mut next: ResMut<NextState<Screen>>,
    mut alerts: MessageWriter<ShowAlert>,
) {
    let now = Instant::now();
    if login.in_flight.is_some()
        || !matches!(*link, net::Link::Offline)
        || now < reconnecting.next_try
    {
        return;
    }
    let expired = now.saturating_duration_since(reconnecting.since) >= RECONNECT_FOR;
    let (false, Some(token), Ok(api)) = (expired, login.session.clone(), login.api.clone()) else {
        give_up(
            &mut commands,
            &mut next,
            &mut alerts,
            CONNECTION_LOST.to_owned(),
        );
        return;
    };
    reconnecting.next_try = now + RETRY_EVERY;
    // The shard it lost (or could not reach) is named, so the new token sends it to another.
    let unreachable = Some(lost.0);
    match in_background(move || api.resume_avoiding(&token, unreachable)) {
        Ok(job) => {
            login.in_flight = Some(InFlight::Login {
                job,
                remember: login.remember,
                resumed: true,
            })
        }
        Err(error) => error!(%error, "cannot start the reconnection request"),
    }
}

/// Stops reconnecting: back to the login screen, saying why.
fn give_up(
    commands: &mut Commands,
    next: &mut NextState<Screen>,
    alerts: &mut MessageWriter<ShowAlert>,
    reason: String,
) {
    warn!(%reason, "cannot reconnect");
    commands.remove_resource::<Reconnecting>();
    next.set(Screen::Login);
    alerts.write(ShowAlert(reason));
}
