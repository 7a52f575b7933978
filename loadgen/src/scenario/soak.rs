//! `soak`: the players of the chaos soak (`scripts/chaos.sh`), and its checks. N players in token mode
//! log in over every shard's HTTPS endpoint, then chat, whisper and walk while a driver kills, stops
//! and restarts shards, Redis and PostgreSQL around them; each reconnects by itself when its shard goes
//! (its session, any login server that answers, a live shard). Afterwards [`check`] holds what the
//! players saw against what the driver did (its log: [`read_outages`]) and what the shards logged
//! ([`read_sessions`]): every acknowledged line reached every player in play on a live shard while it
//! crossed, every player that lost its shard was back within [`BACK_WITHIN`], and no account was in
//! play on two shards at once. Whether every acknowledged line was stored, the script asks the
//! database, with the line numbers [`SoakRun::acknowledged`] lists.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mmo::client::api::ApiClient;
use mmo::protocol::{ClientMessage, WORLD_SIZE};
use serde::Serialize;

use super::{PASSWORD, Play, SETUP_LIMIT, Sim, Stage, XorShift, idle_pass, names, now_ms, stuck};
use crate::target::Kind;
use crate::token;

/// A player that lost its shard must be in play again within this long of the shard going.
pub const BACK_WITHIN: Duration = Duration::from_secs(10);
/// How long after it was acknowledged (or after the outage of the bus or of its sender's shard that it
/// waited out) a line may take to reach a player on another shard.
pub const CROSSING_GRACE: Duration = Duration::from_secs(2);
/// Two sessions of one account on two live shards may overlap this long: the time the bus takes to
/// carry the kick from the shard of the newer login to the shard of the older one.
pub const KICK_GRACE: Duration = Duration::from_secs(1);
/// After the chat stops, how long the players keep listening for lines on their way.
pub const DRAIN: Duration = Duration::from_secs(10);
/// How long a reconnecting player waits for one login server before it tries the next: a frozen
/// shard accepts the connection and says nothing (its first logins wait on password hashing, so
/// they keep the default).
const RESUME_TIMEOUT: Duration = Duration::from_secs(2);

/// What the soak is given.
#[derive(Clone)]
pub struct SoakOptions {
    pub clients: usize,
    /// Chat lines a second per player.
    pub rate: f64,
    pub duration: Duration,
    pub client_hz: u32,
    /// Every shard's login server; players log in over them in turn, and reconnect over any.
    pub apis: Vec<ApiClient>,
}

/// One chat line a player said.
#[derive(Debug, Clone)]
pub struct Line {
    pub sender: usize,
    /// When it was sent (Unix ms).
    pub said: u64,
    /// When its sender heard it back (Unix ms): the server took it.
    pub acknowledged: Option<u64>,
}

/// What one player did and saw.
#[derive(Debug, Clone, Default)]
pub struct PlayerLog {
    pub name: String,
    pub plays: Vec<Play>,
    /// The lines (by number) it heard from others, live or in its history after a login.
    pub heard: HashSet<u64>,
    /// When it was told lines from other shards may be missing.
    pub missed_notices: Vec<u64>,
}

/// What the players did and saw.
#[derive(Debug, Clone, Default)]
pub struct SoakRun {
    pub players: Vec<PlayerLog>,
    /// Every line said, by number.
    pub lines: Vec<Line>,
    pub whispers: u64,
    pub moves: u64,
}

impl SoakRun {
    /// The numbers of the acknowledged lines (each line's text ends with its number).
    pub fn acknowledged(&self) -> impl Iterator<Item = u64> + '_ {
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, line)| line.acknowledged.is_some())
            .map(|(seq, _)| seq as u64)
    }
}

/// Runs the soak's players: logs them in (spread over the login servers), plays for `duration`, then
/// listens for [`DRAIN`] more.
pub fn run(options: &SoakOptions) -> SoakRun {
    assert!(!options.apis.is_empty(), "the soak needs a login server");
    let names = names("soak_", options.clients);
    let mut receivers: Vec<Option<_>> = (0..names.len()).map(|_| None).collect();
    for (k, api) in options.apis.iter().enumerate() {
        let mine: Vec<usize> = (k..names.len()).step_by(options.apis.len()).collect();
        let subset: Vec<String> = mine.iter().map(|&i| names[i].clone()).collect();
        for (i, rx) in mine
            .into_iter()
            .zip(token::start_logins(api, &subset, PASSWORD))
        {
            receivers[i] = Some(rx);
        }
    }
    let resume_over: Vec<ApiClient> = options
        .apis
        .iter()
        .map(|api| api.clone().with_timeout(RESUME_TIMEOUT))
        .collect();
    let mut sims: Vec<Sim> = names
        .into_iter()
        .zip(receivers)
        .map(|(name, login)| {
            let mut sim = Sim::start(None, name, options.client_hz);
            (sim.https, sim.stage) = (login, Stage::Https);
            sim.apis = resume_over.clone();
            sim
        })
        .collect();
    let mut heard: Vec<HashSet<u64>> = vec![HashSet::new(); sims.len()];
    let mut lines: Vec<Line> = Vec::new();
    let deadline = Instant::now() + SETUP_LIMIT;
    while sims
        .iter()
        .any(|s| s.stage != Stage::Ready || s.is_disconnected())
    {
        assert!(
            Instant::now() < deadline,
            "players did not all log in within {SETUP_LIMIT:?}: {}",
            stuck(&sims)
        );
        pump_all(&mut sims, &mut heard, &mut lines);
        std::thread::sleep(Duration::from_millis(20));
    }

    // The driver waits for this line before it takes anything down.
    eprintln!("soak: {} players in play", sims.len());
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ sims.len() as u64);
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / options.rate.max(0.001));
    let spread = |i: usize, of: Duration| of.mul_f64(i as f64 / sims.len().max(1) as f64);
    let mut next_line: Vec<Instant> = (0..sims.len())
        .map(|i| start + spread(i, interval))
        .collect();
    let whisper_every = Duration::from_secs(30);
    let mut next_whisper: Vec<Instant> = (0..sims.len())
        .map(|i| start + spread(i, whisper_every))
        .collect();
    let mut next_move: Vec<Instant> = vec![start; sims.len()];
    let centre = f64::from(WORLD_SIZE) / 2.0;
    let (mut whispers, mut moves) = (0, 0);
    let end = start + options.duration;
    while Instant::now() < end {
        pump_all(&mut sims, &mut heard, &mut lines);
        let now = Instant::now();
        let count = sims.len();
        for (i, sim) in sims.iter_mut().enumerate() {
            let in_play = sim.stage == Stage::Ready && !sim.is_disconnected();
            if now >= next_line[i] {
                next_line[i] += interval;
                let seq = lines.len() as u64;
                if sim.say(seq) {
                    lines.push(Line {
                        sender: i,
                        said: now_ms(),
                        acknowledged: None,
                    });
                }
            }
            if in_play && now >= next_whisper[i] {
                next_whisper[i] += whisper_every;
                let to = (i + 1 + (rng.unit() * (count - 1).max(1) as f64) as usize) % count;
                let text = format!("/w soak_{to} psst from {}", sim.name);
                sim.net().send(&ClientMessage::Chat { text });
                whispers += 1;
            }
            if in_play && now >= next_move[i] {
                next_move[i] = now + Duration::from_secs_f64(rng.between(2.0, 5.0));
                let x = (centre + rng.between(-300.0, 300.0)) as f32;
                let y = (centre + rng.between(-300.0, 300.0)) as f32;
                sim.net().send(&ClientMessage::MoveTo { x, y });
                moves += 1;
            }
        }
        idle_pass();
    }
    let drain_until = Instant::now() + DRAIN;
    while Instant::now() < drain_until {
        pump_all(&mut sims, &mut heard, &mut lines);
        idle_pass();
    }
    let players = sims
        .into_iter()
        .zip(heard)
        .map(|(sim, heard)| PlayerLog {
            name: sim.name,
            plays: sim.plays,
            heard,
            missed_notices: sim.missed_notices,
        })
        .collect();
    SoakRun {
        players,
        lines,
        whispers,
        moves,
    }
}

/// One pass over every player: receive, note the lines heard (a player's own line back is its
/// acknowledgement), take the snapshots (nobody looks at them here).
fn pump_all(sims: &mut [Sim], heard: &mut [HashSet<u64>], lines: &mut [Line]) {
    for (sim, heard) in sims.iter_mut().zip(heard.iter_mut()) {
        sim.pump(Kind::Mmo, |_, seq, mine| {
            if mine {
                if let Some(line) = lines.get_mut(seq as usize)
                    && line.acknowledged.is_none()
                {
                    line.acknowledged = Some(now_ms());
                }
            } else {
                heard.insert(seq);
            }
        });
        if let Some(net) = sim.net.as_mut() {
            net.take_snapshots();
        }
    }
}

/// What the driver took away.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    /// A shard, by the UDP address players connect to.
    Shard(SocketAddr),
    Redis,
    Postgres,
}

/// One outage the driver caused: `part` was down (killed, stopping, or stopped with SIGSTOP) from
/// `from` until it was started or continued again at `until` (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub part: Part,
    /// `kill`, `term`, `stop`, or `wipe` (killed, and started again without its data).
    pub how: String,
    pub from: u64,
    pub until: u64,
}

/// Why a log cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line} of the {what} log: {reason}")]
pub struct LogError {
    pub what: &'static str,
    pub line: usize,
    pub reason: String,
}

/// Reads the driver's log: one action a line, `UNIX_MS ACTION PART`, ACTION one of `kill`, `term`,
/// `stop`, `wipe` (down) or `start`, `cont` (up again), PART a shard's UDP address, `redis` or
/// `postgres`. An outage still open at the end lasts until `end`.
pub fn read_outages(text: &str, end: u64) -> Result<Vec<Outage>, LogError> {
    let mut open: HashMap<Part, (String, u64)> = HashMap::new();
    let mut outages = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let error = |reason: &str| LogError {
            what: "driver",
            line: n + 1,
            reason: reason.to_owned(),
        };
        let words: Vec<&str> = raw.split_whitespace().collect();
        let [at, action, part] = words[..] else {
            if words.is_empty() {
                continue;
            }
            return Err(error("expected UNIX_MS ACTION PART"));
        };
        let at: u64 = at.parse().map_err(|_| error("not a time in ms"))?;
        let part = match part {
            "redis" => Part::Redis,
            "postgres" => Part::Postgres,
            addr => Part::Shard(addr.parse().map_err(|_| error("not a part"))?),
        };
        match action {
            "kill" | "term" | "stop" | "wipe" => {
                open.entry(part).or_insert((action.to_owned(), at));
            }
            "start" | "cont" => {
                if let Some((how, from)) = open.remove(&part) {
                    outages.push(Outage {
                        part,
                        how,
                        from,
                        until: at,
                    });
                }
            }
            _ => return Err(error("unknown action")),
        }
    }
    outages.extend(open.into_iter().map(|(part, (how, from))| Outage {
        part,
        how,
        from,
        until: end,
    }));
    outages.sort_by_key(|o| o.from);
    Ok(outages)
}

/// One session of an account on a shard, from the shard's log (`logged in` to `logged out`, or to the
/// shard's death).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub shard: SocketAddr,
    pub account_id: i64,
    pub from: u64,
    pub until: u64,
}

/// What a shard's log says of its sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardSessions {
    pub sessions: Vec<Session>,
    /// `logged in` and `logged out` lines its log budget left out (its summaries say how many): then
    /// the sessions are not all there, and no check of them can pass.
    pub left_out: u64,
}

/// Reads a shard's JSON log (`--log-format json`, appended to across restarts): its sessions. One still
/// open when the shard was killed (`kills`, Unix ms) ends there; one still open at the end of the log
/// ends at `end`.
pub fn read_sessions(
    shard: SocketAddr,
    text: &str,
    kills: &[u64],
    end: u64,
) -> Result<ShardSessions, LogError> {
    let mut left_out = 0;
    let mut open: HashMap<i64, u64> = HashMap::new();
    let mut sessions = Vec::new();
    let close = |sessions: &mut Vec<Session>, account_id, from, until| {
        sessions.push(Session {
            shard,
            account_id,
            from,
            until,
        })
    };
    for (n, raw) in text.lines().enumerate() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(raw) else {
            // Not every line is the server's (a panic message, say): only events count.
            continue;
        };
        let field = |name: &str| {
            value
                .get(name)
                .or_else(|| value.get("fields").and_then(|f| f.get(name)))
                .cloned()
        };
        // A budget's summary: "N more \"logged in\" lines in the last minute".
        if let Some("logged in" | "logged out") = field("line").as_ref().and_then(|l| l.as_str()) {
            left_out += field("more").and_then(|n| n.as_u64()).unwrap_or(1);
            continue;
        }
        let message = field("message");
        let event = match message.as_ref().and_then(|m| m.as_str()) {
            Some("logged in") => true,
            Some("logged out") => false,
            _ => continue,
        };
        let error = |reason: &str| LogError {
            what: "shard",
            line: n + 1,
            reason: reason.to_owned(),
        };
        let at = field("timestamp")
            .and_then(|t| t.as_str().and_then(unix_ms))
            .ok_or_else(|| error("no readable timestamp"))?;
        let account_id = field("account_id")
            .and_then(|a| a.as_i64())
            .ok_or_else(|| error("no account_id"))?;
        // Sessions the shard held when it was killed since they began end at the kill.
        let killed: Vec<(i64, u64)> = open
            .iter()
            .filter_map(|(&id, &from)| {
                kills
                    .iter()
                    .find(|&&k| k >= from && k <= at)
                    .map(|&k| (id, k))
            })
            .collect();
        for (id, kill) in killed {
            if let Some(from) = open.remove(&id) {
                close(&mut sessions, id, from, kill);
            }
        }
        if event {
            if let Some(from) = open.insert(account_id, at) {
                close(&mut sessions, account_id, from, at);
            }
        } else if let Some(from) = open.remove(&account_id) {
            close(&mut sessions, account_id, from, at);
        }
    }
    for (id, from) in open {
        let until = kills.iter().copied().find(|&k| k >= from).unwrap_or(end);
        close(&mut sessions, id, from, until);
    }
    Ok(ShardSessions { sessions, left_out })
}

/// Unix ms of an RFC 3339 UTC time (`2026-12-06T20:50:01.123456Z`, as tracing writes it).
pub fn unix_ms(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.split('-').map(|v| v.parse::<i64>());
    let (y, m, d) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let mut time = time.split(':');
    let (h, min) = (
        time.next()?.parse::<i64>().ok()?,
        time.next()?.parse::<i64>().ok()?,
    );
    let seconds: f64 = time.next()?.parse().ok()?;
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + h * 3_600 + min * 60) * 1000) as f64 + seconds * 1000.0;
    (ms >= 0.0).then_some(ms as u64)
}

/// What the checks found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub lines: u64,
    pub acknowledged: u64,
    /// Deliveries owed: an acknowledged line to a player in play on a live shard while it crossed.
    pub deliveries_owed: u64,
    pub deliveries_missing: u64,
    /// Missing, but the player was told lines may be missing (its shard was away past the stream).
    pub missing_but_told: u64,
    /// Missing where the sender's shard was killed (SIGKILL) before the line could cross.
    pub missing_sender_killed: u64,
    /// Times players were told lines from other shards may be missing (after Redis lost its data).
    pub gap_notices: u64,
    /// Times a player lost its shard, and the slowest return to play (from the outage, or from the
    /// moment it noticed when no outage explains it).
    pub losses: u64,
    pub back_max_ms: u64,
    pub back_late: u64,
    /// By what took the shard away (`kill`, `term`, `stop`, or `none`: no outage of its shard explains
    /// it): how many losses, and the slowest return.
    pub losses_by_cause: std::collections::BTreeMap<String, (u64, u64)>,
    /// Players out at the end.
    pub never_back: u64,
    /// Pairs of sessions of one account overlapping on live shards past [`KICK_GRACE`].
    pub in_play_twice: u64,
    /// Session lines the shards' log budgets left out (the check of sessions is incomplete).
    pub session_lines_left_out: u64,
    /// A few of the failures, in words.
    pub examples: Vec<String>,
}

impl Verdict {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.deliveries_missing == self.missing_but_told
            && self.back_late == 0
            && self.never_back == 0
            && self.in_play_twice == 0
            && self.session_lines_left_out == 0
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < 10 {
            self.examples.push(text);
        }
    }
}

/// Holds the players' logs against the outages and the shards' sessions.
pub fn check(run: &SoakRun, outages: &[Outage], shards: &[ShardSessions]) -> Verdict {
    let sessions: Vec<&Session> = shards.iter().flat_map(|s| &s.sessions).collect();
    let mut verdict = Verdict {
        session_lines_left_out: shards.iter().map(|s| s.left_out).sum(),
        lines: run.lines.len() as u64,
        gap_notices: run
            .players
            .iter()
            .map(|p| p.missed_notices.len() as u64)
            .sum(),
        ..Verdict::default()
    };
    let grace = CROSSING_GRACE.as_millis() as u64;
    // Whether `part` was down (this way, if `how` says) at some time between `from` and `until`.
    let down = |part: Part, from: u64, until: u64, how: Option<&str>| {
        outages.iter().any(|o| {
            o.part == part
                && o.from <= until
                && o.until >= from
                && how.is_none_or(|how| o.how == how)
        })
    };
    for (seq, line) in run.lines.iter().enumerate() {
        let Some(acknowledged) = line.acknowledged else {
            continue;
        };
        verdict.acknowledged += 1;
        let sender_shard = shard_at(&run.players[line.sender], line.said);
        // The line may wait out the bus's outage, or its sender's shard's SIGSTOP, before it crosses.
        let mut ready = acknowledged;
        for o in outages {
            let waits = o.part == Part::Redis
                || (Some(&o.part) == sender_shard.map(Part::Shard).as_ref() && o.how == "stop");
            if waits && o.from <= ready + grace && o.until >= line.said {
                ready = ready.max(o.until);
            }
        }
        let deadline = ready + grace;
        let sender_killed = sender_shard
            .is_some_and(|shard| down(Part::Shard(shard), line.said, deadline, Some("kill")));
        for (p, player) in run.players.iter().enumerate() {
            if p == line.sender {
                continue;
            }
            let owed = player.plays.iter().any(|play| {
                play.from <= line.said
                    && play.until.is_none_or(|until| until >= deadline)
                    && play
                        .shard
                        .is_none_or(|s| !down(Part::Shard(s), line.said, deadline, None))
            });
            if !owed {
                continue;
            }
            verdict.deliveries_owed += 1;
            if player.heard.contains(&(seq as u64)) {
                continue;
            }
            verdict.deliveries_missing += 1;
            let told = player
                .missed_notices
                .iter()
                .any(|&t| t >= line.said && t <= deadline + 60_000);
            if told {
                verdict.missing_but_told += 1;
            } else if sender_killed {
                verdict.missing_sender_killed += 1;
            }
            if !told {
                verdict.example(format!(
                    "line {seq} of {} (said at {}, acknowledged at {acknowledged}) never reached {}",
                    run.players[line.sender].name, line.said, player.name
                ));
            }
        }
    }
    for player in &run.players {
        for pair in player.plays.windows(2) {
            let (lost, back) = (&pair[0], &pair[1]);
            let Some(noticed) = lost.until else { continue };
            verdict.losses += 1;
            // The outage of its shard that began last before it noticed (within netcode's timeout).
            let cause = lost.shard.and_then(|s| {
                outages
                    .iter()
                    .filter(|o| {
                        o.part == Part::Shard(s) && o.from <= noticed && o.from + 20_000 >= noticed
                    })
                    .max_by_key(|o| o.from)
            });
            let took = back.from.saturating_sub(cause.map_or(noticed, |o| o.from));
            verdict.back_max_ms = verdict.back_max_ms.max(took);
            let by = verdict
                .losses_by_cause
                .entry(cause.map_or("none", |o| o.how.as_str()).to_owned())
                .or_default();
            (by.0, by.1) = (by.0 + 1, by.1.max(took));
            if took > BACK_WITHIN.as_millis() as u64 {
                verdict.back_late += 1;
                verdict.example(format!(
                    "{} was back in play {took} ms after its shard {:?} went",
                    player.name, lost.shard
                ));
            }
        }
        if player.plays.last().is_none_or(|play| play.until.is_some()) {
            verdict.losses += u64::from(player.plays.last().is_some());
            verdict.never_back += 1;
            verdict.example(format!("{} was not in play at the end", player.name));
        }
    }
    let mut by_account: HashMap<i64, Vec<&Session>> = HashMap::new();
    for session in sessions {
        by_account
            .entry(session.account_id)
            .or_default()
            .push(session);
    }
    let kick = KICK_GRACE.as_millis() as u64;
    for (account, sessions) in by_account {
        for (i, a) in sessions.iter().enumerate() {
            for b in &sessions[i + 1..] {
                let (from, until) = (a.from.max(b.from), a.until.min(b.until));
                if until <= from {
                    continue;
                }
                // Time either shard was stopped does not count: nothing plays on a frozen shard.
                let frozen: u64 = outages
                    .iter()
                    .filter(|o| o.part == Part::Shard(a.shard) || o.part == Part::Shard(b.shard))
                    .map(|o| o.until.min(until).saturating_sub(o.from.max(from)))
                    .sum();
                let live = (until - from).saturating_sub(frozen);
                if live > kick {
                    verdict.in_play_twice += 1;
                    verdict.example(format!(
                        "account {account} was in play on {} and {} at once for {live} ms (from {from})",
                        a.shard, b.shard
                    ));
                }
            }
        }
    }
    verdict
}

/// The shard `player` was in play on at `at`.
fn shard_at(player: &PlayerLog, at: u64) -> Option<SocketAddr> {
    player
        .plays
        .iter()
        .rev()
        .find(|play| play.from <= at)
        .and_then(|play| play.shard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn play(port: u16, from: u64, until: Option<u64>) -> Play {
        Play {
            shard: Some(addr(port)),
            from,
            until,
        }
    }

    fn player(name: &str, plays: Vec<Play>, heard: &[u64]) -> PlayerLog {
        PlayerLog {
            name: name.into(),
            plays,
            heard: heard.iter().copied().collect(),
            missed_notices: Vec::new(),
        }
    }

    fn said(sender: usize, said: u64) -> Line {
        Line {
            sender,
            said,
            acknowledged: Some(said + 5),
        }
    }

    #[test]
    fn tracing_timestamps_read_as_unix_ms() {
        assert_eq!(unix_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_ms("2026-12-06T20:50:01.123456Z"),
            Some(1_796_590_201_123)
        );
        assert_eq!(unix_ms("2024-02-29T00:00:01.5Z"), Some(1_709_164_801_500));
        assert_eq!(unix_ms("yesterday"), None);
    }

    #[test]
    fn the_drivers_log_reads_as_outages() {
        let log = "1000 kill 127.0.0.1:1\n1500 stop redis\n3000 start 127.0.0.1:1\n\n4000 cont redis\n\
                   5000 kill postgres\n";
        let outages = read_outages(log, 9000).unwrap();
        assert_eq!(
            outages,
            vec![
                Outage {
                    part: Part::Shard(addr(1)),
                    how: "kill".into(),
                    from: 1000,
                    until: 3000
                },
                Outage {
                    part: Part::Redis,
                    how: "stop".into(),
                    from: 1500,
                    until: 4000
                },
                Outage {
                    part: Part::Postgres,
                    how: "kill".into(),
                    from: 5000,
                    until: 9000
                },
            ]
        );
        assert!(read_outages("1000 explode redis", 0).is_err());
    }

    #[test]
    fn a_line_is_owed_to_players_in_play_on_live_shards_while_it_crosses() {
        let run = SoakRun {
            players: vec![
                player("alice", vec![play(1, 0, None)], &[]),
                // In play throughout: owed, heard.
                player("bob", vec![play(2, 0, None)], &[0]),
                // In play throughout: owed, missing.
                player("carol", vec![play(2, 0, None)], &[]),
                // Logged in after the line was said: not owed.
                player("dave", vec![play(3, 10_500, None)], &[]),
                // Its shard was stopped while the line crossed: not owed.
                player(
                    "erin",
                    vec![play(3, 0, Some(14_000)), play(2, 15_000, None)],
                    &[],
                ),
            ],
            lines: vec![said(0, 10_000)],
            ..SoakRun::default()
        };
        let outages =
            read_outages("11000 stop 127.0.0.1:3\n21000 cont 127.0.0.1:3\n", 30_000).unwrap();
        let verdict = check(&run, &outages, &[]);
        assert_eq!(
            (verdict.deliveries_owed, verdict.deliveries_missing),
            (2, 1)
        );
        assert!(!verdict.passed());
        assert!(
            verdict.examples[0].contains("carol"),
            "{:?}",
            verdict.examples
        );
        // erin noticed at 14 s the stop at 11 s, and was back at 15 s: 4 s.
        assert_eq!(
            (verdict.losses, verdict.back_max_ms, verdict.back_late),
            (1, 4_000, 0)
        );
    }

    #[test]
    fn a_line_waits_out_the_bus_and_a_player_told_of_a_gap_is_excused() {
        let mut bob = player(
            "bob",
            vec![play(2, 0, Some(25_000)), play(1, 26_000, None)],
            &[],
        );
        bob.missed_notices.push(21_000);
        let run = SoakRun {
            players: vec![player("alice", vec![play(1, 0, None)], &[]), bob],
            lines: vec![said(0, 10_000)],
            ..SoakRun::default()
        };
        // Redis away from 9 s to 20 s: the line is owed to bob until 22 s, and he is in play till 25 s.
        let outages = read_outages("9000 kill redis\n20000 start redis\n", 30_000).unwrap();
        let verdict = check(&run, &outages, &[]);
        assert_eq!((verdict.deliveries_owed, verdict.missing_but_told), (1, 1));
        assert!(verdict.passed(), "{verdict:?}");
        // No outage of its shard explains bob's loss: counted from when he noticed.
        assert_eq!(verdict.back_max_ms, 1_000);
    }

    #[test]
    fn a_player_back_late_or_never_fails() {
        let run = SoakRun {
            players: vec![
                player(
                    "alice",
                    vec![play(1, 0, Some(13_000)), play(2, 21_000, None)],
                    &[],
                ),
                player("bob", vec![play(1, 0, Some(13_000))], &[]),
            ],
            ..SoakRun::default()
        };
        let outages = read_outages("10000 kill 127.0.0.1:1\n", 30_000).unwrap();
        let verdict = check(&run, &outages, &[]);
        assert_eq!(
            (verdict.back_late, verdict.never_back, verdict.back_max_ms),
            (1, 1, 11_000)
        );
        assert!(!verdict.passed());
    }

    #[test]
    fn sessions_come_from_shard_logs_and_overlaps_on_live_shards_fail() {
        let log = |lines: &[(&str, &str, i64)]| {
            lines
                .iter()
                .map(|(t, m, id)| {
                    format!(r#"{{"timestamp":"1970-01-01T00:00:{t}Z","level":"INFO","message":"{m}","account_id":{id}}}"#)
                })
                .collect::<Vec<_>>()
                .join("\nnot json\n")
        };
        // Shard 1: account 7 from 1 s until the kill at 5 s; account 8 from 2 s to 3 s.
        let a = log(&[
            ("01", "logged in", 7),
            ("02", "logged in", 8),
            ("03", "logged out", 8),
        ]);
        let a = read_sessions(addr(1), &a, &[5_000], 60_000).unwrap();
        assert_eq!(a.left_out, 0);
        assert_eq!(
            a.sessions,
            vec![
                Session {
                    shard: addr(1),
                    account_id: 8,
                    from: 2_000,
                    until: 3_000
                },
                Session {
                    shard: addr(1),
                    account_id: 7,
                    from: 1_000,
                    until: 5_000
                },
            ]
        );
        // Shard 2: 7 logs in at 4.5 s (the kick crossing), 8 at 2.5 s and stays (overlap 0.5 s: fine),
        // and 9 at 10 s while shard 1 plays it until 20 s.
        let b = log(&[
            ("04.5", "logged in", 7),
            ("02.5", "logged in", 8),
            ("10", "logged in", 9),
        ]);
        let b = read_sessions(addr(2), &b, &[], 60_000).unwrap();
        let c = log(&[("08", "logged in", 9), ("20", "logged out", 9)]);
        let c = read_sessions(addr(1), &c, &[], 60_000).unwrap();
        let all = [a, b, c];
        let verdict = check(&SoakRun::default(), &[], &all);
        assert_eq!(verdict.in_play_twice, 1, "{verdict:?}");
        assert!(
            verdict.examples[0].contains("account 9"),
            "{:?}",
            verdict.examples
        );
        // While shard 1 was frozen, it did not count.
        let frozen =
            read_outages("9000 stop 127.0.0.1:1\n19500 cont 127.0.0.1:1\n", 60_000).unwrap();
        assert_eq!(check(&SoakRun::default(), &frozen, &all).in_play_twice, 0);
        // A log whose budget left session lines out cannot pass.
        let summary = r#"{"timestamp":"1970-01-01T00:01:00Z","level":"WARN","message":"3 more \"logged out\" lines in the last minute","line":"logged out","more":3}"#;
        let d = read_sessions(addr(3), summary, &[], 60_000).unwrap();
        assert_eq!(d.left_out, 3);
        assert!(!check(&SoakRun::default(), &frozen, &[d]).passed());
    }
}
