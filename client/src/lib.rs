//! mmo-client: the bundled Bevy client. A login screen and a chatbox modelled on the Godot tutorial's, with
//! the world above the chat log,
//! talking to the server through `mmo::protocol`. One plugin per module; [`logic`] is everything but the
//! window, so it also runs headless (tests), and [`windowed`] adds the window, rendering and text input.
//! In-band mode logs in over UDP; token mode (`--login-url`, the [`token`] plugin) logs in over HTTPS and
//! plays over encrypted UDP, with the same screens.

pub mod alert;
pub mod chat;
pub mod config;
pub mod focus;
pub mod frugal;
pub mod login;
pub mod net;
pub mod screens;
pub mod screenshot;
pub mod script;
pub mod theme;
pub mod token;
pub mod world;

use bevy::prelude::*;
use bevy_simple_text_input::{TextInputPlugin, TextInputSubmitMessage};

use config::ClientConfig;

/// The client's behaviour without a window: networking, screens, forms, chat log, alerts, script.
/// Needs `MinimalPlugins` (or `DefaultPlugins`) and `StatesPlugin` first.
pub fn logic(config: ClientConfig) -> impl Plugin {
    move |app: &mut App| {
        // The text input widget registers this too; headless apps run without the widget.
        app.add_message::<TextInputSubmitMessage>()
            .insert_resource(net::ServerAddress(config.server))
            .insert_resource(if config.token_mode() {
                net::LinkMode::Token
            } else {
                net::LinkMode::InBand
            })
            .insert_resource(config.clone())
            .add_plugins((
                theme::plugin,
                net::plugin,
                screens::plugin,
                focus::plugin,
                alert::plugin,
                login::plugin,
                chat::plugin,
                script::plugin,
                token::plugin,
                world::plugin,
            ));
    }
}

/// The whole windowed client.
pub fn windowed(config: ClientConfig) -> App {
    let mut app = App::new();
    let assets = config.assets_dir();
    app.add_plugins(
        DefaultPlugins
            .set(WindowPlugin {
                primary_window: Some(Window {
                    title: "mmo".into(),
                    resolution: (1024, 640).into(),
                    ..default()
                }),
                ..default()
            })
            .set(AssetPlugin {
                file_path: assets.to_string_lossy().into_owned(),
                ..default()
            }),
    )
    .add_plugins(TextInputPlugin)
    .add_plugins(logic(config))
    .add_plugins((chat::wheel_plugin, screenshot::plugin, frugal::plugin))
    .add_systems(Startup, |mut commands: Commands| {
        commands.spawn(Camera2d);
    });
    app
}
