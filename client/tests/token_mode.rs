//! Token mode (`--login-url`), as the player sees it: the same login screen, Register and Login over
//! real HTTPS (the server's self-signed certificate, trusted with `--ca-cert`), then chat over encrypted
//! UDP; "Remember me" logging in by itself on the next start; "Log out" revoking the session; the
//! server's wording in alerts; an unreachable or untrusted login server said so.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_renet::RenetClient;
use common::*;
use mmo::client::api::ApiClient;
use mmo::config::{AuthMode, Config};
use mmo::protocol::{ClientMessage, ServerMessage};
use mmo::server::ServerHandle;
use mmo_client::alert::DismissAlert;
use mmo_client::chat::{ChatInput, ChatLog};
use mmo_client::config::ClientConfig;
use mmo_client::login::{
    LoginButton, LoginForm, PasswordField, RegisterButton, StatusLine, UsernameField,
};
use mmo_client::net::Link;
use mmo_client::screens::Screen;
use mmo_client::theme::Disabled;
use mmo_client::token::remember::{self, RememberedSession};
use mmo_client::token::{LOGGED_OUT, LogoutButton, RECONNECTING, RememberMe, TokenLogin};

const PASSWORD: &str = "alice's password";

/// The configuration of a server in token mode on loopback, HTTPS on an ephemeral port with its
/// self-signed certificate.
fn token_config_of_server(dir: &Path) -> Config {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.join("db.sqlite3"));
    config.auth = AuthMode::Token;
    config.http_bind = Some("127.0.0.1:0".parse().unwrap());
    config
}

/// A server of [`token_config_of_server`], started.
fn token_server(dir: &Path) -> ServerHandle {
    ServerHandle::spawn(token_config_of_server(dir)).expect("server starts")
}

/// The server's login URL and the certificate to trust.
fn https(server: &ServerHandle) -> (String, PathBuf) {
    let info = server.https().expect("token mode serves HTTPS");
    (info.url.clone(), info.cert_path.clone())
}

/// A client in token mode against `login_url`, trusting `ca_cert`, remembering in `config_dir`.
fn token_config(login_url: &str, ca_cert: Option<&Path>, config_dir: &Path) -> ClientConfig {
    let mut config = ClientConfig::new(nowhere());
    config.login_url = Some(login_url.to_owned());
    config.ca_cert = ca_cert.map(Path::to_owned);
    config.config_dir = Some(config_dir.to_owned());
    config
}

fn token_client(server: &ServerHandle, config_dir: &Path) -> App {
    let (url, cert) = https(server);
    headless_client_with(token_config(&url, Some(&cert), config_dir))
}

fn api(server: &ServerHandle) -> ApiClient {
    let (url, cert) = https(server);
    ApiClient::with_ca_file(&url, Some(&cert)).unwrap()
}

fn status(app: &mut App) -> String {
    texts_of::<StatusLine>(app).concat()
}

fn log_has(app: &App, line: &str) -> bool {
    app.world().resource::<ChatLog>().texts().contains(&line)
}

fn log_in(app: &mut App, username: &str, password: &str) {
    type_into::<UsernameField>(app, username);
    type_into::<PasswordField>(app, password);
    click::<LoginButton>(app);
}

fn wait_for_chat(app: &mut App) {
    run_until(app, "the chatbox", || {}, |app| screen(app) == Screen::Chat);
}

#[test]
fn a_server_that_stops_and_comes_back_is_reconnected_to_with_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let https_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::new(udp.local_addr().unwrap(), dir.path().join("db.sqlite3"));
    config.auth = AuthMode::Token;
    config.http_bind = Some(https_port.local_addr().unwrap());
    drop((udp, https_port));
    let server = ServerHandle::spawn(config.clone()).expect("server starts");
    api(&server).register("alice", PASSWORD).unwrap();
    let mut app = token_client(&server, &dir.path().join("conf"));
    log_in(&mut app, "alice", PASSWORD);
    wait_for_chat(&mut app);

    // The server stops (players are told it is shutting down): the chatbox stays and says so.
    server.stop();
    run_until(
        &mut app,
        "the reconnecting notice",
        || {},
        |app| log_has(app, RECONNECTING),
    );
    assert_eq!(screen(&app), Screen::Chat);
    assert_eq!(alert(&app), None);

    // Back on the same addresses: the client is in again by itself, with its session.
    let server = ServerHandle::spawn(config).expect("server starts again");
    run_until(
        &mut app,
        "the reconnection",
        || {},
        |app| {
            app.world().resource::<Link>().is_online()
                && app.world().resource::<ChatLog>().me.as_deref() == Some("alice")
                && !log_has(app, RECONNECTING)
        },
    );
    assert_eq!(screen(&app), Screen::Chat);
    let api = api(&server);
    api.register("bob", "bob's password").unwrap();
    let mut bob = Peer::log_in(&api, "bob", "bob's password");
    bob.send(&ClientMessage::Chat {
        text: "welcome back".into(),
    });
    run_until(
        &mut app,
        "bob's line",
        || bob.pump(),
        |app| log_has(app, "bob says: \"welcome back\""),
    );
}

/// A UDP relay in front of a server that can go silent: not a packet more either way, not even a
/// disconnect, as a shard that froze or died looks to its players. Each client address gets its own
/// socket towards the server, so a reconnecting client is a new peer there.
struct Relay {
    silent: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(front: UdpSocket, server: SocketAddr) -> Self {
        front.set_nonblocking(true).unwrap();
        let (silent, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (quiet, done) = (silent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut backs: Vec<(SocketAddr, UdpSocket)> = Vec::new();
            let mut buf = [0u8; 2048];
            while !done.load(Ordering::SeqCst) {
                while let Ok((n, client)) = front.recv_from(&mut buf) {
                    if !backs.iter().any(|(c, _)| *c == client) {
                        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
                        back.connect(server).unwrap();
                        back.set_nonblocking(true).unwrap();
                        backs.push((client, back));
                    }
                    if !quiet.load(Ordering::SeqCst) {
                        let (_, back) = backs.iter().find(|(c, _)| *c == client).unwrap();
                        let _ = back.send(&buf[..n]);
                    }
                }
                for (client, back) in &backs {
                    while let Ok(n) = back.recv(&mut buf) {
                        if !quiet.load(Ordering::SeqCst) {
                            let _ = front.send_to(&buf[..n], client);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Self {
            silent,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_server_gone_silent_is_given_up_on_within_seconds_and_reconnected_to() {
    let dir = tempfile::tempdir().unwrap();
    // Players reach the server through the relay: its address is the one connect tokens name.
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = token_config_of_server(dir.path());
    config.public_addr = Some(front.local_addr().unwrap());
    let server = ServerHandle::spawn(config).expect("server starts");
    let relay = Relay::start(front, server.addr());
    api(&server).register("alice", PASSWORD).unwrap();
    let mut app = token_client(&server, &dir.path().join("conf"));
    log_in(&mut app, "alice", PASSWORD);
    wait_for_chat(&mut app);

    // Silence: the client gives up on the server after SERVER_SILENT_LIMIT (3 s), not at netcode's
    // timeout (15 s), and says it is reconnecting.
    relay.silent.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    run_until(
        &mut app,
        "the reconnecting notice",
        || {},
        |app| log_has(app, RECONNECTING),
    );
    assert!(
        cut.elapsed() < Duration::from_secs(10),
        "noticed after {:?}",
        cut.elapsed()
    );
    assert_eq!(screen(&app), Screen::Chat);

    // The server answers again: the client is back in by itself, with its session.
    relay.silent.store(false, Ordering::SeqCst);
    run_until(
        &mut app,
        "the reconnection",
        || {},
        |app| app.world().resource::<Link>().is_online() && !log_has(app, RECONNECTING),
    );
    assert_eq!(
        app.world().resource::<ChatLog>().me.as_deref(),
        Some("alice")
    );
}

#[test]
fn register_log_in_and_chat_over_https_and_encrypted_udp() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path());
    let config_dir = dir.path().join("conf");
    let mut app = token_client(&server, &config_dir);
    assert!(
        app.world().get_resource::<RenetClient>().is_none(),
        "token mode does not connect before the login"
    );

    type_into::<UsernameField>(&mut app, "alice");
    type_into::<PasswordField>(&mut app, PASSWORD);
    click::<RegisterButton>(&mut app);
    let register_button = entity_with::<RegisterButton>(&mut app);
    if alert(&app).is_none() {
        assert_eq!(status(&mut app), "Registering…");
        assert!(
            app.world().get::<Disabled>(register_button).is_some(),
            "buttons are disabled while the request runs"
        );
    }
    run_until(&mut app, "registration", || {}, |app| alert(app).is_some());
    assert_eq!(alert(&app).as_deref(), Some("Registration successful"));
    app.world_mut().write_message(DismissAlert);
    app.update();

    // The same name again: the server's wording.
    click::<RegisterButton>(&mut app);
    run_until(&mut app, "the refusal", || {}, |app| alert(app).is_some());
    assert_eq!(
        alert(&app).as_deref(),
        Some("This username is already taken")
    );
    app.world_mut().write_message(DismissAlert);
    app.update();

    click::<LoginButton>(&mut app);
    assert_eq!(status(&mut app), "Logging in…");
    wait_for_chat(&mut app);
    assert_eq!(
        app.world().resource::<ChatLog>().me.as_deref(),
        Some("alice")
    );
    assert!(
        !config_dir.join(remember::FILE_NAME).exists(),
        "without Remember me nothing is kept"
    );

    // bob logs in the same way and speaks; alice's log shows it.
    let api = api(&server);
    api.register("bob", "bob's password").unwrap();
    let mut bob = Peer::log_in(&api, "bob", "bob's password");
    bob.send(&ClientMessage::Chat {
        text: "hi alice".into(),
    });
    run_until(
        &mut app,
        "bob's line",
        || bob.pump(),
        |app| log_has(app, "bob says: \"hi alice\""),
    );
    assert_eq!(app.world().resource::<ChatLog>().online, ["alice", "bob"]);

    // alice answers with Enter in the chat line; both see it under her name.
    type_into::<ChatInput>(&mut app, "hello bob, ça va?");
    press_enter::<ChatInput>(&mut app);
    run_until(
        &mut app,
        "alice's own line",
        || bob.pump(),
        |app| log_has(app, "alice says: \"hello bob, ça va?\""),
    );
    bob.wait_for("alice's line", |m| {
        matches!(m, ServerMessage::Chat(l) if l.sender == "alice" && l.text == "hello bob, ça va?")
    });

    // alice logs in elsewhere: this client goes back to the login screen and says why.
    let _elsewhere = Peer::log_in(&api, "alice", PASSWORD);
    run_until(
        &mut app,
        "the kick",
        || bob.pump(),
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
fn remember_me_logs_in_by_itself_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path());
    api(&server).register("alice", PASSWORD).unwrap();
    let config_dir = dir.path().join("conf").join("mmo");

    let mut app = token_client(&server, &config_dir);
    assert!(!app.world().resource::<TokenLogin>().remember);
    click::<RememberMe>(&mut app);
    assert!(
        app.world().resource::<TokenLogin>().remember,
        "clicking the box ticks it"
    );
    log_in(&mut app, "alice", PASSWORD);
    wait_for_chat(&mut app);

    let saved = remember::load(&config_dir)
        .unwrap()
        .expect("the session is remembered");
    assert_eq!(saved.name, "alice");
    assert_eq!(saved.login_url, https(&server).0);
    assert!(saved.session_expires_at > remember::unix_now());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(remember::path_in(&config_dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner can read it");
    }
    drop(app);

    // The next start: no typing, no clicks.
    let mut app = token_client(&server, &config_dir);
    assert_eq!(status(&mut app), "Logging in…");
    assert!(
        app.world().resource::<LoginForm>().pending.is_some(),
        "the buttons wait"
    );
    let username = entity_with::<UsernameField>(&mut app);
    assert_eq!(
        app.world()
            .get::<bevy_simple_text_input::TextInputValue>(username)
            .unwrap()
            .0,
        "alice",
        "the remembered name shows"
    );
    wait_for_chat(&mut app);
    assert_eq!(
        app.world().resource::<ChatLog>().me.as_deref(),
        Some("alice")
    );
    assert!(alert(&app).is_none(), "{:?}", alert(&app));
    assert!(
        remember::load(&config_dir).unwrap().is_some(),
        "still remembered"
    );

    drop(app);
    server.stop();
}

#[test]
fn log_out_revokes_the_session_forgets_it_and_returns_to_the_login_screen() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path());
    let api = api(&server);
    api.register("alice", PASSWORD).unwrap();
    api.register("bob", "bob's password").unwrap();
    let config_dir = dir.path().join("conf");

    let mut app = token_client(&server, &config_dir);
    click::<RememberMe>(&mut app);
    log_in(&mut app, "alice", PASSWORD);
    wait_for_chat(&mut app);
    let saved = remember::load(&config_dir).unwrap().expect("remembered");
    let mut bob = Peer::log_in(&api, "bob", "bob's password");

    click::<LogoutButton>(&mut app);
    app.update();
    assert_eq!(screen(&app), Screen::Login);
    assert!(matches!(*app.world().resource::<Link>(), Link::Offline));
    assert!(
        !remember::path_in(&config_dir).exists(),
        "the remembered session is forgotten"
    );
    run_until(
        &mut app,
        "the logout request",
        || bob.pump(),
        |app| !app.world().resource::<TokenLogin>().busy(),
    );
    let refused = api
        .resume(&saved.session_token)
        .expect_err("the session is revoked");
    assert_eq!(refused.status(), Some(401), "{refused}");

    // bob sees alice leave at once (the client said goodbye), and no "connection lost" shows here.
    bob.wait_for(
        "alice left",
        |m| matches!(m, ServerMessage::PlayerLeft { name } if name == "alice"),
    );
    for _ in 0..20 {
        app.update();
    }
    assert_eq!(alert(&app), None, "a deliberate logout raises no alert");
    assert_eq!(status(&mut app), LOGGED_OUT);
    assert_eq!(screen(&app), Screen::Login);

    // The same login works again from the login screen.
    log_in(&mut app, "alice", PASSWORD);
    wait_for_chat(&mut app);
    drop(app);

    // A remembered session the server no longer honours: forgotten, with the server's words.
    remember::save(&config_dir, &saved).unwrap();
    let mut app = token_client(&server, &config_dir);
    run_until(&mut app, "the refusal", || {}, |app| alert(app).is_some());
    assert_eq!(screen(&app), Screen::Login);
    assert!(
        app.world().resource::<LoginForm>().pending.is_none(),
        "the form is usable"
    );
    assert!(
        !remember::path_in(&config_dir).exists(),
        "the dead session is forgotten"
    );
    drop(app);
    server.stop();
}

#[test]
fn a_wrong_password_shows_the_servers_words() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path());
    api(&server).register("alice", PASSWORD).unwrap();
    let mut app = token_client(&server, &dir.path().join("conf"));
    log_in(&mut app, "alice", "not the password");
    run_until(&mut app, "the refusal", || {}, |app| alert(app).is_some());
    assert_eq!(
        alert(&app).as_deref(),
        Some("Username or password incorrect")
    );
    assert_eq!(screen(&app), Screen::Login);
    assert!(app.world().resource::<LoginForm>().pending.is_none());
    assert!(app.world().get_resource::<RenetClient>().is_none());
    drop(app);
    server.stop();
}

#[test]
fn an_untrusted_certificate_is_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = token_server(dir.path());
    api(&server).register("alice", PASSWORD).unwrap();
    // No --ca-cert: the self-signed certificate is not among the public roots.
    let mut app = headless_client_with(token_config(
        &https(&server).0,
        None,
        &dir.path().join("conf"),
    ));
    log_in(&mut app, "alice", PASSWORD);
    run_until(&mut app, "the alert", || {}, |app| alert(app).is_some());
    let text = alert(&app).unwrap();
    assert!(text.contains("not trusted"), "{text}");
    assert_eq!(screen(&app), Screen::Login);
    assert!(app.world().resource::<LoginForm>().pending.is_none());
    drop(app);
    server.stop();
}

#[test]
fn an_unreachable_login_server_is_said_so_and_nothing_goes_over_udp() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let mut app = headless_client_with(token_config(&url, None, dir.path()));
    log_in(&mut app, "alice", PASSWORD);
    run_until(&mut app, "the alert", || {}, |app| alert(app).is_some());
    let text = alert(&app).unwrap();
    assert!(
        text.starts_with(&format!("Cannot reach the login server at {url}")),
        "{text}"
    );
    assert!(app.world().resource::<LoginForm>().pending.is_none());
    assert!(
        app.world().get_resource::<RenetClient>().is_none(),
        "the password never goes over UDP"
    );
}

#[test]
fn remember_me_is_on_the_login_screen_in_token_mode_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut token = headless_client_with(token_config("https://127.0.0.1:9", None, dir.path()));
    entity_with::<RememberMe>(&mut token);
    let labels = texts_of::<Text>(&mut token);
    assert!(labels.iter().any(|l| l == "Remember me"), "{labels:?}");

    let mut in_band = headless_client(nowhere());
    let world = in_band.world_mut();
    assert_eq!(
        world
            .query_filtered::<(), With<RememberMe>>()
            .iter(world)
            .count(),
        0
    );
}

#[test]
fn a_remembered_session_that_expired_or_belongs_elsewhere_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let url = "https://127.0.0.1:9";
    let session = |login_url: &str, expires_at: u64| RememberedSession {
        login_url: login_url.into(),
        name: "alice".into(),
        session_token: "dG9rZW4".into(),
        session_expires_at: expires_at,
    };

    remember::save(dir.path(), &session(url, 1_000)).unwrap();
    let mut app = headless_client_with(token_config(url, None, dir.path()));
    assert!(app.world().resource::<LoginForm>().pending.is_none());
    assert_eq!(status(&mut app), "");
    assert!(
        !remember::path_in(dir.path()).exists(),
        "an expired session is forgotten"
    );
    drop(app);

    let later = remember::unix_now() + 3600;
    remember::save(
        dir.path(),
        &session("https://elsewhere.example:5443", later),
    )
    .unwrap();
    let app = headless_client_with(token_config(url, None, dir.path()));
    assert!(app.world().resource::<LoginForm>().pending.is_none());
    assert!(
        remember::path_in(dir.path()).exists(),
        "another server's session is left alone"
    );
}

#[test]
fn an_unreadable_ca_certificate_is_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-cert.pem");
    let mut app = headless_client_with(token_config(
        "https://127.0.0.1:9",
        Some(&missing),
        dir.path(),
    ));
    let text = alert(&app).expect("an alert at start");
    assert!(
        text.to_lowercase()
            .contains("cannot read the ca certificate")
            && text.contains("no-such-cert.pem"),
        "{text}"
    );
    app.world_mut().write_message(DismissAlert);
    app.update();

    // Logging in says it again rather than trying without the certificate.
    log_in(&mut app, "alice", PASSWORD);
    app.update();
    assert_eq!(alert(&app), Some(text));
    assert!(app.world().resource::<LoginForm>().pending.is_none());
}
