//! Client configuration: which server, where the assets are, and the scripted mode used for screenshots
//! and demos. Every flag has an environment twin.

use std::net::SocketAddr;
use std::path::PathBuf;

use bevy::prelude::Resource;
use clap::Parser;

/// mmo-client: log in to an mmo server and chat.
#[derive(Parser, Resource, Debug, Clone)]
#[command(name = "mmo-client", version, about, long_about = None)]
pub struct ClientConfig {
    /// The server's UDP address.
    #[arg(long, env = "MMO_SERVER", default_value = "127.0.0.1:5000")]
    pub server: SocketAddr,

    /// The assets folder (font). Defaults to the repository's `assets/`, wherever the client is started.
    #[arg(long, env = "MMO_ASSETS")]
    pub assets: Option<PathBuf>,

    /// Fill in the username field.
    #[arg(long, env = "MMO_USERNAME")]
    pub username: Option<String>,

    /// Fill in the password field.
    #[arg(long, env = "MMO_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,

    /// Scripted: press Register (a taken name is fine), then Login, dismissing the alerts.
    #[arg(long)]
    pub auto_login: bool,

    /// Scripted: say this in chat after login (repeatable; one line a second).
    #[arg(long = "say", value_name = "TEXT")]
    pub say: Vec<String>,

    /// Scripted: wait this many seconds in the chat before the first `--say`.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.5)]
    pub say_after: f32,

    /// Save a PNG of the window to PATH once the UI has settled, then exit.
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,

    /// Seconds to wait, after the scripted steps are done, before the screenshot.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.5)]
    pub screenshot_delay: f32,

    /// Exit by itself after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub exit_after: Option<f32>,
}

impl ClientConfig {
    /// The defaults, talking to `server` (for tests).
    pub fn new(server: SocketAddr) -> Self {
        let mut config = Self::parse_from(["mmo-client"]);
        config.server = server;
        config
    }

    /// The assets folder: the flag, else the repository's `assets/` this client was built from, else
    /// `assets/` beside the executable, else `./assets`.
    pub fn assets_dir(&self) -> PathBuf {
        if let Some(dir) = &self.assets {
            return dir.clone();
        }
        let built_from = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets"));
        let beside_exe = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("assets")));
        [Some(built_from), beside_exe]
            .into_iter()
            .flatten()
            .find(|dir| dir.join(crate::theme::FONT_PATH).is_file())
            .unwrap_or_else(|| PathBuf::from("assets"))
    }
}
