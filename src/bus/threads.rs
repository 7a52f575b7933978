//! The two threads that talk to Redis for the bus (never the tick): the publisher sends this shard's
//! events, its roster and presence key, and claims accounts; the subscriber hands every other shard's
//! events to the tick. Both reconnect with backoff when Redis is away. What crosses the bus is an
//! [`Envelope`] (bincode, size-limited: undecodable events are dropped).

use std::time::Duration;

use bevy_renet::renet::ClientId;
use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Event, SHARD_EXPIRY};
use crate::metrics::Metrics;

/// The pub/sub channel every shard publishes on and listens to.
const CHANNEL: &str = "mmo:events";
/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Events queued for the bus while Redis is away before they are dropped.
const MAX_QUEUED: usize = 10_000;
/// Largest event a shard accepts from the bus (a roster of 1,024 players is about 30 KB).
const MAX_EVENT_BYTES: usize = 256 * 1024;
/// How long a login's claim on its account is kept (the account's next login replaces it).
const CLAIM_SECS: u64 = 86_400;

/// The key that holds `shard`'s last roster while it is alive.
fn presence_key(shard: &str) -> String {
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
    fn decode(bytes: &[u8]) -> Option<Self> {
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
fn connect(url: &str, role: &str, give_up: impl Fn() -> bool) -> Option<redis::Connection> {
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
/// Redis is away, dropping what it could not send meanwhile (the shard's own players got it already).
/// A session here that lost its account's claim is handed to the tick through `lost`.
pub(super) fn publish(
    url: &str,
    shard: &str,
    jobs: &Receiver<Out>,
    lost: &Sender<In>,
    stop: &std::sync::atomic::AtomicBool,
    metrics: &Metrics,
) {
    let mut connection: Option<redis::Connection> = None;
    let presence = presence_key(shard);
    for job in jobs {
        // A dropped connection shows as a failed job: that job is tried once more on a new connection
        // (a claim must not be lost with the connection).
        for _attempt in 0..2 {
            if connection.is_none() {
                // While Redis is away jobs queue here; what piles up beyond a bound is dropped (this
                // shard's own players had it already), the rest goes out once it is back.
                let give_up =
                    || stop.load(std::sync::atomic::Ordering::SeqCst) || jobs.len() > MAX_QUEUED;
                connection = connect(url, "publisher", give_up);
                if connection.is_none() {
                    let dropped = jobs.try_iter().count();
                    metrics.bus_dropped.inc_by(dropped as u64 + 1);
                    warn!(
                        dropped,
                        "the bus is still away; dropped the events queued for it"
                    );
                    break;
                }
            }
            let Some(conn) = connection.as_mut() else {
                break;
            };
            match run(conn, shard, &presence, &job, lost, metrics) {
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
        let _ = redis::pipe()
            .cmd("DEL")
            .arg(&presence)
            .ignore()
            .cmd("PUBLISH")
            .arg(CHANNEL)
            .arg(encode(shard, &Event::Gone))
            .ignore()
            .query::<()>(conn);
    }
}

/// Does one job of the publishing thread on `conn`.
fn run(
    conn: &mut redis::Connection,
    shard: &str,
    presence: &str,
    job: &Out,
    lost: &Sender<In>,
    metrics: &Metrics,
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
            pipe.cmd("PUBLISH").arg(CHANNEL).arg(bytes).ignore();
            metrics.bus_published.inc();
            pipe.query::<()>(conn)
        }
        &Out::Claim {
            account_id,
            session,
        } => claim(conn, shard, account_id, session),
        Out::Reclaim(sessions) => reclaim(conn, shard, sessions, lost),
    }
}

/// Claims `account_id` for `session` on this shard; tells the previous holder, if another, to kick.
fn claim(
    conn: &mut redis::Connection,
    shard: &str,
    account_id: i32,
    session: ClientId,
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
    redis::cmd("PUBLISH")
        .arg(CHANNEL)
        .arg(encode(shard, &kick))
        .query(conn)
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

/// The subscribing thread: hands every other shard's event to the tick; after each (re)connection,
/// the presence of every shard as Redis holds it.
pub(super) fn subscribe(
    url: &str,
    shard: &str,
    events: &Sender<In>,
    stop: &std::sync::atomic::AtomicBool,
    metrics: &Metrics,
) {
    let stopping = || stop.load(std::sync::atomic::Ordering::SeqCst);
    while !stopping() {
        let Some(mut conn) = connect(url, "subscriber", stopping) else {
            return;
        };
        // Presence first, then the events from here on; the tick hears of it once subscribed (what it
        // does then, claiming its players' accounts again, may make another shard publish a kick).
        let presence = match read_presence(&mut conn, shard) {
            Ok(presence) => presence,
            Err(error) => {
                warn!(%error, "cannot read presence from the bus");
                continue;
            }
        };
        let mut pubsub = conn.as_pubsub();
        if let Err(error) = pubsub
            .subscribe(CHANNEL)
            .and_then(|()| pubsub.set_read_timeout(Some(Duration::from_millis(250))))
        {
            warn!(%error, "cannot subscribe to the bus");
            continue;
        }
        let _ = events.send(In::Presence(presence));
        metrics.bus_up.set(1);
        while !stopping() {
            match pubsub.get_message() {
                Ok(message) => {
                    let Some(envelope) = Envelope::decode(message.get_payload_bytes()) else {
                        warn!("undecodable event on the bus; ignored");
                        continue;
                    };
                    if envelope.shard == shard {
                        continue;
                    }
                    metrics.bus_received.inc();
                    if events.send(In::Event(envelope)).is_err() {
                        return;
                    }
                }
                Err(error) if error.is_timeout() => {}
                Err(error) => {
                    warn!(%error, "lost the bus (subscribed); players here keep playing, reconnecting");
                    metrics.bus_up.set(0);
                    break;
                }
            }
        }
    }
}

/// Every other shard's last roster, from its presence key. The keys are found with `SCAN`, not `KEYS`:
/// the keyspace also holds a claim per account played in the last day, and `KEYS` would stop Redis for
/// every shard while it walked them all.
fn read_presence(conn: &mut redis::Connection, shard: &str) -> redis::RedisResult<Vec<Envelope>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(presence_key("*"))
            .arg("COUNT")
            .arg(1000)
            .query(conn)?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // SCAN may return a key twice.
    keys.sort_unstable();
    keys.dedup();
    let own = presence_key(shard);
    let mut rosters = Vec::new();
    for key in keys {
        if key == own {
            continue;
        }
        let bytes: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query(conn)?;
        if let Some(envelope) = bytes.as_deref().and_then(Envelope::decode) {
            rosters.push(envelope);
        }
    }
    Ok(rosters)
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
