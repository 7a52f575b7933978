//! Chat: players' lines checked, stamped with the sender's name and the server's time, broadcast to
//! every player (a tick's lines together, encoded once: [`broadcast_lines`]), kept in a short in-memory
//! history sent after login, and stored by the [`history`] writer thread. A muted player's lines are
//! refused; a line that starts with `/` passes the same flood limit and checks, then goes to the
//! commands plugin as a [`SlashCommand`] (run in the same tick). Chat's own commands are files of their
//! own: [`whisper`] (`/w`, `/who`) and [`announce`] (`say`).

pub mod announce;
pub mod history;
pub mod whisper;

use std::time::{Duration, Instant};

use bevy::prelude::*;

use crate::commands::SlashCommand;
use crate::config::Config;
use crate::db::Database;
use crate::db::models::ChatMessage;
use crate::logs::Budget;
use crate::metrics::Metrics;
use crate::moderation::Sanctions;
use crate::net::{self, Connection, Inbound, Outbox};
use crate::players::{self, Player};
use crate::protocol::{self, ChatLine, ClientMessage, Request, ServerMessage};
use crate::schedule::ServerSystems;
use crate::time::now_ms;
use crate::worker::stop_at_shutdown;
pub use history::{ChatHistory, ChatWriter, PRUNE_EVERY};

pub(crate) fn plugin(app: &mut App) {
    let pool = app.world().resource::<Database>().pool("chat", 1);
    let config = app.world().resource::<Config>();
    let limit = ChatLimit {
        burst: config.chat_burst as f32,
        per_second: config.chat_per_second.max(0.0),
        kick_after: Duration::from_secs(u64::from(config.chat_kick_after)),
    };
    let retention = config.chat_retention();
    let capacity = config.chat_queue as usize;
    let writes = app.world().resource::<Metrics>().chat_write_seconds.clone();
    app.insert_resource(ChatWriter::start(pool, retention, writes, capacity))
        .insert_resource(limit)
        .init_resource::<ChatOutlets>()
        .add_message::<ChatSaid>()
        .add_systems(Update, handle_chat.in_set(ServerSystems::Requests))
        .add_observer(send_history)
        .add_plugins((whisper::plugin, announce::plugin));
    stop_at_shutdown::<ChatWriter>(app);
}

/// What a player is told when over the chat limit.
pub const TOO_FAST: &str = "You are sending messages too fast";
/// Why a player who keeps flooding is disconnected.
pub const FLOODING: &str = "Kicked for flooding the chat";

/// What a player is told when a line cannot be queued for storage or for the other shards (their
/// queue is full: the database or the bus is away, or too slow, for a while). The line is not sent.
pub const PAUSED: &str = "Chat is paused, the server cannot store it right now";

/// Where chat lines go after the tick besides the database, and whether each has room: an outlet (the
/// bus) says `full` while its queue is past its bound, and chat is then paused ([`PAUSED`]) rather than
/// a line said here but lost on its way there. Each outlet sets its own flag every tick.
#[derive(Resource, Debug, Default)]
pub struct ChatOutlets {
    full: Vec<&'static str>,
}

impl ChatOutlets {
    /// Says whether the outlet `name` is full.
    pub fn set_full(&mut self, name: &'static str, full: bool) {
        let listed = self.full.contains(&name);
        if full && !listed {
            self.full.push(name);
        } else if !full && listed {
            self.full.retain(|n| *n != name);
        }
    }

    /// The first full outlet, if any.
    pub fn full(&self) -> Option<&'static str> {
        self.full.first().copied()
    }
}

/// A line refused because a queue was full: once a minute at most (any player can cause it).
static PAUSED_LOG: Budget = Budget::new("chat paused", 1, 60);

/// The log line of a flooder's kick, which a player can cause again and again (`crate::logs`).
static FLOODING_LOG: Budget = Budget::new("chat flooding", 5, 60);

/// A line a player of this shard said (after it was broadcast here): the bus relays it to other shards.
#[derive(Message, Debug, Clone)]
pub struct ChatSaid(pub ChatLine);

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

fn handle_chat(
    mut commands: Commands,
    mut inbound: MessageReader<Inbound>,
    mut server: Outbox,
    mut history: ResMut<ChatHistory>,
    writer: Res<ChatWriter>,
    outlets: Res<ChatOutlets>,
    limit: Res<ChatLimit>,
    sanctions: Res<Sanctions>,
    mut senders: Query<(&Player, &mut ChatBucket)>,
    players: Query<(Entity, &Connection), With<Player>>,
    mut slash_commands: MessageWriter<SlashCommand>,
    mut said: MessageWriter<ChatSaid>,
    metrics: Res<Metrics>,
) {
    let now = Instant::now();
    // The tick's lines go out together; a refusal sends what was said before it first, so that a
    // player sees the answers to their lines in the order they sent them.
    let mut said_now = Vec::new();
    metrics.queue_depth.chat.set(writer.queued() as i64);
    let flush = |server: &mut Outbox, said_now: &mut Vec<ChatLine>| {
        let delivered = broadcast_lines(server, || players.iter(), &std::mem::take(said_now));
        metrics.chat_lines_out.inc_by(delivered as u64);
    };
    for Inbound {
        entity,
        client_id,
        message,
    } in inbound.read()
    {
        let ClientMessage::Chat { text } = message else {
            continue;
        };
        let deny = |server: &mut Outbox, said_now: &mut Vec<ChatLine>, reason: &str| {
            flush(server, said_now);
            metrics.chat_refused.inc();
            net::deny(server, *client_id, Request::Chat, reason);
        };
        let Ok((player, mut bucket)) = senders.get_mut(*entity) else {
            deny(&mut server, &mut said_now, "You must log in to chat");
            continue;
        };
        match bucket.take(&limit, now) {
            Verdict::Send => {}
            Verdict::Refuse => {
                deny(&mut server, &mut said_now, TOO_FAST);
                continue;
            }
            Verdict::Kick => {
                if FLOODING_LOG.allow(player.account_id) {
                    warn!(client_id, name = %player.name, "chat flooding");
                }
                flush(&mut server, &mut said_now);
                net::kick(&mut commands, &mut server, *entity, *client_id, FLOODING);
                continue;
            }
        }
        let text = match protocol::clean_chat_text(text) {
            Ok(text) => text.to_owned(),
            Err(reason) => {
                deny(&mut server, &mut said_now, reason);
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
            deny(&mut server, &mut said_now, &mute.muted_text(sent_at_ms));
            continue;
        }
        let line = ChatLine {
            sender: player.name.clone(),
            text,
            sent_at_ms,
        };
        // Queued for storage (and the other shards' queue has room) before anyone is sent it.
        let stored = outlets.full().is_none()
            && writer
                .write(ChatMessage {
                    account_id: player.account_id,
                    sender: line.sender.clone(),
                    body: line.text.clone(),
                    sent_at_ms: line.sent_at_ms as i64,
                })
                .is_ok();
        if !stored {
            if PAUSED_LOG.allow(0) {
                warn!(
                    queued = writer.queued(),
                    outlet = outlets.full().unwrap_or("database"),
                    "chat paused: a queue is full"
                );
            }
            metrics.chat_paused.inc();
            deny(&mut server, &mut said_now, PAUSED);
            continue;
        }
        metrics.chat_lines_in.inc();
        said.write(ChatSaid(line.clone()));
        said_now.push(line.clone());
        history.push(line);
    }
    flush(&mut server, &mut said_now);
}

/// Most encoded bytes of chat lines put in one message: with renet's message header it stays one of
/// renet's small messages (over 1,200 bytes it is cut into slices, each sent and acknowledged apart).
const BATCH_BYTES: usize = 1_100;

/// Sends `lines` to every player, in order, in as few messages as fit 1,100 bytes each (a line
/// alone goes as [`ServerMessage::Chat`], several as [`ServerMessage::ChatLines`]); each message is
/// encoded once. Returns the deliveries (lines times the players each reached). Under a busy chat this
/// is what keeps the transport's work per player and tick rather than per line and player: renet's cost
/// is mostly per message.
pub fn broadcast_lines<'a, P>(
    server: &mut Outbox,
    players: impl Fn() -> P,
    lines: &[ChatLine],
) -> usize
where
    P: IntoIterator<Item = (Entity, &'a Connection)>,
{
    let mut delivered = 0;
    for batch in batches(lines) {
        let message = match batch {
            [line] => ServerMessage::Chat(line.clone()),
            lines => ServerMessage::ChatLines {
                lines: lines.to_vec(),
            },
        };
        let sent = players::broadcast(server, players(), &net::encode(&message), None);
        delivered += sent * batch.len();
    }
    delivered
}

/// `lines` cut, in order, into runs that encode to at most [`BATCH_BYTES`] (a longer line alone).
fn batches(lines: &[ChatLine]) -> impl Iterator<Item = &[ChatLine]> {
    let mut rest = lines;
    std::iter::from_fn(move || {
        let mut bytes = 0;
        let mut count = 0;
        for line in rest {
            bytes += encoded_size(line);
            if count > 0 && bytes > BATCH_BYTES {
                break;
            }
            count += 1;
        }
        let (batch, tail) = rest.split_at(count);
        rest = tail;
        (!batch.is_empty()).then_some(batch)
    })
}

/// At least what a line adds to a [`ServerMessage::ChatLines`]: its two strings with their length
/// prefixes (up to 3 bytes each at these lengths) and its time (up to 9).
fn encoded_size(line: &ChatLine) -> usize {
    line.sender.len() + line.text.len() + 15
}

fn send_history(
    add: On<Add, Player>,
    mut commands: Commands,
    players: Query<&Connection>,
    history: Res<ChatHistory>,
    limit: Res<ChatLimit>,
    mut server: Outbox,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticks_lines_go_in_order_in_messages_of_one_packet() {
        let line = |text: String| ChatLine {
            sender: "somebody_long_named".into(),
            text,
            sent_at_ms: u64::MAX,
        };
        let mut lines: Vec<ChatLine> = (0..40).map(|i| line(format!("line {i}"))).collect();
        lines.insert(7, line("\u{1F600}".repeat(crate::protocol::MAX_CHAT_CHARS)));
        let messages: Vec<&[ChatLine]> = batches(&lines).collect();
        assert_eq!(messages.concat(), lines, "every line once, in order");
        assert!(
            messages.len() < lines.len() / 4,
            "{} messages",
            messages.len()
        );
        for batch in &messages {
            let encoded = ServerMessage::ChatLines {
                lines: batch.to_vec(),
            }
            .encode();
            assert!(
                encoded.len() <= BATCH_BYTES || batch.len() == 1,
                "{} lines in {} bytes",
                batch.len(),
                encoded.len()
            );
        }
        assert_eq!(batches(&[]).count(), 0);
    }

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
