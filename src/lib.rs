//! mmo: a headless, authoritative MMO server foundation on Bevy ECS.
//!
//! [`protocol`] is the wire, shared with every client and always compiled, as is [`client`], a small
//! Bevy-free client for tools and tests. With the default `server`
//! feature the crate is also the server: one Bevy plugin per module ([`net`] connections and messages
//! over the flood-resistant [`transport`],
//! [`auth`] registration and login on worker threads, [`players`] the PLAY state, [`chat`], [`world`],
//! [`moderation`] roles, bans and mutes, [`commands`] for players and the operator's [`console`],
//! [`shutdown`]),
//! assembled by [`server::build`]. New gameplay is one more plugin beside `chat`: read [`net::Inbound`]
//! messages, query [`players::Player`] entities, send with [`net::send`].

#[cfg(feature = "server")]
pub mod access;
pub mod api;
pub mod client;
pub mod protocol;
pub mod udp;

#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod bus;
#[cfg(feature = "server")]
pub mod chat;
#[cfg(feature = "server")]
pub mod commands;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod console;
#[cfg(feature = "server")]
pub mod db;
#[cfg(feature = "server")]
pub mod health;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod load;
#[cfg(feature = "server")]
pub mod logs;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod moderation;
#[cfg(feature = "server")]
pub mod net;
#[cfg(feature = "server")]
pub mod npc;
#[cfg(feature = "server")]
pub mod players;
#[cfg(feature = "server")]
pub mod probes;
#[cfg(feature = "server")]
pub mod schedule;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod shutdown;
#[cfg(feature = "server")]
pub mod stats;
#[cfg(feature = "server")]
pub mod tcp;
#[cfg(feature = "server")]
pub mod time;
#[cfg(feature = "server")]
pub mod transport;
#[cfg(feature = "server")]
pub mod worker;
#[cfg(feature = "server")]
pub mod world;
