//! Chat: players' lines checked, stamped with the sender's name and the server's time, broadcast to
//! every player (encoded once), kept in a short in-memory history sent after login, and stored in the
//! database by a writer thread that batches inserts off the tick and deletes lines older than
//! `--chat-retention-days`, a small batch at a time. A muted player's lines are refused; a line that
//! starts with `/` passes the same flood limit and checks, then goes to the commands plugin as a
//! [`SlashCommand`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_renet::RenetServer;
use crossbeam_channel::Sender;

use crate::config::Config;
use crate::db::models::ChatMessage;
use crate::db::{self, Database, DbPool, queries};
use crate::metrics::{self, Metrics};
use crate::moderation::Sanctions;
use crate::net::{self, Connection, Inbound};
use crate::players::{self, Player};
use crate::protocol::{self, ChatLine, ClientMessage, Request, ServerMessage};
use crate::shutdown::ServerStopping;
use crate::time::now_ms;
use prometheus_client::metrics::histogram::Histogram;

/// Most lines the writer stores in one transaction.
const WRITE_BATCH: usize = 512;
/// Most old lines the writer deletes in one transaction (a few milliseconds of lock).
const PRUNE_BATCH: i64 = 1_000;
/// How often the writer deletes lines past `--chat-retention-days`.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub(crate) fn plugin(app: &mut App) {
    let pool = app.world().resource::<Database>().0.clone();
    let config = app.world().resource::<Config>();
    let limit = ChatLimit {
        burst: config.chat_burst as f32,
        per_second: config.chat_per_second.max(0.0),
        kick_after: Duration::from_secs(u64::from(config.chat_kick_after)),
    };
    let retention = config.chat_retention();
    let writes = app.world().resource::<Metrics>().chat_write_seconds.clone();
    app.insert_resource(ChatWriter::start(pool, retention, writes))
        .insert_resource(limit)
        .add_message::<SlashCommand>()
        .add_message::<ChatSaid>()
        .add_systems(Update, handle_chat)
        .add_observer(send_history)
        .add_observer(flush_writer);
}

/// What a player is told when over the chat limit.
pub const TOO_FAST: &str = "You are sending messages too fast";
/// Why a player who keeps flooding is disconnected.
pub const FLOODING: &str = "Kicked for flooding the chat";

/// A line a player of this shard said (after it was broadcast here): the bus relays it to other shards.
#[derive(Message, Debug, Clone)]
pub struct ChatSaid(pub ChatLine);

/// A player's chat line that starts with `/`: a command, for the commands plugin. It passed the flood
/// limit and the chat line checks; `text` is the line without the `/`.
#[derive(Message, Debug, Clone)]
pub struct SlashCommand {
    pub entity: Entity,
    pub client_id: bevy_renet::renet::ClientId,
    pub text: String,
}

/// The per-player chat limit: a token bucket of `burst` lines refilled at `per_second`.
#[derive(Resource, Debug, Clone, Copy)]
pub struct ChatLimit {
    pub burst: f32,
    pub per_second: f32,
    /// A player refused continuously (the bucket never refilling) for this long is kicked.
    pub kick_after: Duration,
}

/// A player's chat allowance.
#[derive(Component, Debug)]
pub struct ChatBucket {
    tokens: f32,
    refilled_at: Instant,
    /// When the player first went over the limit without the bucket having refilled since.
    over_since: Option<Instant>,
}

/// What the bucket says about one more line.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Send,
    Refuse,
    Kick,
}

impl ChatBucket {
    fn full(limit: &ChatLimit, now: Instant) -> Self {
        Self {
            tokens: limit.burst,
            refilled_at: now,
            over_since: None,
        }
    }

    fn take(&mut self, limit: &ChatLimit, now: Instant) -> Verdict {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f32();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        self.refilled_at = now;
        if self.tokens >= limit.burst {
            self.over_since = None;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Send;
        }
        let since = *self.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= limit.kick_after {
            Verdict::Kick
        } else {
            Verdict::Refuse
        }
    }
}

/// The most recent lines, oldest first, as sent to a player after login.
#[derive(Resource, Debug)]
pub struct ChatHistory {
    lines: VecDeque<ChatLine>,
    capacity: usize,
}

impl ChatHistory {
    /// Loads the last `capacity` lines from the database (once, at start, before the first tick),
    /// none older than `retention` (the writer deletes those soon after).
    pub fn load(
        pool: &DbPool,
        capacity: usize,
        retention: Option<Duration>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let since_ms = retention.map_or(0, retention_cutoff_ms);
        let rows = queries::recent_chat_messages(&mut *pool.get()?, capacity as i64, since_ms)?;
        let lines = rows
            .into_iter()
            .map(|row| ChatLine {
                sender: row.sender,
                text: row.body,
                sent_at_ms: row.sent_at_ms as u64,
            })
            .collect();
        Ok(Self { lines, capacity })
    }

    /// Adds a line said here or, with `--bus`, on another shard.
    pub fn push(&mut self, line: ChatLine) {
        if self.capacity == 0 {
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
}

/// The history writer thread and the channel to it.
#[derive(Resource)]
pub struct ChatWriter {
    lines: Option<Sender<ChatMessage>>,
    thread: Option<JoinHandle<()>>,
    /// Set by [`ChatWriter::flush`]: a batch the database refuses is then given up after a while.
    stopping: Arc<AtomicBool>,
}

impl ChatWriter {
    /// Starts the writer; with a `retention`, it also deletes older lines at start and every
    /// [`PRUNE_EVERY`].
    fn start(pool: DbPool, retention: Option<Duration>, writes: Histogram) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<ChatMessage>();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        let thread = std::thread::Builder::new()
            .name("chat-writer".into())
            .spawn(move || {
                let mut next_prune = Instant::now();
                loop {
                    if let Some(retention) = retention
                        && Instant::now() >= next_prune
                    {
                        prune(&pool, retention, &rx, &stop);
                        next_prune = Instant::now() + PRUNE_EVERY;
                    }
                    let first = match rx.recv_deadline(next_prune) {
                        Ok(first) => first,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                    };
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter().take(WRITE_BATCH - 1));
                    metrics::time(&writes, || store(&pool, &batch, &stop));
                }
            })
            .expect("spawning the chat writer thread");
        Self {
            lines: Some(tx),
            thread: Some(thread),
            stopping,
        }
    }

    fn write(&self, line: ChatMessage) {
        if let Some(lines) = &self.lines {
            let _ = lines.send(line);
        }
    }

    /// Stores every line still queued, then stops the thread.
    pub fn flush(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.lines = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the chat writer panicked");
        }
    }
}

/// The server time (ms) before which lines are past `retention`.
fn retention_cutoff_ms(retention: Duration) -> i64 {
    i64::try_from(now_ms().saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX)))
        .unwrap_or(i64::MAX)
}

/// Stores `batch`, waiting for the database if it is away (the lines were already sent to players).
fn store(pool: &DbPool, batch: &[ChatMessage], stopping: &AtomicBool) {
    db::write_until_done(pool, stopping, "chat lines", batch.len(), |conn| {
        queries::insert_chat_messages(conn, batch)
    });
}

/// Deletes the lines older than `retention`, [`PRUNE_BATCH`] a transaction, storing the lines that
/// arrive meanwhile between two batches (new lines never wait for the whole prune).
fn prune(
    pool: &DbPool,
    retention: Duration,
    lines: &crossbeam_channel::Receiver<ChatMessage>,
    stopping: &AtomicBool,
) {
    let before_ms = retention_cutoff_ms(retention);
    let mut deleted = 0;
    loop {
        let count = match db::with_conn(pool, |conn| {
            queries::prune_chat_messages(conn, before_ms, PRUNE_BATCH)
        }) {
            Ok(count) => count,
            Err(error) => {
                error!(%error, "could not delete old chat lines");
                return;
            }
        };
        deleted += count;
        if count < PRUNE_BATCH as usize {
            break;
        }
        let waiting: Vec<ChatMessage> = lines.try_iter().take(WRITE_BATCH).collect();
        if !waiting.is_empty() {
            store(pool, &waiting, stopping);
        }
    }
    if deleted > 0 {
        info!(
            deleted,
            older_than_days = retention.as_secs_f64() / 86_400.0,
            "pruned chat history"
        );
    }
}

impl Drop for ChatWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

fn handle_chat(
    mut commands: Commands,
    mut inbound: MessageReader<Inbound>,
    mut server: ResMut<RenetServer>,
    mut history: ResMut<ChatHistory>,
    writer: Res<ChatWriter>,
    limit: Res<ChatLimit>,
    sanctions: Res<Sanctions>,
    mut senders: Query<(&Player, &mut ChatBucket)>,
    players: Query<(Entity, &Connection), With<Player>>,
    mut slash_commands: MessageWriter<SlashCommand>,
    mut said: MessageWriter<ChatSaid>,
    metrics: Res<Metrics>,
) {
    let now = Instant::now();
    for Inbound {
        entity,
        client_id,
        message,
    } in inbound.read()
    {
        let ClientMessage::Chat { text } = message else {
            continue;
        };
        let deny = |server: &mut RenetServer, reason: &str| {
            metrics.chat_refused.inc();
            net::deny(server, *client_id, Request::Chat, reason);
        };
        let Ok((player, mut bucket)) = senders.get_mut(*entity) else {
            deny(&mut server, "You must log in to chat");
            continue;
        };
        match bucket.take(&limit, now) {
            Verdict::Send => {}
            Verdict::Refuse => {
                deny(&mut server, TOO_FAST);
                continue;
            }
            Verdict::Kick => {
                warn!(client_id, name = %player.name, "chat flooding");
                net::kick(&mut commands, &mut server, *entity, *client_id, FLOODING);
                continue;
            }
        }
        let text = match protocol::clean_chat_text(text) {
            Ok(text) => text.to_owned(),
            Err(reason) => {
                deny(&mut server, reason);
                continue;
            }
        };
        if let Some(command) = text.strip_prefix('/') {
            slash_commands.write(SlashCommand {
                entity: *entity,
                client_id: *client_id,
                text: command.to_owned(),
            });
            continue;
        }
        let sent_at_ms = now_ms();
        if let Some(mute) = sanctions.mute(player.account_id, sent_at_ms) {
            deny(&mut server, &mute.muted_text(sent_at_ms));
            continue;
        }
        let line = ChatLine {
            sender: player.name.clone(),
            text,
            sent_at_ms,
        };
        let bytes = net::encode(&ServerMessage::Chat(line.clone()));
        let sent = players::broadcast(&mut server, players, &bytes, None);
        metrics.chat_lines_in.inc();
        metrics.chat_lines_out.inc_by(sent as u64);
        writer.write(ChatMessage {
            account_id: player.account_id,
            sender: line.sender.clone(),
            body: line.text.clone(),
            sent_at_ms: line.sent_at_ms as i64,
        });
        said.write(ChatSaid(line.clone()));
        history.push(line);
    }
}

fn send_history(
    add: On<Add, Player>,
    mut commands: Commands,
    players: Query<&Connection>,
    history: Res<ChatHistory>,
    limit: Res<ChatLimit>,
    mut server: ResMut<RenetServer>,
) {
    commands
        .entity(add.entity)
        .insert(ChatBucket::full(&limit, Instant::now()));
    if let Ok(connection) = players.get(add.entity) {
        let lines = history.lines.iter().cloned().collect();
        net::send(
            &mut server,
            connection.client_id,
            &ServerMessage::ChatHistory { lines },
        );
    }
}

fn flush_writer(_: On<ServerStopping>, mut writer: ResMut<ChatWriter>) {
    writer.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate_then_kicks_a_steady_flooder() {
        let limit = ChatLimit {
            burst: 5.0,
            per_second: 1.0,
            kick_after: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut bucket = ChatBucket::full(&limit, t0);
        for _ in 0..5 {
            assert_eq!(bucket.take(&limit, t0), Verdict::Send);
        }
        assert_eq!(bucket.take(&limit, t0), Verdict::Refuse);
        assert_eq!(
            bucket.take(&limit, t0 + Duration::from_millis(1000)),
            Verdict::Send,
            "one a second"
        );
        // Two lines a second: half are refused, and after ten seconds of it the player is kicked.
        let verdicts: Vec<_> = (0..24)
            .map(|i| bucket.take(&limit, t0 + Duration::from_millis(1000 + 500 * i)))
            .collect();
        assert!(verdicts.contains(&Verdict::Refuse));
        assert_eq!(verdicts.last(), Some(&Verdict::Kick));
        // A player who pauses until the bucket is full again starts over.
        let mut calm = ChatBucket::full(&limit, t0);
        for _ in 0..6 {
            calm.take(&limit, t0);
        }
        assert_eq!(
            calm.take(&limit, t0 + Duration::from_secs(20)),
            Verdict::Send
        );
        assert!(calm.over_since.is_none());
    }
}
