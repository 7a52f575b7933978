//! Token mode's HTTPS API, as both sides see it: the paths, the JSON bodies, and what a connect token
//! carries for the server in its user data.
//!
//! The shape follows the second seed's Flask endpoint: the client POSTs `{"username", "password"}` as
//! JSON and gets back a token that authenticates it with the real-time server. Every error is
//! `{"error": "..."}` with the same wording the in-band `Denied` uses, under a proper status code:
//!
//! | request | success | errors |
//! |---|---|---|
//! | `POST /api/register` [`Credentials`] | 201 [`Registered`] | 400, 409, 413, 415, 429, 503 |
//! | `POST /api/login` [`Credentials`] | 200 [`LoggedIn`] | 400, 401, 413, 415, 429, 503 |
//! | `POST /api/session` [`SessionToken`] | 200 [`LoggedIn`] (a fresh connect token) | 400, 401, 429, 503 |
//! | `POST /api/logout` [`SessionToken`] | 204 | 400, 503 |
//! | `POST /api/password` [`PasswordChange`] | 200 [`Registered`] (every session revoked) | 400, 401, 429, 503 |
//! | `GET /api/health` | 200 [`Health`] | |
//! | `GET /` | the web client (`web/`, embedded) | |
//! | `GET /ws` (WebSocket) | the WebSocket transport ([`crate::protocol::WS_PATH`] has the wire) | 400, 403, 429, 503 |
//!
//! Compiled without the `server` feature: the bundled client, the load generator and third-party tools
//! share these types.

use serde::{Deserialize, Serialize};

pub const REGISTER: &str = "/api/register";
pub const LOGIN: &str = "/api/login";
pub const SESSION: &str = "/api/session";
pub const LOGOUT: &str = "/api/logout";
pub const PASSWORD: &str = "/api/password";
pub const HEALTH: &str = "/api/health";

/// The largest request body the server reads; a larger one is refused with 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// What a client sent in token mode's UDP login path instead of logging in over HTTPS.
pub const USE_HTTPS: &str = "Log in over HTTPS on this server";

/// The body of `POST /api/register` and `POST /api/login`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The answer to a registration (and to a password change): the account's display name.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub name: String,
}

/// The answer to a login or a session resume.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LoggedIn {
    /// The account's display name.
    pub name: String,
    /// A netcode secure-mode connect token, standard base64: hand it to the UDP client within its
    /// expiry (under a minute).
    pub connect_token: String,
    /// Trades for a fresh connect token at `POST /api/session` until it expires or is revoked (logout,
    /// password change). Keep it secret: it is as good as the password until then.
    pub session_token: String,
    /// When the session token stops working, in seconds since the Unix epoch.
    pub session_expires_at: u64,
}

/// The body of `POST /api/session` and `POST /api/logout`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SessionToken {
    pub session_token: String,
    /// `POST /api/session` after losing a shard: its UDP address. The new connect token sends the
    /// player to another shard while one with room is known (a shard that froze or died is still
    /// listed for a few seconds, and the player's last shard is otherwise preferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<std::net::SocketAddr>,
}

/// The body of `POST /api/password`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PasswordChange {
    pub username: String,
    pub old_password: String,
    pub new_password: String,
}

/// The answer to `GET /api/health`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The server's version (its crate version).
    pub version: String,
    /// The wire version a client must speak ([`crate::protocol::PROTOCOL_VERSION`]).
    pub protocol_version: u16,
    /// Players logged in right now.
    pub players_online: usize,
}

/// Every error body.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// Meant to be shown to the player as it is.
    pub error: String,
}

/// Reads a netcode private key as `--netcode-key-file` holds it: 32 raw bytes, or 64 hex digits
/// (whitespace around them allowed). The server and the load generator's relay share this format.
pub fn parse_netcode_key(bytes: &[u8]) -> Option<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Some(raw);
    }
    let hex = std::str::from_utf8(bytes).ok()?.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(key)
}

/// Bytes of netcode's connect-token user data.
pub const USER_DATA_BYTES: usize = 256;

/// Who a connect token speaks for, sealed in its user data (only the server can read or make it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUser {
    pub account_id: i32,
    pub name: String,
}

/// Why a token's user data does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserDataError {
    #[error("the name does not fit in the user data")]
    NameTooLong,
    #[error("the name is not UTF-8")]
    NotUtf8,
}

impl TokenUser {
    /// Layout: account id (i32, little-endian), name length (one byte), the name's UTF-8 bytes, zeros.
    pub fn to_user_data(&self) -> Result<[u8; USER_DATA_BYTES], UserDataError> {
        let name = self.name.as_bytes();
        if name.len() > USER_DATA_BYTES - 5 {
            return Err(UserDataError::NameTooLong);
        }
        let mut data = [0u8; USER_DATA_BYTES];
        data[..4].copy_from_slice(&self.account_id.to_le_bytes());
        data[4] = name.len() as u8;
        data[5..5 + name.len()].copy_from_slice(name);
        Ok(data)
    }

    pub fn from_user_data(data: &[u8; USER_DATA_BYTES]) -> Result<Self, UserDataError> {
        let account_id = i32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let len = usize::from(data[4]);
        let name = data
            .get(5..5 + len)
            .ok_or(UserDataError::NameTooLong)?
            .to_vec();
        let name = String::from_utf8(name).map_err(|_| UserDataError::NotUtf8)?;
        Ok(Self { account_id, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_netcode_key_is_raw_bytes_or_hex() {
        assert_eq!(parse_netcode_key(&[7u8; 32]), Some([7u8; 32]));
        let hex = format!("{}\n", "0a".repeat(32));
        assert_eq!(parse_netcode_key(hex.as_bytes()), Some([10u8; 32]));
        assert_eq!(parse_netcode_key(b"not a key"), None);
        assert_eq!(parse_netcode_key("+a".repeat(32).as_bytes()), None);
    }

    #[test]
    fn user_data_round_trips_and_refuses_what_does_not_fit() {
        let user = TokenUser {
            account_id: 42,
            name: "Alice_1".into(),
        };
        let data = user.to_user_data().unwrap();
        assert_eq!(TokenUser::from_user_data(&data).unwrap(), user);
        let long = TokenUser {
            account_id: 1,
            name: "x".repeat(300),
        };
        assert_eq!(long.to_user_data(), Err(UserDataError::NameTooLong));
        let mut bad = [0u8; USER_DATA_BYTES];
        bad[4] = 2;
        bad[5] = 0xff;
        assert_eq!(TokenUser::from_user_data(&bad), Err(UserDataError::NotUtf8));
    }
}
