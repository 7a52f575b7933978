//! Tick statistics: how long each tick's work takes (from the start of `First` to the end of `Last`),
//! reported as p50, p99 and max every `--stats-interval` seconds in a log line that operators and the
//! load generator read: `tick stats ticks=… p50_us=… p99_us=… max_us=… connections=… players=…
//! datagrams=… dropped=… blocks=… forged=… sent=… queue_drops=…` (from the transport, since the last line:
//! the gate's datagrams received and dropped, addresses blocked, token-mode connection requests not sealed
//! with the server's key (within `dropped`); the netcode thread's datagrams sent, and payloads it dropped
//! because the tick's queue was full). It also feeds the [`Metrics`]: each tick's duration, and once a
//! second the gauges and the transport's counters.

use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_renet::RenetServer;

use crate::auth::worker::AuthWorkers;
use crate::config::Config;
use crate::load::TickLoad;
use crate::metrics::Metrics;
use crate::net::{Connection, Via};
use crate::players::OnlineAccounts;
use crate::players::Player;
use crate::transport::Transport;
use crate::transport::gate::CountersSnapshot;

pub(crate) fn plugin(app: &mut App) {
    let config = app.world().resource::<Config>();
    let interval = config.stats_interval;
    let load = TickLoad::new(config.tick(), !config.no_shedding);
    app.insert_resource(TickStats::new(Duration::from_secs(u64::from(interval))))
        .insert_resource(load)
        .add_systems(First, start_tick)
        .add_systems(Last, (end_tick, report, sample).chain());
}

/// How often gauges and the transport's counters are copied into the metrics.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Tick durations since the last report.
#[derive(Resource, Debug)]
pub struct TickStats {
    interval: Duration,
    since: Instant,
    tick_started: Option<Instant>,
    durations_us: Vec<u32>,
    gate_before: CountersSnapshot,
    /// The netcode thread's (queue drops, datagrams sent) at the last report.
    netcode_before: (u64, u64),
}

impl TickStats {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            since: Instant::now(),
            tick_started: None,
            durations_us: Vec::new(),
            gate_before: CountersSnapshot::default(),
            netcode_before: (0, 0),
        }
    }
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn start_tick(mut stats: ResMut<TickStats>) {
    stats.tick_started = Some(Instant::now());
}

fn end_tick(mut stats: ResMut<TickStats>, metrics: Res<Metrics>, mut load: ResMut<TickLoad>) {
    if let Some(started) = stats.tick_started.take() {
        let took = started.elapsed();
        metrics.tick_seconds.observe(took.as_secs_f64());
        match load.record(took) {
            Some(true) => warn!("ticks over budget: new logins are refused (\"Server busy\")"),
            Some(false) => info!("ticks within budget again: logins accepted"),
            None => {}
        }
        metrics.shedding.set(i64::from(load.shedding()));
        if !stats.interval.is_zero() {
            let us = took.as_micros().min(u128::from(u32::MAX)) as u32;
            stats.durations_us.push(us);
        }
    }
}

fn report(
    mut stats: ResMut<TickStats>,
    connections: Query<(), With<Connection>>,
    players: Query<(), With<Player>>,
    transport: Res<Transport>,
) {
    if stats.interval.is_zero() || stats.since.elapsed() < stats.interval {
        return;
    }
    let mut durations = std::mem::take(&mut stats.durations_us);
    durations.sort_unstable();
    let gate = transport.counters();
    let before = std::mem::replace(&mut stats.gate_before, gate);
    let (queue_drops, sent) = transport.netcode_counters();
    let (drops_before, sent_before) =
        std::mem::replace(&mut stats.netcode_before, (queue_drops, sent));
    info!(
        ticks = durations.len(),
        p50_us = quantile(&durations, 0.50),
        p99_us = quantile(&durations, 0.99),
        max_us = durations.last().copied().unwrap_or(0),
        connections = connections.iter().count(),
        players = players.iter().count(),
        datagrams = gate.received - before.received,
        dropped = gate.dropped() - before.dropped(),
        blocks = gate.blocks - before.blocks,
        forged = gate.forged - before.forged,
        sent = sent - sent_before,
        queue_drops = queue_drops - drops_before,
        "tick stats"
    );
    stats.since = Instant::now();
}

/// The transport's counters at the last sample, and when that was.
#[derive(Default)]
struct LastSample {
    at: Option<Instant>,
    gate: CountersSnapshot,
    netcode: (u64, u64),
}

/// Once a second: the gauges, the transport's counters (as the increase since the last sample), and the
/// summaries of log lines held back by their budgets (`crate::logs`).
fn sample(
    metrics: Res<Metrics>,
    mut last: Local<LastSample>,
    server: Res<RenetServer>,
    transport: Res<Transport>,
    online: Res<OnlineAccounts>,
    workers: Res<AuthWorkers>,
    ws: Res<crate::transport::ws::WsPeers>,
    connections: Query<(&Connection, Has<Player>)>,
) {
    if last.at.is_some_and(|at| at.elapsed() < SAMPLE_EVERY) {
        return;
    }
    let now = Instant::now();
    last.at = Some(now);
    crate::logs::summarize(now);
    metrics.players_online.set(online.len() as i64);
    metrics
        .connections
        .set((server.connected_clients() + ws.len()) as i64);
    // (transport, connections, players)
    let mut by_via = [(Via::Udp, 0, 0), (Via::WebSocket, 0, 0)];
    for (connection, player) in &connections {
        let count = &mut by_via[match connection.via {
            Via::Udp => 0,
            Via::WebSocket => 1,
        }];
        count.1 += 1;
        count.2 += i64::from(player);
    }
    for (via, open, playing) in by_via {
        let label = [("transport", via.label())];
        metrics
            .transport_connections
            .get_or_create(&label)
            .set(open);
        metrics.transport_players.get_or_create(&label).set(playing);
    }
    for (lane, load) in transport.lane_loads().into_iter().enumerate() {
        metrics
            .lane_connections
            .get_or_create(&vec![("lane", lane.to_string())])
            .set(load as i64);
    }
    metrics.auth_queue_depth.set(workers.queued() as i64);
    let gate = transport.counters();
    let before = std::mem::replace(&mut last.gate, gate);
    metrics
        .datagrams_received
        .inc_by(gate.received - before.received);
    metrics
        .dropped
        .malformed
        .inc_by(gate.malformed - before.malformed);
    metrics.dropped.forged.inc_by(gate.forged - before.forged);
    metrics.dropped.banned.inc_by(gate.banned - before.banned);
    metrics
        .dropped
        .over_budget
        .inc_by(gate.over_budget - before.over_budget);
    metrics
        .dropped
        .blocked
        .inc_by(gate.blocked - before.blocked);
    metrics.blocks.inc_by(gate.blocks - before.blocks);
    let (queue_drops, sent) = transport.netcode_counters();
    let (drops_before, sent_before) = std::mem::replace(&mut last.netcode, (queue_drops, sent));
    metrics.queue_drops.inc_by(queue_drops - drops_before);
    metrics.datagrams_sent.inc_by(sent - sent_before);
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&values, 0.5), 50);
        assert_eq!(quantile(&values, 0.99), 99);
        assert_eq!(quantile(&values, 1.0), 100);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
