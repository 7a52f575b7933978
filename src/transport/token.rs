//! Opening a netcode connect token outside netcode: how the WebSocket transport ([`super::ws`])
//! checks the credential a browser sends first. It is the very token `POST /api/login` and
//! `POST /api/session` answer (base64 there, raw bytes on the socket), so a browser needs nothing the
//! UDP client does not get; renetcode decodes the token's sealed part only inside its server, so this
//! does what it does: checks the version, the protocol and the expiry, opens the private part with the
//! server's key (XChaCha20-Poly1305, the version, protocol id and expiry as additional data), and reads
//! the account from its user data.
//!
//! netcode refuses a token's second use by its nonce; [`Redeemed`] does the same for WebSocket logins,
//! bounded by the tokens' short life.

use std::collections::HashMap;
use std::io::Cursor;
use std::net::SocketAddr;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};
use renetcode::{ConnectToken, NETCODE_USER_DATA_BYTES};

use crate::api::{TokenUser, UserDataError};
use crate::udp::connection_request::additional_data;

/// netcode's MAC length (the end of the sealed part).
const MAC_BYTES: usize = 16;

/// Why a connect token is refused. The texts are what the closing WebSocket says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a connect token")]
    Malformed,
    #[error("connect token for another protocol version")]
    WrongProtocol,
    #[error("connect token expired")]
    Expired,
    #[error("connect token not sealed by this server")]
    Forged,
    #[error("connect token already used")]
    Replayed,
    #[error("too many logins at once")]
    Busy,
    #[error("connect token with unreadable user data: {0}")]
    UserData(#[from] UserDataError),
}

/// What an opened token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub user: TokenUser,
    /// Its nonce: unique to the token ([`Redeemed`] keys on it).
    pub nonce: [u8; 24],
    /// When it expires, in seconds since the Unix epoch.
    pub expires: u64,
    /// The shard it was made for (the first of its addresses).
    pub server: Option<SocketAddr>,
}

/// Opens connect tokens sealed with one key.
#[derive(Clone)]
pub struct TokenOpener {
    key: XChaCha20Poly1305,
    protocol_id: u64,
}

impl std::fmt::Debug for TokenOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TokenOpener")
            .field("protocol_id", &self.protocol_id)
            .finish_non_exhaustive()
    }
}

impl TokenOpener {
    pub fn new(key: &[u8; 32], protocol_id: u64) -> Self {
        Self {
            key: XChaCha20Poly1305::new(key.into()),
            protocol_id,
        }
    }

    /// Opens `bytes` (a token as `ConnectToken::write` wrote it) at `now_secs`.
    pub fn open(&self, bytes: &[u8], now_secs: u64) -> Result<Opened, TokenError> {
        let mut reader = Cursor::new(bytes);
        let token = ConnectToken::read(&mut reader).map_err(|_| TokenError::Malformed)?;
        if reader.position() as usize != bytes.len() {
            return Err(TokenError::Malformed);
        }
        if token.protocol_id != self.protocol_id {
            return Err(TokenError::WrongProtocol);
        }
        if token.expire_timestamp <= now_secs {
            return Err(TokenError::Expired);
        }
        let additional = additional_data(self.protocol_id, token.expire_timestamp.to_le_bytes());
        let mut private = token.private_data;
        let sealed = private.len() - MAC_BYTES;
        let (text, tag) = private.split_at_mut(sealed);
        self.key
            .decrypt_in_place_detached(
                XNonce::from_slice(&token.xnonce),
                &additional,
                text,
                Tag::from_slice(tag),
            )
            .map_err(|_| TokenError::Forged)?;
        let user_data = private_user_data(text).ok_or(TokenError::Malformed)?;
        Ok(Opened {
            user: TokenUser::from_user_data(&user_data)?,
            nonce: token.xnonce,
            expires: token.expire_timestamp,
            server: token.server_addresses[0],
        })
    }
}

/// The user data in an opened private part: after the client id (8 bytes), the timeout (4), the
/// addresses (a count, then a type byte, the address and a port each) and the two keys (32 each).
fn private_user_data(text: &[u8]) -> Option<[u8; NETCODE_USER_DATA_BYTES]> {
    let count = u32::from_le_bytes(text.get(12..16)?.try_into().ok()?);
    if count > 32 {
        return None;
    }
    let mut at = 16;
    for _ in 0..count {
        let length = match text.get(at)? {
            1 => 4,
            2 => 16,
            _ => return None,
        };
        at += 1 + length + 2;
    }
    at += 64;
    text.get(at..at + NETCODE_USER_DATA_BYTES)?.try_into().ok()
}

/// The nonces of tokens already used on the WebSocket, until they expire: a token opens one session.
/// Bounded: tokens live [`crate::http::CONNECT_TOKEN_SECS`] and logins are rate-limited per address,
/// and past `cap` unexpired entries a login is refused ([`TokenError::Busy`]) rather than remembered.
#[derive(Debug)]
pub struct Redeemed {
    used: HashMap<[u8; 24], u64>,
    cap: usize,
}

impl Redeemed {
    pub fn new(cap: usize) -> Self {
        Self {
            used: HashMap::new(),
            cap,
        }
    }

    /// Records `opened` as used at `now_secs`, or says why it cannot be.
    pub fn redeem(&mut self, opened: &Opened, now_secs: u64) -> Result<(), TokenError> {
        if self.used.contains_key(&opened.nonce) {
            return Err(TokenError::Replayed);
        }
        if self.used.len() >= self.cap {
            self.used.retain(|_, &mut expires| expires > now_secs);
            if self.used.len() >= self.cap {
                return Err(TokenError::Busy);
            }
        }
        self.used.insert(opened.nonce, opened.expires);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.used.len()
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const PROTOCOL: u64 = crate::protocol::PROTOCOL_ID;
    const NOW: u64 = 1_800_000_000;

    fn token(key: &[u8; 32], addresses: Vec<SocketAddr>, name: &str) -> Vec<u8> {
        let user = TokenUser {
            account_id: 42,
            name: name.into(),
        }
        .to_user_data()
        .unwrap();
        let token = ConnectToken::generate(
            Duration::from_secs(NOW),
            PROTOCOL,
            30,
            7,
            15,
            addresses,
            Some(&user),
            key,
        )
        .unwrap();
        let mut bytes = Vec::new();
        token.write(&mut bytes).unwrap();
        bytes
    }

    fn v4() -> Vec<SocketAddr> {
        vec!["127.0.0.1:5000".parse().unwrap()]
    }

    #[test]
    fn a_token_the_server_made_opens_to_its_account() {
        let key = [3u8; 32];
        let opener = TokenOpener::new(&key, PROTOCOL);
        let six: Vec<SocketAddr> = (0..32)
            .map(|i| format!("[2001:db8::{i}]:6000").parse().unwrap())
            .collect();
        let mixed = vec!["[::1]:1".parse().unwrap(), "10.0.0.1:2".parse().unwrap()];
        for addresses in [v4(), six, mixed] {
            let first = addresses[0];
            let opened = opener.open(&token(&key, addresses, "Alice"), NOW).unwrap();
            assert_eq!(
                opened.user,
                TokenUser {
                    account_id: 42,
                    name: "Alice".into()
                }
            );
            assert_eq!(opened.expires, NOW + 30);
            assert_eq!(opened.server, Some(first));
        }
    }

    #[test]
    fn forged_stale_foreign_and_broken_tokens_are_refused() {
        let key = [3u8; 32];
        let opener = TokenOpener::new(&key, PROTOCOL);
        let good = token(&key, v4(), "Alice");
        assert_eq!(
            opener.open(&token(&[4u8; 32], v4(), "Alice"), NOW),
            Err(TokenError::Forged)
        );
        assert_eq!(opener.open(&good, NOW + 30), Err(TokenError::Expired));
        assert_eq!(
            TokenOpener::new(&key, PROTOCOL + 1).open(&good, NOW),
            Err(TokenError::WrongProtocol)
        );
        assert_eq!(
            opener.open(&good[..good.len() - 1], NOW),
            Err(TokenError::Malformed)
        );
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(opener.open(&longer, NOW), Err(TokenError::Malformed));
        assert_eq!(opener.open(&[], NOW), Err(TokenError::Malformed));
        // One bit of the sealed part flipped.
        let mut flipped = good.clone();
        flipped[100] ^= 1;
        assert_eq!(opener.open(&flipped, NOW), Err(TokenError::Forged));
        // The expiry is sealed too: a client cannot extend it.
        let mut extended = good;
        extended[37] = extended[37].wrapping_add(1);
        assert_eq!(opener.open(&extended, NOW), Err(TokenError::Forged));
    }

    #[test]
    fn a_token_opens_one_session_and_the_record_is_bounded() {
        let key = [3u8; 32];
        let opener = TokenOpener::new(&key, PROTOCOL);
        let mut redeemed = Redeemed::new(2);
        let first = opener.open(&token(&key, v4(), "Alice"), NOW).unwrap();
        redeemed.redeem(&first, NOW).unwrap();
        assert_eq!(redeemed.redeem(&first, NOW), Err(TokenError::Replayed));
        let second = opener.open(&token(&key, v4(), "Bob"), NOW).unwrap();
        redeemed.redeem(&second, NOW).unwrap();
        let third = opener.open(&token(&key, v4(), "Carol"), NOW).unwrap();
        assert_eq!(redeemed.redeem(&third, NOW), Err(TokenError::Busy));
        // Once the first two expire, their room is free again.
        redeemed.redeem(&third, NOW + 30).unwrap();
        assert_eq!(redeemed.len(), 1);
    }
}
