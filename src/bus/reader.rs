//! The bus's reading thread: hands every other shard's events to the tick, reading the stream from the
//! last entry it handled (`XREAD`), so that a reader that was away catches up on what was said
//! meanwhile. A reader whose next entry was trimmed away (or whose Redis restarted empty) says so
//! ([`In::Missed`]) instead of skipping it in silence. After each (re)connection it first reads every
//! shard's presence key.

use std::collections::HashMap;
use std::time::Duration;

use crossbeam_channel::Sender;
use tracing::warn;

use super::threads::{Envelope, FIELD, In, STREAM, connect, presence_key};
use crate::metrics::Metrics;

/// Most entries one read takes.
const READ_COUNT: usize = 1_000;
/// How long a read waits for new entries before it checks whether the shard is stopping.
const READ_BLOCK: Duration = Duration::from_millis(250);

/// A stream entry's id (`MILLISECONDS-SEQUENCE`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct EntryId(u64, u64);

impl EntryId {
    /// Before every entry: a stream read from here is read whole.
    const START: Self = Self(0, 0);

    fn parse(text: &str) -> Option<Self> {
        let (ms, seq) = text.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// The reading thread: hands every other shard's events to the tick, in the stream's order; after each
/// (re)connection, first the presence of every shard as Redis holds it, and [`In::Missed`] if entries
/// since the last one read are gone. The position is kept across reconnections, not across restarts:
/// a shard that starts reads from the stream's end (it has no players yet, and its history and
/// sanctions come from the database).
pub(super) fn subscribe(
    url: &str,
    shard: &str,
    events: &Sender<In>,
    stop: &std::sync::atomic::AtomicBool,
    metrics: &Metrics,
) {
    let stopping = || stop.load(std::sync::atomic::Ordering::SeqCst);
    let mut last: Option<EntryId> = None;
    while !stopping() {
        let Some(mut conn) = connect(url, "reader", stopping) else {
            return;
        };
        // Where to read from, then presence, then the events from there on; the tick hears of presence
        // once the position is set (what it does then, claiming its players' accounts again, may make
        // another shard append a kick, which this reader must not miss).
        let start = match last {
            Some(last) => catch_up_from(&mut conn, last).map(|missed| (last, missed)),
            None => stream_end(&mut conn).map(|end| (end, false)),
        };
        let presence = start.and_then(|start| Ok((start, read_presence(&mut conn, shard)?)));
        let ((from, missed), presence) = match presence {
            Ok(read) => read,
            Err(error) => {
                warn!(%error, "cannot read the bus's position or presence");
                continue;
            }
        };
        if conn
            .set_read_timeout(Some(READ_BLOCK + Duration::from_secs(5)))
            .is_err()
        {
            continue;
        }
        let _ = events.send(In::Presence(presence));
        if missed {
            metrics.bus_missed.inc();
            let _ = events.send(In::Missed);
        }
        last = Some(from);
        metrics.bus_up.set(1);
        while !stopping() {
            let read = read_after(&mut conn, last.unwrap_or(EntryId::START));
            let entries = match read {
                Ok(entries) => entries,
                Err(error) => {
                    warn!(%error, "lost the bus (reading); players here keep playing, reconnecting");
                    metrics.bus_up.set(0);
                    break;
                }
            };
            for (id, bytes) in entries {
                last = Some(id);
                let Some(envelope) = bytes.as_deref().and_then(Envelope::decode) else {
                    metrics.bus_undecodable.inc();
                    if BAD_ENTRY_LOG.allow(0) {
                        warn!(%id, "undecodable entry on the bus; skipped");
                    }
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
        }
    }
}

/// Anyone able to write to the bus's Redis can cause this line (`crate::logs`).
static BAD_ENTRY_LOG: crate::logs::Budget =
    crate::logs::Budget::new("undecodable bus entry", 5, 60);

/// The id of the stream's newest entry ([`EntryId::START`] if it has none): where a starting shard
/// begins to read.
fn stream_end(conn: &mut redis::Connection) -> redis::RedisResult<EntryId> {
    let newest: Vec<(String, redis::Value)> = redis::cmd("XREVRANGE")
        .arg(STREAM)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(conn)?;
    Ok(newest
        .first()
        .and_then(|(id, _)| EntryId::parse(id))
        .unwrap_or(EntryId::START))
}

/// Whether entries after `last` are gone: the stream still holds `last` (nothing after it can have been
/// trimmed), or the newest entry trimmed is `last` itself; otherwise something after it was trimmed,
/// or the stream was lost with Redis's data.
fn catch_up_from(conn: &mut redis::Connection, last: EntryId) -> redis::RedisResult<bool> {
    if last == EntryId::START {
        return Ok(false);
    }
    let held: Vec<(String, redis::Value)> = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg(last.to_string())
        .arg(last.to_string())
        .query(conn)?;
    if !held.is_empty() {
        return Ok(false);
    }
    let info: redis::RedisResult<HashMap<String, redis::Value>> =
        redis::cmd("XINFO").arg("STREAM").arg(STREAM).query(conn);
    let max_deleted = info
        .ok()
        .and_then(|info| match info.get("max-deleted-entry-id") {
            Some(redis::Value::BulkString(bytes)) => {
                std::str::from_utf8(bytes).ok().and_then(EntryId::parse)
            }
            Some(redis::Value::SimpleString(text)) => EntryId::parse(text),
            _ => None,
        });
    Ok(max_deleted != Some(last))
}

/// Entries after `last`, waiting up to [`READ_BLOCK`] for some: each id with its payload (`None` if
/// the entry has no [`FIELD`]).
fn read_after(
    conn: &mut redis::Connection,
    last: EntryId,
) -> redis::RedisResult<Vec<(EntryId, Option<Vec<u8>>)>> {
    type Reply = Option<Vec<(String, Vec<(String, Vec<Vec<u8>>)>)>>;
    let reply: Reply = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(READ_COUNT)
        .arg("BLOCK")
        .arg(READ_BLOCK.as_millis() as u64)
        .arg("STREAMS")
        .arg(STREAM)
        .arg(last.to_string())
        .query(conn)?;
    let mut entries = Vec::new();
    for (_, stream) in reply.unwrap_or_default() {
        for (id, fields) in stream {
            let Some(id) = EntryId::parse(&id) else {
                continue;
            };
            let payload = fields
                .chunks_exact(2)
                .find(|pair| pair[0] == FIELD.as_bytes())
                .map(|pair| pair[1].clone());
            entries.push((id, payload));
        }
    }
    Ok(entries)
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
    fn entry_ids_parse_and_order_as_redis_orders_them() {
        let id = |text| EntryId::parse(text).unwrap();
        assert_eq!(id("1700000000000-0"), EntryId(1_700_000_000_000, 0));
        assert!(id("5-10") > id("5-9"), "by sequence within a millisecond");
        assert!(id("6-0") > id("5-99"));
        assert!(id("1-0") > EntryId::START);
        assert_eq!(id("12-3").to_string(), "12-3");
        for junk in ["", "5", "5-", "-1", "a-1", "1-b", "1-2-3"] {
            assert_eq!(EntryId::parse(junk), None, "{junk:?}");
        }
    }
}
