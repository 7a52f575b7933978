//! Client configuration: which server, how to log in (in-band, or token mode with `--login-url`), where
//! the assets and the remembered session are, and the scripted mode used for screenshots and demos.
//! Every flag has an environment twin.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use bevy::prelude::Resource;
use clap::Parser;

/// mmo-client: log in to an mmo server and chat.
#[derive(Parser, Resource, Debug, Clone)]
#[command(name = "mmo-client", version, about, long_about = None)]
pub struct ClientConfig {
    /// The server's UDP address (in-band mode; in token mode the login server says where to connect).
    #[arg(long, env = "MMO_SERVER", default_value = "127.0.0.1:5000")]
    pub server: SocketAddr,

    /// Token mode: log in over HTTPS at this address (`https://HOST:PORT`, the server's `--http-bind`),
    /// then play over encrypted UDP. Without it the client logs in in-band, over UDP.
    #[arg(long, env = "MMO_LOGIN_URL", value_parser = parse_login_url)]
    pub login_url: Option<String>,

    /// Token mode: trust the login server's certificate in this PEM file (a self-signed server's
    /// `cert.pem`, written beside its database). Without it, only publicly trusted certificates pass.
    #[arg(long, env = "MMO_CA_CERT", value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,

    /// Where "Remember me" keeps the session [default: $XDG_CONFIG_HOME/mmo, else $HOME/.config/mmo].
    #[arg(long, env = "MMO_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

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

    /// Whether this client logs in over HTTPS (`--login-url`).
    pub fn token_mode(&self) -> bool {
        self.login_url.is_some()
    }

    /// Where the remembered session lives: the flag, else the platform's user config folder (none when
    /// neither `XDG_CONFIG_HOME` nor `HOME` is set).
    pub fn config_dir(&self) -> Option<PathBuf> {
        self.config_dir.clone().or_else(|| {
            default_config_dir(
                std::env::var_os("XDG_CONFIG_HOME"),
                std::env::var_os("HOME"),
            )
        })
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

/// `$XDG_CONFIG_HOME/mmo` (when set and absolute, as the XDG spec asks), else `$HOME/.config/mmo`.
pub fn default_config_dir(
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let absolute =
        |value: Option<OsString>| value.map(PathBuf::from).filter(|path| path.is_absolute());
    absolute(xdg_config_home)
        .or_else(|| absolute(home).map(|home| home.join(".config")))
        .map(|base| base.join("mmo"))
}

/// A login server address: `https://` and a host (the login answers carry secrets: plain HTTP is
/// refused).
fn parse_login_url(text: &str) -> Result<String, String> {
    let url = text.trim().trim_end_matches('/');
    match url.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(url.to_owned()),
        Some(_) => Err(format!("{text:?} has no host")),
        None => Err(format!(
            "{text:?} is not an https:// address (token mode logs in over HTTPS only)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn without_a_login_url_the_client_stays_in_band() {
        let config = ClientConfig::try_parse_from(["mmo-client"]).unwrap();
        assert_eq!(config.login_url, None);
        assert!(!config.token_mode());
    }

    #[test]
    fn a_login_url_selects_token_mode_with_its_certificate_and_folder() {
        let config = ClientConfig::try_parse_from([
            "mmo-client",
            "--login-url",
            "https://play.example.org:5443/",
            "--ca-cert",
            "/srv/mmo/cert.pem",
            "--config-dir",
            "/tmp/mmo-conf",
        ])
        .unwrap();
        assert!(config.token_mode());
        assert_eq!(
            config.login_url.as_deref(),
            Some("https://play.example.org:5443"),
            "a trailing slash is dropped"
        );
        assert_eq!(config.ca_cert, Some(PathBuf::from("/srv/mmo/cert.pem")));
        assert_eq!(config.config_dir(), Some(PathBuf::from("/tmp/mmo-conf")));
    }

    #[test]
    fn a_login_url_must_be_https_with_a_host() {
        for bad in [
            "http://127.0.0.1:5443",
            "127.0.0.1:5443",
            "https://",
            "https:// x",
        ] {
            assert!(
                ClientConfig::try_parse_from(["mmo-client", "--login-url", bad]).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn the_config_folder_follows_xdg_then_home() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            default_config_dir(os("/x/conf"), os("/home/a")),
            Some(PathBuf::from("/x/conf/mmo"))
        );
        assert_eq!(
            default_config_dir(None, os("/home/a")),
            Some(PathBuf::from("/home/a/.config/mmo"))
        );
        assert_eq!(
            default_config_dir(os("relative/conf"), os("/home/a")),
            Some(PathBuf::from("/home/a/.config/mmo")),
            "a relative XDG_CONFIG_HOME is ignored, as the spec asks"
        );
        assert_eq!(default_config_dir(os(""), None), None);
    }
}
