//! The two threads that talk to Redis for the bus (never the tick), and what they share. This file:
//! the publisher, which appends this shard's events to a Redis stream (`XADD`, trimmed to
//! `--bus-stream-len` entries), writes its roster and presence key, and claims accounts. The reader,
//! which hands every other shard's events to the tick from the last entry it handled, is
//! [`super::reader`]. Both reconnect with backoff when Redis is away. What crosses the bus is an
//! [`Envelope`] (bincode, size-limited: an undecodable entry is skipped and counted).

use std::time::Duration;

use bevy_renet::renet::ClientId;
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Event, SHARD_EXPIRY};
use crate::metrics::Metrics;

/// The stream every shard appends to and reads.
pub(super) const STREAM: &str = "mmo:events";
/// The field of a stream entry that holds the encoded [`Envelope`].
pub(super) const FIELD: &str = "e";
/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Largest event a shard accepts from the bus (a roster of 1,024 players is about 30 KB).
const MAX_EVENT_BYTES: usize = 256 * 1024;
/// How long a login's claim on its account is kept (the account's next login replaces it).
const CLAIM_SECS: u64 = 86_400;

/// The key that holds `shard`'s last roster while it is alive.
pub(super) fn presence_key(shard: &str) -> String {
    format!("mmo:shard:{shard}")
}

/// The key that holds who has `account_id`'s claim: a [`holder`].
fn owner_key(account_id: i32) -> String {
    format!("mmo:owner:{account_id}")
}

/// A claim's value: the shard and the session that hold it.
fn holder(shard: &str, session: ClientId) -> String {
    format!("{shard}/{session}")
}

/// An event and the shard it comes from.
#[derive(Deserialize, Debug, PartialEq)]
pub(super) struct Envelope {
    pub(super) shard: String,
    pub(super) event: Event,
}

/// An [`Envelope`] as it is encoded, from borrowed parts: publishing copies nothing.
#[derive(Serialize)]
struct Outgoing<'a> {
    shard: &'a str,
    event: &'a Event,
}

/// The bytes of `event` from `shard` on the bus (an [`Envelope`] decodes them).
fn encode(shard: &str, event: &Event) -> Vec<u8> {
    bincode::serde::encode_to_vec(Outgoing { shard, event }, bincode::config::standard())
        .expect("encoding into a Vec cannot fail")
}

impl Envelope {
    pub(super) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_EVENT_BYTES {
            return None;
        }
        let config = bincode::config::standard().with_limit::<MAX_EVENT_BYTES>();
        bincode::serde::decode_from_slice(bytes, config)
            .ok()
            .map(|(envelope, _)| envelope)
    }
}

/// What the tick asks of the publishing thread.
pub(super) enum Out {
    Publish(Event),
    /// Claims the account for this session; a previous holder elsewhere is told to kick its session.
    Claim {
        account_id: i32,
        session: ClientId,
    },
    /// Back on the bus: claims again every `(account, session)` playing here (see [`reclaim`]).
    Reclaim(Vec<(i32, ClientId)>),
}

/// What the bus threads hand the tick.
pub(super) enum In {
    Event(Envelope),
    /// Back on the bus, the stream no longer held every entry since the last one read (it was trimmed
    /// past it while this shard was away, or Redis restarted without its data): what other shards said
    /// meanwhile may be missing here.
    Missed,
    /// After (re)connecting: every shard's presence key, read from Redis.
    Presence(Vec<Envelope>),
    /// From the publisher: this session lost its account's claim to a login on `holder` (see
    /// [`reclaim`]); it is closed.
    LostClaim {
        account_id: i32,
        session: ClientId,
        holder: String,
    },
}

/// Connects, retrying with backoff until it works or `give_up` says so.
pub(super) fn connect(
    url: &str,
    role: &str,
    give_up: impl Fn() -> bool,
) -> Option<redis::Connection> {
    let mut backoff = Duration::from_millis(100);
    let mut logged = false;
    loop {
        let attempt = redis::Client::open(url)
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(2)));
        match attempt {
            Ok(connection) => {
                if logged {
                    info!(role, "reconnected to the bus");
                }
                return Some(connection);
            }
            Err(error) => {
                if !logged {
                    warn!(role, %error, "cannot reach the bus; players here keep playing, retrying");
                    logged = true;
                }
                if give_up() {
                    return None;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// The publishing thread: sends events and claims until the tick closes its channel; reconnects when
/// Redis is away, while what the tick sends waits in the queue (bounded: `--bus-queue`; the tick pauses
/// chat before it is full). Only once the shard is stopping is what could not be sent dropped, and
/// counted. A session here that lost its account's claim is handed to the tick through `lost`.
pub(super) fn publish(
    url: &str,
    shard: &str,
    jobs: &Receiver<Out>,
    lost: &Sender<In>,
    stop: &std::sync::atomic::AtomicBool,
    metrics: &Metrics,
    stream_len: usize,
) {
    let mut connection: Option<redis::Connection> = None;
    let presence = presence_key(shard);
    for job in jobs {
        // A dropped connection shows as a failed job: that job is tried once more on a new connection
        // (a claim must not be lost with the connection).
        for _attempt in 0..2 {
            if connection.is_none() {
                // While Redis is away jobs wait in the queue, and go out once it is back.
                let give_up = || stop.load(std::sync::atomic::Ordering::SeqCst);
                connection = connect(url, "publisher", give_up);
                if connection.is_none() {
                    let dropped = jobs.try_iter().count();
                    metrics.bus_dropped.inc_by(dropped as u64 + 1);
                    warn!(
                        dropped,
                        "stopping with the bus away; dropped the events queued for it"
                    );
                    break;
                }
            }
            let Some(conn) = connection.as_mut() else {
                break;
            };
            match run(conn, shard, &presence, &job, lost, metrics, stream_len) {
                Ok(()) => break,
                Err(error) => {
                    warn!(%error, "lost the bus (publishing); players here keep playing");
                    connection = None;
                }
            }
        }
    }
    // Shutting down (its players' Left sent above): this shard is gone from everyone's list and
    // routing table at once.
    if let Some(conn) = connection.as_mut() {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&presence).ignore();
        append(&mut pipe, encode(shard, &Event::Gone), stream_len);
        let _ = pipe.query::<()>(conn);
    }
}

/// Adds to `pipe` the append of `bytes` to the stream, trimmed to about `stream_len` entries (`~`:
/// Redis trims whole blocks, cheaply, keeping at least that many).
fn append(pipe: &mut redis::Pipeline, bytes: Vec<u8>, stream_len: usize) {
    pipe.cmd("XADD")
        .arg(STREAM)
        .arg("MAXLEN")
        .arg("~")
        .arg(stream_len)
        .arg("*")
        .arg(FIELD)
        .arg(bytes)
        .ignore();
}

/// Does one job of the publishing thread on `conn`.
fn run(
    conn: &mut redis::Connection,
    shard: &str,
    presence: &str,
    job: &Out,
    lost: &Sender<In>,
    metrics: &Metrics,
    stream_len: usize,
) -> redis::RedisResult<()> {
    match job {
        Out::Publish(event) => {
            let bytes = encode(shard, event);
            let mut pipe = redis::pipe();
            if matches!(event, Event::Roster { .. }) {
                pipe.cmd("SET")
                    .arg(presence)
                    .arg(&bytes)
                    .arg("PX")
                    .arg(SHARD_EXPIRY.as_millis() as u64)
                    .ignore();
            }
            append(&mut pipe, bytes, stream_len);
            metrics.bus_published.inc();
            pipe.query::<()>(conn)
        }
        &Out::Claim {
            account_id,
            session,
        } => claim(conn, shard, account_id, session, stream_len),
        Out::Reclaim(sessions) => reclaim(conn, shard, sessions, lost),
    }
}

/// Claims `account_id` for `session` on this shard; tells the previous holder, if another, to kick.
fn claim(
    conn: &mut redis::Connection,
    shard: &str,
    account_id: i32,
    session: ClientId,
    stream_len: usize,
) -> redis::RedisResult<()> {
    let mine = holder(shard, session);
    let previous: Option<String> = redis::cmd("SET")
        .arg(owner_key(account_id))
        .arg(&mine)
        .arg("EX")
        .arg(CLAIM_SECS)
        .arg("GET")
        .query(conn)?;
    let Some(previous) = previous.filter(|p| *p != mine) else {
        return Ok(());
    };
    let Some((_, old_session)) = previous.rsplit_once('/') else {
        return Ok(());
    };
    let Ok(old_session) = old_session.parse::<ClientId>() else {
        return Ok(());
    };
    let kick = Event::Kick {
        account_id,
        session: old_session,
    };
    let mut pipe = redis::pipe();
    append(&mut pipe, encode(shard, &kick), stream_len);
    pipe.query(conn)
}

/// Claims again, after the bus was away, every account playing here: Redis may have restarted empty
/// (then the claims are gone and a second login elsewhere would find no session to kick), or another
/// shard may have claimed one of them meanwhile and its kick been lost with the bus. Only where no one
/// holds the claim is it taken (`SET … NX GET`); where another session holds it, that one is the
/// newer login and the session here is kicked, so every account still ends with exactly one session.
fn reclaim(
    conn: &mut redis::Connection,
    shard: &str,
    sessions: &[(i32, ClientId)],
    lost: &Sender<In>,
) -> redis::RedisResult<()> {
    if sessions.is_empty() {
        return Ok(());
    }
    let mine: Vec<String> = sessions
        .iter()
        .map(|&(_, session)| holder(shard, session))
        .collect();
    let mut pipe = redis::pipe();
    for (&(account_id, _), mine) in sessions.iter().zip(&mine) {
        pipe.cmd("SET")
            .arg(owner_key(account_id))
            .arg(mine)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(CLAIM_SECS);
    }
    let holders: Vec<Option<String>> = pipe.query(conn)?;
    for ((&(account_id, session), mine), held_by) in sessions.iter().zip(&mine).zip(holders) {
        let Some(held_by) = held_by.filter(|h| h != mine) else {
            continue;
        };
        let holder = held_by
            .rsplit_once('/')
            .map_or(held_by.as_str(), |(shard, _)| shard);
        let _ = lost.send(In::LostClaim {
            account_id,
            session,
            holder: holder.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_junk_is_refused() {
        let event = Event::Roster {
            players: vec![(1, "alice".into())],
            addr: "127.0.0.1:5000".parse().unwrap(),
            capacity: 1024,
        };
        let envelope = Envelope {
            shard: "a".into(),
            event: event.clone(),
        };
        assert_eq!(Envelope::decode(&encode("a", &event)), Some(envelope));
        assert_eq!(Envelope::decode(&[9, 9, 9]), None);
    }
}
