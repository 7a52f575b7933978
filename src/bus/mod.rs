//! The bus between shards (`--bus redis://HOST:PORT`): several `mmo` processes sharing one account
//! database act as one world for chat and presence. Through a Redis stream (`mmo:events`, trimmed to
//! `--bus-stream-len` entries) each shard sends what its players say (chat, announcements, whispers to
//! players elsewhere), who joins and leaves, and every two seconds its roster; every shard reads it from
//! the last entry it handled and delivers what the others sent to its own players, so a shard that lost
//! Redis for a while catches up when it is back (and, if the stream was trimmed past it, tells its
//! players that lines may be missing). Presence lives in Redis with expiry (`mmo:shard:NAME`, 6 s), so a
//! shard that dies disappears, with its players, from everyone's list within seconds. A login claims its
//! account atomically (`SET mmo:owner:ID … GET`): the shard that held an older session of it is told to
//! kick that session, so two shards racing to log in the same account end with exactly one session.
//! Bans, mutes and roles set on one shard are applied on every shard (the database is shared; the
//! message makes each shard's memory and players follow).
//!
//! Redis lives on two threads (`threads.rs` appends and claims, `reader.rs` reads), never on the
//! tick; the tick meets them through channels. This file is the tick's side. When Redis is gone, each
//! shard keeps its own players chatting, logs it, reconnects with backoff and resynchronises when it is
//! back, even if Redis came back empty: it reads the presence keys, sends its roster at once, gives
//! shards missing from the keys a few seconds to be heard of (their players do not flicker out of
//! everyone's list), and claims its players' accounts again (a login elsewhere meanwhile wins). A shard
//! that stops says so, and is gone from every list and routing table at once. Without `--bus`, none of
//! this exists.

mod reader;
mod threads;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_renet::renet::ClientId;
use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};

use crate::auth::LOGGED_IN_ELSEWHERE;
use crate::chat::announce::Announced;
use crate::chat::whisper::WhisperElsewhere;
use crate::chat::{self, ChatHistory, ChatOutlets, ChatSaid};
use crate::config::{BusUrl, Config};
use crate::logs::Budget;
use crate::metrics::Metrics;
use crate::moderation::{Change, Changed, ChangedElsewhere};
use crate::net::{self, Connection, Outbox, PublicAddr, Route, Routes};
use crate::players::{self, Elsewhere, OnlineAccounts, Player};
use crate::protocol::{ChatLine, ServerMessage, WhisperLine};
use crate::schedule::ServerSystems;
use crate::worker::{Stop, Stopping, Worker, stop_at_shutdown};
use threads::{Envelope, In, Out};

/// How often a shard publishes its roster (and refreshes its presence key).
const ROSTER_EVERY: Duration = Duration::from_secs(2);
/// A shard not heard of for this long is gone, with its players (its presence key expires too).
pub const SHARD_EXPIRY: Duration = Duration::from_secs(6);
/// Back on the bus, how long a shard known before but missing from Redis's presence keys has to be
/// heard of (a Redis that restarted empty holds no key until each shard's next roster).
const RESYNC_GRACE: Duration = Duration::from_secs(4);

/// What players are told when this shard was away from the bus longer than its stream keeps.
pub const MISSED: &str = crate::protocol::LINES_MISSED;

/// A player logging in on shard after shard causes this line (`crate::logs`).
static KICKED_HERE: Budget = Budget::new("logged in on another shard", 5, 60);

pub(crate) fn plugin(app: &mut App) {
    let config = app.world().resource::<Config>();
    let Some(url) = config.bus.clone() else {
        return;
    };
    let shard = config.shard_name();
    let stream_len = config.bus_stream_len as usize;
    let capacity = config.bus_queue as usize;
    let metrics = app.world().resource::<Metrics>().clone();
    app.insert_resource(Bus::start(url, shard, stream_len, capacity, metrics))
        .add_systems(Update, receive.in_set(ServerSystems::Receive))
        .add_systems(
            Update,
            (send_roster, expire_shards, relay).in_set(ServerSystems::Replication),
        )
        .add_observer(announce_join)
        .add_observer(announce_leave);
    stop_at_shutdown::<Bus>(app);
}

/// What shards tell each other.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Event {
    Chat(ChatLine),
    /// An operator's announcement.
    System {
        text: String,
    },
    /// For the shard where `line.to` plays.
    Whisper(WhisperLine),
    Joined {
        account_id: i32,
        name: String,
    },
    Left {
        account_id: i32,
        name: String,
    },
    /// Every player of the shard, the UDP address its players connect to and how many it takes: sent
    /// every `ROSTER_EVERY` (2 s); also its heartbeat.
    Roster {
        players: Vec<(i32, String)>,
        addr: SocketAddr,
        capacity: usize,
    },
    /// Whoever holds this session of the account (a newer login claimed it) closes it.
    Kick {
        account_id: i32,
        session: ClientId,
    },
    /// A ban, mute, lifting or role made on the sending shard (already stored in the shared database).
    Moderation(Change),
    /// The sending shard is stopping: it is gone now, not at its expiry (no token is routed to it).
    Gone,
}

/// The bus threads and their channels.
#[derive(Resource)]
pub struct Bus {
    shard: String,
    /// The publisher (its queue: what this shard sends) and the subscriber beside it.
    threads: Worker<Out>,
    /// Queued events past which chat lines are refused (nine tenths of `--bus-queue`).
    pause_chat_at: usize,
    metrics: Metrics,
    inbox: Receiver<In>,
    last_roster: Option<Instant>,
    /// When each other shard was last heard of.
    heard: HashMap<String, Instant>,
    /// Each other shard's address, player count and capacity, from its last roster.
    shards: HashMap<String, (SocketAddr, usize, usize)>,
}

impl Bus {
    fn start(
        url: BusUrl,
        shard: String,
        stream_len: usize,
        capacity: usize,
        metrics: Metrics,
    ) -> Self {
        let (in_tx, inbox) = crossbeam_channel::unbounded::<In>();
        let metrics_here = metrics.clone();
        let publisher = {
            let (url, shard) = (url.expose().to_owned(), shard.clone());
            let (metrics, lost) = (metrics.clone(), in_tx.clone());
            move |out: Receiver<Out>, stopping: Stopping| {
                let stop = stopping.flag();
                threads::publish(&url, &shard, &out, &lost, stop, &metrics, stream_len)
            }
        };
        let subscriber = {
            let (url, shard) = (url.expose().to_owned(), shard.clone());
            move |stopping: Stopping| {
                reader::subscribe(&url, &shard, &in_tx, stopping.flag(), &metrics)
            }
        };
        let threads =
            Worker::single("bus-out", Some(capacity), publisher).with_thread("bus-in", subscriber);
        info!(shard, bus = %url, "joining the bus");
        Self {
            shard,
            threads,
            pause_chat_at: capacity - capacity / 10,
            metrics: metrics_here,
            inbox,
            last_roster: None,
            heard: HashMap::new(),
            shards: HashMap::new(),
        }
    }

    /// Sends `event` to every other shard (queued while Redis is away, up to `--bus-queue`).
    pub fn publish(&self, event: Event) {
        self.send(Out::Publish(event));
    }

    /// Queues `out` for the publisher; past `--bus-queue` (or once stopped) it is dropped and counted.
    fn send(&self, out: Out) {
        if self.threads.send(out).is_err() {
            self.metrics.bus_dropped.inc();
        }
    }

    /// This shard's name on the bus.
    pub fn shard(&self) -> &str {
        &self.shard
    }
}

impl Stop for Bus {
    /// Closing the queue lets the publisher send what is queued (the players' Left), then end.
    fn stop(&mut self) {
        self.threads.stop();
    }
}

/// Delivers what other shards sent to this shard's players, and keeps [`Elsewhere`] current.
fn receive(
    mut commands: Commands,
    mut bus: ResMut<Bus>,
    mut elsewhere: ResMut<Elsewhere>,
    mut history: ResMut<ChatHistory>,
    mut server: Outbox,
    online: Res<OnlineAccounts>,
    players: Query<(Entity, &Connection, &Player)>,
    mut moderation: MessageWriter<ChangedElsewhere>,
    routes: Res<Routes>,
    mut outlets: ResMut<ChatOutlets>,
) {
    let now = Instant::now();
    let queued = bus.threads.queued();
    bus.metrics.queue_depth.bus.set(queued as i64);
    outlets.set_full("bus", queued >= bus.pause_chat_at);
    // Tells this shard's players of someone elsewhere, unless that account also plays here (a login
    // moving between shards): then the local state already says so.
    let tell = |server: &mut Outbox, account_id: i32, message: ServerMessage| {
        if online.entity(account_id).is_none() {
            let bytes = net::encode(&message);
            players::broadcast(server, players.iter().map(|(e, c, _)| (e, c)), &bytes, None);
        }
    };
    let incoming: Vec<In> = bus.inbox.try_iter().collect();
    // Lines from other shards go out together (`chat::broadcast_lines`), before anything that followed
    // them.
    let mut lines = Vec::new();
    for message in incoming {
        if !matches!(
            &message,
            In::Event(Envelope {
                event: Event::Chat(_),
                ..
            })
        ) {
            let everyone = || players.iter().map(|(e, c, _)| (e, c));
            chat::broadcast_lines(&mut server, everyone, &std::mem::take(&mut lines));
        }
        let envelopes = match message {
            In::Event(envelope) => vec![envelope],
            In::Presence(rosters) => {
                // Back on the bus. Redis may have restarted empty: a shard known here but missing from
                // the keys gets RESYNC_GRACE to be heard of before it is gone (its players do not
                // flicker out of everyone's list and back); this shard's roster goes out at once and
                // its players' accounts are claimed again.
                let present: Vec<&str> = rosters.iter().map(|e| e.shard.as_str()).collect();
                let grace = now.checked_sub(SHARD_EXPIRY - RESYNC_GRACE).unwrap_or(now);
                for (shard, heard) in bus.heard.iter_mut() {
                    if !present.contains(&shard.as_str()) && *heard < grace {
                        *heard = grace;
                    }
                }
                bus.last_roster = None;
                let sessions = players
                    .iter()
                    .map(|(_, c, p)| (p.account_id, c.client_id))
                    .collect();
                bus.send(Out::Reclaim(sessions));
                rosters
            }
            In::Missed => {
                warn!("back on the bus, but lines from other shards said meanwhile are gone");
                let text = MISSED.to_owned();
                let bytes = net::encode(&ServerMessage::System { text });
                let everyone = players.iter().map(|(e, c, _)| (e, c));
                players::broadcast(&mut server, everyone, &bytes, None);
                continue;
            }
            In::LostClaim {
                account_id,
                session,
                holder,
            } => {
                kick_session(
                    &mut commands,
                    &mut server,
                    &players,
                    account_id,
                    session,
                    &holder,
                );
                continue;
            }
        };
        for Envelope { shard, event } in envelopes {
            bus.heard.insert(shard.clone(), now);
            let everyone = || players.iter().map(|(e, c, _)| (e, c));
            match event {
                Event::Chat(line) => {
                    lines.push(line.clone());
                    history.push(line);
                }
                Event::System { text } => {
                    let bytes = net::encode(&ServerMessage::System { text });
                    players::broadcast(&mut server, everyone(), &bytes, None);
                }
                Event::Whisper(line) => {
                    if let Some((_, to, _)) = players
                        .iter()
                        .find(|(_, _, p)| p.name.eq_ignore_ascii_case(&line.to))
                    {
                        net::send(&mut server, to.client_id, &ServerMessage::Whisper(line));
                    }
                }
                Event::Joined { account_id, name } => {
                    if elsewhere.insert(&shard, account_id, &name) {
                        tell(
                            &mut server,
                            account_id,
                            ServerMessage::PlayerJoined { name },
                        );
                    }
                }
                Event::Left { account_id, name } => {
                    if let Some(&(addr, _, _)) = bus.shards.get(&shard) {
                        routes.played(account_id, addr, now);
                    }
                    if elsewhere.remove(&shard, account_id) && !elsewhere.has_account(account_id) {
                        tell(&mut server, account_id, ServerMessage::PlayerLeft { name });
                    }
                }
                Event::Roster {
                    players: roster,
                    addr,
                    capacity,
                } => {
                    bus.shards
                        .insert(shard.clone(), (addr, roster.len(), capacity));
                    let (joined, left) = elsewhere.replace(&shard, roster);
                    for (account_id, name) in joined {
                        tell(
                            &mut server,
                            account_id,
                            ServerMessage::PlayerJoined { name },
                        );
                    }
                    for (account_id, name) in left {
                        tell(&mut server, account_id, ServerMessage::PlayerLeft { name });
                    }
                }
                Event::Moderation(change) => {
                    info!(from = shard, ?change, "moderation from another shard");
                    moderation.write(ChangedElsewhere(change));
                }
                Event::Gone => {
                    info!(shard, "a shard stopped");
                    forget_shard(&mut bus, &mut elsewhere, &mut server, &players, &shard);
                }
                Event::Kick {
                    account_id,
                    session,
                } => kick_session(
                    &mut commands,
                    &mut server,
                    &players,
                    account_id,
                    session,
                    &shard,
                ),
            }
        }
    }
    chat::broadcast_lines(
        &mut server,
        || players.iter().map(|(e, c, _)| (e, c)),
        &lines,
    );
}

/// Closes `session` of `account_id` if it plays here: the account logged in on shard `from`.
fn kick_session(
    commands: &mut Commands,
    server: &mut Outbox,
    players: &Query<(Entity, &Connection, &Player)>,
    account_id: i32,
    session: ClientId,
    from: &str,
) {
    let held = players
        .iter()
        .find(|(_, c, p)| p.account_id == account_id && c.client_id == session);
    if let Some((entity, _, _)) = held {
        if KICKED_HERE.allow(account_id) {
            info!(account_id, from, "logged in on another shard; kicking here");
        }
        net::kick(commands, server, entity, session, LOGGED_IN_ELSEWHERE);
    }
}

/// Removes a shard and its players, telling this shard's players they left.
fn forget_shard(
    bus: &mut Bus,
    elsewhere: &mut Elsewhere,
    server: &mut Outbox,
    players: &Query<(Entity, &Connection, &Player)>,
    shard: &str,
) {
    bus.heard.remove(shard);
    bus.shards.remove(shard);
    // The routing table is rebuilt (and this shard's roster sent) on the next tick, without it.
    bus.last_roster = None;
    let (_, left) = elsewhere.replace(shard, Vec::new());
    if !left.is_empty() {
        info!(shard, players = left.len(), "a shard is gone");
    }
    for (_, name) in left {
        let bytes = net::encode(&ServerMessage::PlayerLeft { name });
        players::broadcast(server, players.iter().map(|(e, c, _)| (e, c)), &bytes, None);
    }
}

/// Shards not heard of for [`SHARD_EXPIRY`] are gone (crashed, or cut off from Redis).
fn expire_shards(
    mut bus: ResMut<Bus>,
    mut elsewhere: ResMut<Elsewhere>,
    mut server: Outbox,
    players: Query<(Entity, &Connection, &Player)>,
) {
    let now = Instant::now();
    let silent: Vec<String> = bus
        .heard
        .iter()
        .filter(|(_, heard)| now.saturating_duration_since(**heard) > SHARD_EXPIRY)
        .map(|(shard, _)| shard.clone())
        .collect();
    for shard in silent {
        forget_shard(&mut bus, &mut elsewhere, &mut server, &players, &shard);
    }
}

/// Every [`ROSTER_EVERY`]: this shard's players, to everyone (and into its presence key).
fn send_roster(
    mut bus: ResMut<Bus>,
    players: Query<&Player>,
    addr: Res<PublicAddr>,
    routes: Res<Routes>,
    config: Res<Config>,
    metrics: Res<Metrics>,
) {
    let now = Instant::now();
    // While the bus is away a roster would only wait in the queue: the first one back goes at once.
    let away = metrics.bus_up.get() == 0;
    if away
        || bus
            .last_roster
            .is_some_and(|at| now.saturating_duration_since(at) < ROSTER_EVERY)
    {
        return;
    }
    bus.last_roster = Some(now);
    let roster: Vec<(i32, String)> = players
        .iter()
        .map(|p| (p.account_id, p.name.clone()))
        .collect();
    // The routing table token mode's login reads: this shard and every shard heard of.
    let capacity = usize::from(config.max_clients);
    let mut table = vec![Route {
        addr: addr.0,
        players: roster.len(),
        capacity,
        here: true,
    }];
    table.extend(bus.shards.values().map(|&(addr, players, capacity)| Route {
        addr,
        players,
        capacity,
        here: false,
    }));
    routes.set(table);
    metrics.bus_shards.set(bus.shards.len() as i64);
    let elsewhere: usize = bus.shards.values().map(|&(_, players, _)| players).sum();
    metrics.players_elsewhere.set(elsewhere as i64);
    bus.publish(Event::Roster {
        players: roster,
        addr: addr.0,
        capacity,
    });
}

/// What this shard's players say, whisper to players elsewhere and are announced, and what its
/// moderators change, goes to every other shard.
fn relay(
    mut said: MessageReader<ChatSaid>,
    mut whispers: MessageReader<WhisperElsewhere>,
    mut announced: MessageReader<Announced>,
    mut changed: MessageReader<Changed>,
    bus: Res<Bus>,
) {
    for ChatSaid(line) in said.read() {
        bus.publish(Event::Chat(line.clone()));
    }
    for WhisperElsewhere(line) in whispers.read() {
        bus.publish(Event::Whisper(line.clone()));
    }
    for Announced(text) in announced.read() {
        bus.publish(Event::System { text: text.clone() });
    }
    for Changed(change) in changed.read() {
        bus.publish(Event::Moderation(change.clone()));
    }
}

fn announce_join(add: On<Add, Player>, players: Query<(&Connection, &Player)>, bus: Res<Bus>) {
    if let Ok((connection, player)) = players.get(add.entity) {
        bus.send(Out::Claim {
            account_id: player.account_id,
            session: connection.client_id,
        });
        bus.publish(Event::Joined {
            account_id: player.account_id,
            name: player.name.clone(),
        });
    }
}

fn announce_leave(
    remove: On<Remove, Player>,
    players: Query<&Player>,
    bus: Res<Bus>,
    routes: Res<Routes>,
    addr: Res<PublicAddr>,
) {
    if let Ok(player) = players.get(remove.entity) {
        routes.played(player.account_id, addr.0, Instant::now());
        bus.publish(Event::Left {
            account_id: player.account_id,
            name: player.name.clone(),
        });
    }
}
