//! A headless client app (MinimalPlugins, no window) and helpers that act like a player on it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy::state::app::StatesPlugin;
use bevy_simple_text_input::{TextInputSubmitMessage, TextInputValue};
use mmo::client::NetClient;
use mmo::client::api::{ApiClient, decode_connect_token};
use mmo::protocol::{ClientMessage, ServerMessage};
use mmo_client::alert::Alerts;
use mmo_client::config::ClientConfig;
use mmo_client::net::ToServer;
use mmo_client::screens::Screen;

/// Everything the client asked the network plugin to send, in order.
#[derive(Resource, Default, Debug)]
pub struct Sent(pub Vec<ClientMessage>);

fn record_sent(mut outbox: MessageReader<ToServer>, mut sent: ResMut<Sent>) {
    sent.0.extend(outbox.read().map(|m| m.0.clone()));
}

/// The client's logic with no window, talking to `server`.
pub fn headless_client(server: SocketAddr) -> App {
    headless_client_with(ClientConfig::new(server))
}

/// The client's logic with no window, configured by `config`.
pub fn headless_client_with(config: ClientConfig) -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, StatesPlugin))
        .add_plugins(mmo_client::logic(config))
        .init_resource::<Sent>()
        .add_systems(Last, record_sent);
    app.finish();
    app.cleanup();
    app.update();
    app
}

/// An address where nothing listens.
pub fn nowhere() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

pub fn entity_with<C: Component>(app: &mut App) -> Entity {
    let world = app.world_mut();
    world
        .query_filtered::<Entity, With<C>>()
        .single(world)
        .expect("exactly one such entity")
}

/// Types into a text field (the way the widget stores what the player typed).
pub fn type_into<C: Component>(app: &mut App, text: &str) {
    let entity = entity_with::<C>(app);
    app.world_mut().get_mut::<TextInputValue>(entity).unwrap().0 = text.to_owned();
}

/// Presses Enter in a text field.
pub fn press_enter<C: Component>(app: &mut App) {
    let entity = entity_with::<C>(app);
    let value = app.world().get::<TextInputValue>(entity).unwrap().0.clone();
    app.world_mut()
        .write_message(TextInputSubmitMessage { entity, value });
    app.update();
}

/// Clicks a button: pressed for one frame, then released.
pub fn click<C: Component>(app: &mut App) {
    let entity = entity_with::<C>(app);
    *app.world_mut().get_mut::<Interaction>(entity).unwrap() = Interaction::Pressed;
    app.update();
    *app.world_mut().get_mut::<Interaction>(entity).unwrap() = Interaction::None;
    app.update();
}

pub fn screen(app: &App) -> Screen {
    *app.world().resource::<State<Screen>>().get()
}

pub fn alert(app: &App) -> Option<String> {
    app.world()
        .resource::<Alerts>()
        .current()
        .map(str::to_owned)
}

/// Runs frames (and `also`, e.g. another player's loop) until `done` holds, for at most 20 s.
pub fn run_until(
    app: &mut App,
    what: &str,
    mut also: impl FnMut(),
    mut done: impl FnMut(&mut App) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(app) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; alert: {:?}",
            alert(app)
        );
        app.update();
        also();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The texts of the given component's `Text` entities.
pub fn texts_of<C: Component>(app: &mut App) -> Vec<String> {
    let world = app.world_mut();
    world
        .query_filtered::<&Text, With<C>>()
        .iter(world)
        .map(|t| t.0.clone())
        .collect()
}

/// Another player, on the plain library client (in-band, or over HTTPS and secure UDP).
pub struct Peer {
    net: NetClient,
    pub inbox: Vec<ServerMessage>,
}

impl Peer {
    /// In-band: connects to `addr` (log in by sending messages).
    pub fn connect(addr: SocketAddr) -> Self {
        Self {
            net: NetClient::connect(addr, 60).unwrap(),
            inbox: Vec::new(),
        }
    }

    /// Token mode: logs in over HTTPS and connects with the connect token.
    pub fn log_in(api: &ApiClient, username: &str, password: &str) -> Self {
        let answer = api.login(username, password).expect("peer logs in");
        let token = decode_connect_token(&answer.connect_token).unwrap();
        let mut peer = Self {
            net: NetClient::connect_with_token(token, 60).unwrap(),
            inbox: Vec::new(),
        };
        peer.wait_for("logged in", |m| matches!(m, ServerMessage::LoggedIn { .. }));
        peer
    }

    pub fn pump(&mut self) {
        self.net.pump(&mut self.inbox).unwrap();
    }

    pub fn send(&mut self, message: &ClientMessage) {
        self.net.send(message);
    }

    pub fn wait_for(&mut self, what: &str, matches: impl Fn(&ServerMessage) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.inbox.iter().any(&matches) {
            assert!(
                Instant::now() < deadline,
                "peer timed out waiting for {what}: {:?}",
                self.inbox
            );
            self.pump();
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
