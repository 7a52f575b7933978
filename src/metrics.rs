//! Metrics: what operators graph, in the Prometheus text format (OpenMetrics) at `/metrics` when
//! `--metrics-bind ADDR` is given. The [`Metrics`] resource always exists; every handle in it is made
//! once at start, so counting on the tick or a worker thread is one atomic add (a histogram's observe
//! takes an uncontended lock; the tick observes one a tick). Gauges and the transport's own counters
//! are copied in once a second (by `crate::stats`). Scrapes are answered by a small HTTP server on its own thread, which
//! only reads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::worker::Threads;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bevy::prelude::*;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

/// A family of metrics with one label, registered under `name`.
fn family<M>(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, M>
where
    Family<Labels, M>: prometheus_client::registry::Metric + Default + Clone,
{
    let family = Family::<Labels, M>::default();
    registry.register(name, help, family.clone());
    family
}

/// The tick histogram's bucket bounds (seconds): fine where a 60 Hz tick's budget is decided (0.25 ms
/// steps to 4 ms, 0.5 ms to 20 ms, 1 ms to 40 ms), coarser past it, so that a p99 read from it (the load
/// generator's) is within half a millisecond where it matters.
pub const TICK_BUCKETS: [f64; 76] = {
    let mut bounds = [0.0; 76];
    let mut i = 0;
    while i < 16 {
        bounds[i] = 0.000_25 * (i + 1) as f64; // 0.25 … 4 ms
        i += 1;
    }
    while i < 48 {
        bounds[i] = 0.004 + 0.000_5 * (i - 15) as f64; // 4.5 … 20 ms
        i += 1;
    }
    while i < 68 {
        bounds[i] = 0.020 + 0.001 * (i - 47) as f64; // 21 … 40 ms
        i += 1;
    }
    let tail = [0.050, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0];
    let mut j = 0;
    while j < tail.len() {
        bounds[68 + j] = tail[j];
        j += 1;
    }
    bounds
};

/// Every metric the server keeps (cheap to clone: the handles share their values).
#[derive(Resource, Clone)]
pub struct Metrics(Arc<Handles>);

/// The handles, by what they count.
pub struct Handles {
    registry: Registry,
    pub players_online: Gauge,
    pub connections: Gauge,
    pub logins: Outcomes,
    pub registrations_ok: Counter,
    pub registrations_taken: Counter,
    pub registrations_failed: Counter,
    pub registrations_shed: Counter,
    /// 1 while the tick is over budget and new logins are refused (`crate::load`).
    pub shedding: Gauge,
    pub chat_lines_in: Counter,
    pub chat_lines_out: Counter,
    pub chat_refused: Counter,
    pub chat_paused: Counter,
    /// Jobs waiting in the bounded queues between the tick and its threads (`queue="chat"`, …).
    pub queue_depth: QueueDepths,
    pub whispers: Counter,
    pub commands: Counter,
    pub auth_queue_depth: Gauge,
    pub auth_job_seconds: Histogram,
    pub tick_seconds: Histogram,
    pub datagrams_received: Counter,
    pub datagrams_sent: Counter,
    pub dropped: Dropped,
    pub blocks: Counter,
    pub queue_drops: Counter,
    pub chat_write_seconds: Histogram,
    pub world_write_seconds: Histogram,
    pub bus_up: Gauge,
    pub bus_published: Counter,
    pub bus_received: Counter,
    pub bus_dropped: Counter,
    pub bus_missed: Counter,
    pub bus_undecodable: Counter,
    pub bus_shards: Gauge,
    pub players_elsewhere: Gauge,
    /// Connections on each transport lane (`lane="0"`, …).
    pub lane_connections: Family<Vec<(&'static str, String)>, Gauge>,
    /// Connections and players by transport (`udp`, `ws`).
    pub transport_connections: Family<Labels, Gauge>,
    pub transport_players: Family<Labels, Gauge>,
    /// WebSocket connections refused, or closed for what they sent, by reason (`crate::http::ws`).
    pub ws_refused: Family<Labels, Counter>,
}

/// `mmo_queue_depth{queue=…}`: what waits for each writer thread.
#[derive(Clone, Debug)]
pub struct QueueDepths {
    /// Chat lines waiting to be stored.
    pub chat: Gauge,
    /// The world store's jobs (position saves, loads).
    pub world: Gauge,
    /// Events waiting to go on the bus (`--bus`).
    pub bus: Gauge,
}

/// `mmo_logins_total{result=…}`.
pub struct Outcomes {
    pub ok: Counter,
    pub wrong_credentials: Counter,
    pub banned: Counter,
    pub locked_out: Counter,
    pub busy: Counter,
    /// Refused because the tick was over budget (`crate::load`).
    pub shed: Counter,
    pub failed: Counter,
}

/// `mmo_gate_dropped_total{reason=…}`.
pub struct Dropped {
    pub malformed: Counter,
    pub forged: Counter,
    pub over_budget: Counter,
    pub blocked: Counter,
    pub banned: Counter,
}

impl std::ops::Deref for Metrics {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mmo");
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        // Seconds, from 0.25 ms to about 4 s.
        let histogram = |registry: &mut Registry, name: &str, help: &str| {
            let histogram = Histogram::new(exponential_buckets(0.000_25, 2.0, 15));
            registry.register(name, help, histogram.clone());
            histogram
        };
        let logins: Family<Labels, Counter> =
            family(&mut registry, "logins", "Login attempts, by result");
        let login = |result| logins.get_or_create(&[("result", result)]).clone();
        let logins = Outcomes {
            ok: login("ok"),
            wrong_credentials: login("wrong_credentials"),
            banned: login("banned"),
            locked_out: login("locked_out"),
            busy: login("busy"),
            shed: login("shed"),
            failed: login("error"),
        };
        let registrations: Family<Labels, Counter> =
            family(&mut registry, "registrations", "Registrations, by result");
        let registration = |result| registrations.get_or_create(&[("result", result)]).clone();
        let dropped: Family<Labels, Counter> = family(
            &mut registry,
            "gate_dropped",
            "Datagrams the packet gate dropped, by reason",
        );
        let drop_reason = |reason| dropped.get_or_create(&[("reason", reason)]).clone();
        let depths: Family<Labels, Gauge> = family(
            &mut registry,
            "queue_depth",
            "Jobs waiting in a bounded queue between the tick and a thread, by queue",
        );
        // One statement each: a family's read guard must be gone before it creates the next.
        let chat = depths.get_or_create(&[("queue", "chat")]).clone();
        let world = depths.get_or_create(&[("queue", "world")]).clone();
        let bus = depths.get_or_create(&[("queue", "bus")]).clone();
        let queue_depth = QueueDepths { chat, world, bus };
        let writes = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
        });
        registry.register(
            "db_write_seconds",
            "Time to store one batch, by writer thread",
            writes.clone(),
        );
        // One statement each: a family's read guard must be gone before it creates the next.
        let chat_write_seconds = writes.get_or_create(&[("writer", "chat")]).clone();
        let world_write_seconds = writes.get_or_create(&[("writer", "world")]).clone();
        let handles = Handles {
            players_online: gauge(&mut registry, "players_online", "Players logged in"),
            connections: gauge(
                &mut registry,
                "connections",
                "Connections, logged in or not",
            ),
            logins,
            registrations_ok: registration("ok"),
            registrations_taken: registration("taken"),
            registrations_failed: registration("error"),
            registrations_shed: registration("shed"),
            shedding: gauge(
                &mut registry,
                "shedding",
                "1 while ticks overrun their period and new logins are refused",
            ),
            chat_lines_in: counter(
                &mut registry,
                "chat_lines_received",
                "Chat lines accepted from players",
            ),
            chat_lines_out: counter(
                &mut registry,
                "chat_lines_sent",
                "Chat lines sent to players (one per recipient)",
            ),
            chat_refused: counter(
                &mut registry,
                "chat_refused",
                "Chat lines refused (too fast, muted, invalid)",
            ),
            chat_paused: counter(
                &mut registry,
                "chat_paused",
                "Chat lines refused because a queue they go through (to the database, to the bus) was full",
            ),
            queue_depth,
            whispers: counter(&mut registry, "whispers", "Whispers delivered"),
            commands: counter(
                &mut registry,
                "commands",
                "Commands run, from chat and the console",
            ),
            auth_queue_depth: gauge(
                &mut registry,
                "auth_queue_depth",
                "Account jobs waiting for a worker",
            ),
            auth_job_seconds: histogram(
                &mut registry,
                "auth_job_seconds",
                "Time a worker spends on one account job",
            ),
            tick_seconds: {
                let histogram = Histogram::new(TICK_BUCKETS.iter().copied());
                registry.register(
                    "tick_seconds",
                    "Time the tick's work takes",
                    histogram.clone(),
                );
                histogram
            },
            datagrams_received: counter(
                &mut registry,
                "datagrams_received",
                "UDP datagrams read from the socket",
            ),
            datagrams_sent: counter(&mut registry, "datagrams_sent", "UDP datagrams sent"),
            dropped: Dropped {
                malformed: drop_reason("malformed"),
                forged: drop_reason("forged"),
                over_budget: drop_reason("over_budget"),
                blocked: drop_reason("blocked"),
                banned: drop_reason("banned"),
            },
            blocks: counter(
                &mut registry,
                "gate_blocks",
                "Times the packet gate blocked an address",
            ),
            queue_drops: counter(
                &mut registry,
                "transport_queue_drops",
                "Payloads dropped because the tick's queue was full",
            ),
            chat_write_seconds,
            world_write_seconds,
            bus_up: gauge(
                &mut registry,
                "bus_up",
                "1 while this shard reads the bus (--bus), else 0",
            ),
            bus_published: counter(
                &mut registry,
                "bus_events_published",
                "Events this shard sent to the other shards",
            ),
            bus_received: counter(
                &mut registry,
                "bus_events_received",
                "Events this shard received from the other shards",
            ),
            bus_dropped: counter(
                &mut registry,
                "bus_events_dropped",
                "Events dropped: the bus's queue was full, or the shard stopped with the bus away",
            ),
            bus_missed: counter(
                &mut registry,
                "bus_gaps",
                "Times this shard came back to the bus and entries since its last were gone",
            ),
            bus_undecodable: counter(
                &mut registry,
                "bus_entries_undecodable",
                "Entries on the bus that did not decode (skipped)",
            ),
            bus_shards: gauge(
                &mut registry,
                "bus_shards",
                "Other shards this shard hears on the bus",
            ),
            players_elsewhere: gauge(
                &mut registry,
                "players_elsewhere",
                "Players online on the other shards, by their last rosters",
            ),
            lane_connections: {
                let family = Family::<Vec<(&'static str, String)>, Gauge>::default();
                registry.register(
                    "transport_lane_connections",
                    "Connections on each transport lane (socket and netcode thread)",
                    family.clone(),
                );
                family
            },
            transport_connections: family(
                &mut registry,
                "transport_connections",
                "Connections, logged in or not, by transport (udp, ws)",
            ),
            transport_players: family(
                &mut registry,
                "transport_players",
                "Players logged in, by transport (udp, ws)",
            ),
            ws_refused: family(
                &mut registry,
                "ws_refused",
                "WebSocket connections refused, or closed for what they sent, by reason",
            ),
            registry,
        };
        Self(Arc::new(handles))
    }

    /// Everything, in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// Observes how long `work` took, in seconds, into `histogram`.
pub fn time<T>(histogram: &Histogram, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = work();
    histogram.observe(started.elapsed().as_secs_f64());
    result
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct MetricsBindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// The `/metrics` HTTP server: its own thread and single-threaded runtime; stopped when dropped.
#[derive(Resource)]
pub struct MetricsServer {
    pub addr: SocketAddr,
    /// Its thread, stopped (the endpoint shut down gracefully) when the server is dropped.
    _thread: Threads,
}

impl MetricsServer {
    /// Binds `addr` (now, so a taken port is a start-up error) and serves `metrics` there, with the
    /// probes (`/healthz`, `/readyz`) answered from `health`.
    pub fn bind(
        addr: SocketAddr,
        metrics: Metrics,
        health: crate::probes::Health,
    ) -> Result<Self, MetricsBindError> {
        let error = |source| MetricsBindError { addr, source };
        let listener = crate::tcp::listen(addr).map_err(error)?;
        listener.set_nonblocking(true).map_err(error)?;
        let bound = listener.local_addr().map_err(error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(error)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route(
                "/metrics",
                get(move || {
                    let metrics = metrics.clone();
                    async move {
                        (
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            metrics.render(),
                        )
                    }
                }),
            )
            .merge(crate::probes::routes(health))
            .fallback(|| async {
                (StatusCode::NOT_FOUND, "Not found: try /metrics\n").into_response()
            });
        let thread = Threads::default()
            .try_spawn("metrics", move |_| {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            error!(%error, "cannot serve metrics");
                            return;
                        }
                    };
                    let serving = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = stopped.await;
                    });
                    if let Err(error) = serving.await {
                        error!(%error, "the metrics endpoint failed");
                    }
                });
            })
            .map_err(error)?
            .on_stop(move || {
                let _ = stop.send(());
            });
        info!(url = %format!("http://{bound}/metrics"), "metrics endpoint ready");
        Ok(Self {
            addr: bound,
            _thread: thread,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_renders_with_its_labels() {
        let metrics = Metrics::new();
        metrics.logins.banned.inc();
        metrics.chat_lines_out.inc_by(3);
        metrics.world_write_seconds.observe(0.002);
        let text = metrics.render();
        for line in [
            "mmo_logins_total{result=\"banned\"} 1",
            "mmo_logins_total{result=\"ok\"} 0",
            "mmo_chat_lines_sent_total 3",
            "mmo_db_write_seconds_count{writer=\"world\"} 1",
            "mmo_gate_dropped_total{reason=\"forged\"} 0",
            "# TYPE mmo_tick_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
