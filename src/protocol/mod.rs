//! The wire: every message the client and the server exchange, the renet channel they travel on, the
//! netcode protocol id, the account rules both sides check, and bounded encode/decode.
//!
//! This module is compiled without the `server` feature, so the bundled client, the load generator and
//! any third-party client share exactly these types. Every message is one bincode 2 value (standard
//! config, varint integers) in one reliable-ordered renet message. Decoding always runs with a byte limit
//! and rejects trailing bytes, so a hostile peer cannot make the other side allocate more than the limit.

use std::time::Duration;

use renet::{ChannelConfig, ConnectionConfig, SendType};
use serde::{Deserialize, Serialize};

/// Version of the wire format. Bump it whenever a message, a field or a channel changes: it is part of
/// [`PROTOCOL_ID`], so clients built against an older wire are refused by netcode before they can send
/// anything. The `wire_format_is_pinned` test fails when the encoding changes without a bump.
pub const PROTOCOL_VERSION: u16 = 5;

/// The netcode protocol id: the ASCII bytes `mmo` followed by [`PROTOCOL_VERSION`].
pub const PROTOCOL_ID: u64 = 0x006d_6d6f_0000_0000 | PROTOCOL_VERSION as u64;

/// The one renet channel each direction uses: reliable and ordered, so chat lines arrive exactly once
/// and in the order the server sent them.
pub const CHANNEL: u8 = 0;

/// The channel world snapshots travel on, server to client only: unreliable, since a lost snapshot is
/// replaced by the next one. Everything else uses [`CHANNEL`].
pub const SNAPSHOT_CHANNEL: u8 = 1;

/// The world is a square `WORLD_SIZE` units on a side; positions run from 0 to it on both axes.
pub const WORLD_SIZE: f32 = 2048.0;
/// Wire units per world unit: positions travel as `u16`s in 1/32 of a unit.
pub const POSITION_SCALE: f32 = 32.0;
/// Largest encoded [`Snapshot`]: one datagram's worth, under a typical MTU with netcode's and renet's
/// headers.
pub const MAX_SNAPSHOT_BYTES: usize = 1_000;

/// Bytes a side may have sent on [`CHANNEL`] and not yet had acknowledged before renet disconnects it.
/// The server's is large (the chat history and online list after login); a client's is small, so a
/// client that floods is disconnected by renet itself before it can make the server buffer much.
pub const SERVER_CHANNEL_MEMORY: usize = 4 * 1024 * 1024;
/// See [`SERVER_CHANNEL_MEMORY`].
pub const CLIENT_CHANNEL_MEMORY: usize = 256 * 1024;

/// Largest encoded [`ClientMessage`] the server accepts. The largest legal message, a chat line of
/// [`MAX_CHAT_CHARS`] four-byte characters, is a little over 1 KiB.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 2 * 1024;

/// Largest encoded [`ServerMessage`] a client accepts (the online list of 1024 players and the chat
/// history are the large ones).
pub const MAX_SERVER_MESSAGE_BYTES: usize = 256 * 1024;

/// Usernames are 3 to 20 characters of `[A-Za-z0-9_]`.
pub const USERNAME_CHARS: std::ops::RangeInclusive<usize> = 3..=20;
/// Passwords are 8 to 128 characters.
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;
/// A chat line holds at most this many characters after trimming.
pub const MAX_CHAT_CHARS: usize = 256;

/// The [`ServerMessage::Kicked`] reason of a server that is stopping: not something the player did, so
/// a client with a session to resume (token mode) reconnects rather than going back to its login.
pub const SHUTTING_DOWN: &str = "Server is shutting down";

/// A `System` line: this player's shard was away from the others longer than the bus keeps, so lines
/// said elsewhere meanwhile may be missing (clients and tools recognise it by this text).
pub const LINES_MISSED: &str = "This server lost touch with the others for a while: some of what was said elsewhere may be missing";

/// How long a client hears nothing from its server before it gives up on it and reconnects (token
/// mode), well before netcode's 15 s timeout: a live server's netcode sends a keep-alive every 250 ms
/// even when its tick is busy, so a few seconds of silence means it died or froze.
pub const SERVER_SILENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Where token mode's HTTPS listener takes WebSocket connections (browsers play there; `wss://HOST/ws`).
///
/// The WebSocket wire: the client's first binary frame is its connect token (the bytes of the base64
/// `connect_token` `POST /api/login` answers); then each binary frame it sends is one [`ClientMessage`].
/// Each binary frame the server sends starts with a tag byte: [`CHANNEL`] then one [`ServerMessage`],
/// [`SNAPSHOT_CHANNEL`] then one [`Snapshot`], or [`WS_KEEP_ALIVE`] alone. Text frames are refused.
pub const WS_PATH: &str = "/ws";
/// The WebSocket subprotocol a client must ask for: `mmo.` and [`PROTOCOL_VERSION`] (a page from
/// before a wire change is refused, as netcode refuses an old client's protocol id).
pub const WS_SUBPROTOCOL: &str = "mmo.5";
/// A server frame holding only this tag: the server is alive. Sent after a second without other frames,
/// so a client can apply [`SERVER_SILENT_LIMIT`].
pub const WS_KEEP_ALIVE: u8 = 0xFF;

/// A position in the world as it travels: each axis in 1/[`POSITION_SCALE`] of a unit.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pos {
    pub x: u16,
    pub y: u16,
}

impl Pos {
    /// The nearest wire position to (`x`, `y`), clamped into the world.
    pub fn quantize(x: f32, y: f32) -> Self {
        let axis = |v: f32| (v * POSITION_SCALE).round().clamp(0.0, f32::from(u16::MAX)) as u16;
        Self {
            x: axis(x),
            y: axis(y),
        }
    }

    /// In world units.
    pub fn x(self) -> f32 {
        f32::from(self.x) / POSITION_SCALE
    }

    /// In world units.
    pub fn y(self) -> f32 {
        f32::from(self.y) / POSITION_SCALE
    }
}

/// What stands in the world, as [`ServerMessage::EnteredView`] says: a client draws each kind its own
/// way. A gameplay plugin that puts a new kind of thing in the world adds a variant here (at the end).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Another player.
    Player,
    /// A non-player character the server moves (`crate::npc` on the server side).
    Npc,
}

/// What a client asks of the server.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// Create an account. Answered by [`ServerMessage::Registered`] once the account is stored, or a
    /// [`ServerMessage::Denied`] for [`Request::Register`].
    Register { username: String, password: String },
    /// Log in and enter the world (the PLAY state). Answered by [`ServerMessage::LoggedIn`] or a
    /// [`ServerMessage::Denied`] for [`Request::Login`].
    Login { username: String, password: String },
    /// Say something to every player online. The server adds the sender's name and the time. A line
    /// starting with `/` is a command instead (`/help` lists them): `/who`, `/w NAME TEXT`, and for
    /// moderators `/kick`, `/ban`, `/mute`, …; answered by [`ServerMessage::System`],
    /// [`ServerMessage::Whisper`] or a [`ServerMessage::Denied`] for [`Request::Command`].
    Chat { text: String },
    /// Walk to this point of the world (world units). The server moves the player there at its own
    /// speed; a point outside the world is clamped to its edge, one that is not a number is refused.
    MoveTo { x: f32, y: f32 },
}

/// Which request a [`ServerMessage::Denied`] answers.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Request {
    Register,
    Login,
    Chat,
    Move,
    /// A `/command` in a chat line.
    Command,
}

/// One line of chat as the server stamped it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// The display name of the account that said it, set by the server from the session.
    pub sender: String,
    /// The trimmed text.
    pub text: String,
    /// Server time when the line was accepted, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

/// What the server tells a client.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The account is created and committed to the database; the client may now log in.
    Registered { username: String },
    /// Login accepted: the connection is now a player. `name` is the account's display name.
    /// [`ServerMessage::OnlinePlayers`] and [`ServerMessage::ChatHistory`] follow.
    LoggedIn { name: String },
    /// A request was refused; `reason` is meant to be shown to the player as it is.
    Denied { request: Request, reason: String },
    /// A chat line, sent to every logged-in player (the sender included). Lines said in the same tick
    /// come together as [`ServerMessage::ChatLines`].
    Chat(ChatLine),
    /// The most recent chat lines, oldest first, sent once after login.
    ChatHistory { lines: Vec<ChatLine> },
    /// Everyone online at the moment of login, the new player included.
    OnlinePlayers { names: Vec<String> },
    /// Another player logged in.
    PlayerJoined { name: String },
    /// Another player logged out or was disconnected.
    PlayerLeft { name: String },
    /// The server is about to close this connection, for this reason.
    Kicked { reason: String },
    /// After login: this player's id in the world and where it stands. Snapshots use the id.
    Spawned { id: u32, at: Pos },
    /// Something came within view: its id (as snapshots name it), what it is, its name and position.
    EnteredView {
        id: u32,
        kind: Kind,
        name: String,
        at: Pos,
    },
    /// Something left this player's view (walked away, logged out, despawned).
    LeftView { id: u32 },
    /// A line from the server rather than a player: an operator's announcement, a shutdown countdown,
    /// the answer to a command (`/who`, `/help`, a moderator's `/kick`), a notice such as "You were
    /// muted". Clients show it apart from player lines.
    System { text: String },
    /// A private line, sent only to its sender and its recipient (and never kept in history).
    Whisper(WhisperLine),
    /// Several chat lines said in the same tick, in the order the server took them: shown as that many
    /// [`ServerMessage::Chat`] ([`ServerMessage::unbatch`]). One message for a tick's lines, not one a
    /// line, is what keeps a busy chat's cost to the server per player rather than per line and player.
    ChatLines { lines: Vec<ChatLine> },
}

impl ServerMessage {
    /// Hands this message to `each` as a player sees it: a [`ServerMessage::ChatLines`] batch as one
    /// [`ServerMessage::Chat`] per line, in order; any other message as itself.
    pub fn unbatch(self, mut each: impl FnMut(ServerMessage)) {
        match self {
            ServerMessage::ChatLines { lines } => {
                lines.into_iter().map(ServerMessage::Chat).for_each(each)
            }
            message => each(message),
        }
    }
}

/// One private line as the server stamped it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct WhisperLine {
    /// Who wrote it (display name, set by the server).
    pub from: String,
    /// Who it is for (display name).
    pub to: String,
    /// The trimmed text.
    pub text: String,
    /// Server time when the line was accepted, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
}

/// Where players are, sent on [`SNAPSHOT_CHANNEL`] a few times a second: the player's own position and
/// those of the players in view, each while it moves and for a few snapshots after it stops (so a lost
/// snapshot does not leave a player drawn at a stale spot). Players are named by their
/// [`ServerMessage::Spawned`]/[`ServerMessage::EnteredView`] ids.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The server's snapshot counter: a client keeps the newest and ignores older ones arriving late.
    pub seq: u32,
    /// Server time the positions are from, in milliseconds since the Unix epoch (a client interpolates
    /// on this timeline; its age is the snapshot's latency).
    pub sent_at_ms: u64,
    pub positions: Vec<(u32, Pos)>,
}

impl Snapshot {
    /// Encodes the snapshot for [`SNAPSHOT_CHANNEL`].
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("encoding into a Vec cannot fail")
    }

    /// Decodes one snapshot, refusing anything over [`MAX_SNAPSHOT_BYTES`] or with bytes left over.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode::<Self, MAX_SNAPSHOT_BYTES>(bytes)
    }
}

/// Why bytes from the network could not be turned into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {len} bytes, more than the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    #[error("malformed message: {0}")]
    Malformed(#[from] bincode::error::DecodeError),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

fn config<const LIMIT: usize>() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

fn decode<T: serde::de::DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<T, DecodeError> {
    if bytes.len() > LIMIT {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit: LIMIT,
        });
    }
    let (value, used) = bincode::serde::decode_from_slice(bytes, config::<LIMIT>())?;
    match bytes.len() - used {
        0 => Ok(value),
        extra => Err(DecodeError::TrailingBytes(extra)),
    }
}

impl ClientMessage {
    /// Encodes the message for [`CHANNEL`].
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("encoding into a Vec cannot fail")
    }

    /// Decodes one message, refusing anything over [`MAX_CLIENT_MESSAGE_BYTES`] or with bytes left over.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode::<Self, MAX_CLIENT_MESSAGE_BYTES>(bytes)
    }
}

impl ServerMessage {
    /// Encodes the message for [`CHANNEL`].
    pub fn encode(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("encoding into a Vec cannot fail")
    }

    /// Decodes one message, refusing anything over [`MAX_SERVER_MESSAGE_BYTES`] or with bytes left over.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode::<Self, MAX_SERVER_MESSAGE_BYTES>(bytes)
    }
}

/// The renet configuration both sides must share: one reliable-ordered channel each way, and the
/// server's unreliable [`SNAPSHOT_CHANNEL`].
pub fn connection_config() -> ConnectionConfig {
    let reliable = |max_memory_usage_bytes| ChannelConfig {
        channel_id: CHANNEL,
        max_memory_usage_bytes,
        send_type: SendType::ReliableOrdered {
            resend_time: Duration::from_millis(200),
        },
    };
    let snapshots = ChannelConfig {
        channel_id: SNAPSHOT_CHANNEL,
        max_memory_usage_bytes: 256 * 1024,
        send_type: SendType::Unreliable,
    };
    ConnectionConfig {
        available_bytes_per_tick: 60_000,
        server_channels_config: vec![reliable(SERVER_CHANNEL_MEMORY), snapshots],
        client_channels_config: vec![reliable(CLIENT_CHANNEL_MEMORY)],
    }
}

/// Longest a side that owes its peer only acks waits before sending them. renet puts an ack packet in
/// every flush and acknowledges acks too, so two idle peers that flush every frame trade an ack a
/// frame each way, forever: 4,000 idle players at 60 frames a second would be 240,000 datagrams a
/// second to decrypt. Every 100 ms (10 a second) is half of renet's resend time (200 ms), so nothing
/// is resent for want of an ack. The server's form of it is `transport::ACK_EVERY`.
pub const QUIET_ACK_EVERY: Duration = Duration::from_millis(100);

/// Whether a side owes its peer only acks: nothing queued or unacknowledged on any of `channels` (a
/// channel's available memory is its whole limit). `available` reads a channel's available memory.
pub fn owes_only_acks(channels: &[ChannelConfig], available: impl Fn(u8) -> usize) -> bool {
    channels
        .iter()
        .all(|channel| available(channel.channel_id) == channel.max_memory_usage_bytes)
}

/// Checks a username against the account rules; the error is the text shown to the player.
pub fn validate_username(username: &str) -> Result<(), &'static str> {
    if !USERNAME_CHARS.contains(&username.chars().count()) {
        return Err("Username must be 3 to 20 characters");
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err("Username may contain only letters, digits and _");
    }
    Ok(())
}

/// Checks a password against the account rules; the error is the text shown to the player.
pub fn validate_password(password: &str) -> Result<(), &'static str> {
    if !PASSWORD_CHARS.contains(&password.chars().count()) {
        return Err("Password must be 8 to 128 characters");
    }
    Ok(())
}

/// Trims a chat line and checks it; returns the text to broadcast or the reason it is refused.
pub fn clean_chat_text(text: &str) -> Result<&str, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Err("Message is empty");
    }
    if text.chars().count() > MAX_CHAT_CHARS {
        return Err("Message is too long (at most 256 characters)");
    }
    if text.chars().any(char::is_control) {
        return Err("Message contains control characters");
    }
    Ok(text)
}

#[cfg(test)]
mod tests;
