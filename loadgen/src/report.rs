//! One run's figures: printed as a table row and as one JSON line.

use serde::Serialize;

use crate::abuse::AbuseKind;
use crate::target::Kind;
use crate::token::Auth;

/// Everything a run measured; `None` where it does not apply or could not be read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: Option<Kind>,
    /// `token` when players logged in over HTTPS and played over netcode's secure mode (the floor: a
    /// secure-mode relay); absent in-band.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Token mode: how many of the players played over a WebSocket (`--ws-clients`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_clients: Option<usize>,
    /// With WebSocket players: the chat latency at the players of each transport.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_transport: Option<ByTransport>,
    pub clients: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub client_hz: u32,
    /// Chat lines sent, deliveries expected (each line to every other player) and seen.
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Delivery latency at the receivers, send to receive.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Server CPU during the measured phase, in cores (1.0 = one core busy).
    pub server_cpu_core: Option<f64>,
    pub server_rss_mb: Option<f64>,
    pub server_peak_rss_mb: Option<f64>,
    /// The server's own tick durations during the measured phase (mmo only): p50 and p99 over every
    /// tick (from its histogram, `mmo_tick_seconds`), the longest tick (from its per-second lines).
    pub tick_p50_ms: Option<f64>,
    pub tick_p99_ms: Option<f64>,
    pub tick_max_ms: Option<f64>,
    /// How many ticks the tick figures are over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticks: Option<u64>,
    /// What the server's packet gate received, dropped, and how many addresses it blocked (mmo only).
    pub datagrams: Option<u64>,
    pub dropped: Option<u64>,
    pub blocks: Option<u64>,
    /// Datagrams the server sent (mmo only), and the datagrams in and out a second for each core the
    /// server used (compare `mmo-loadgen datagram-cost`, what one costs alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datagrams_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datagrams_per_core_s: Option<f64>,
    /// Token mode: connection requests the gate dropped as not sealed with the server's key (within
    /// `dropped`; mmo only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forged: Option<u64>,
    /// login-storm only.
    pub logins_per_s: Option<f64>,
    pub login_p50_ms: Option<f64>,
    pub login_p99_ms: Option<f64>,
    /// login-storm in token mode: the UDP part of a login, from handing netcode the connect token to
    /// the server's LoggedIn (on the floor: to connected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_p99_ms: Option<f64>,
    /// move only: the side of the square the players wander in (world units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_side: Option<f64>,
    /// move only: message payload bytes received per player per second (snapshots as encoded plus
    /// reliable messages; renet and netcode headers and acks not counted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_player_per_s: Option<f64>,
    /// move on mmo: snapshot age at the receiver (receive time minus the snapshot's `sent_at_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_age_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_age_p99_ms: Option<f64>,
    /// move on mmo: snapshots received per player per second, and EnteredView/LeftView messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshots_per_player_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entered_view: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_view: Option<u64>,
    /// move only: players whose connection had ended by the end of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disconnected: Option<u64>,
    /// chat and move in token mode: times players lost their shard and logged in again with their
    /// session (each missed what was said while it was away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnects: Option<u64>,
    /// move only: the load generator's own CPU during the measured phase, in cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loadgen_cpu_core: Option<f64>,
    /// overload only: lines whose sender heard them back (the server took them), and their deliveries
    /// missing at the other players when the run ended (0: nothing acknowledged was lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_lost: Option<u64>,
    /// overload only: the newcomers, their "Server busy" answers during the load, how many got in during
    /// it, and the seconds from the load's end until all were in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newcomers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy_answers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newcomers_in_during_load: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered_after_s: Option<f64>,
    /// The abuse running beside the scenario (`--abuse`), its rate, and the actions it took.
    pub abuse: Option<AbuseKind>,
    pub abuse_rate: Option<u32>,
    pub abuse_actions: Option<u64>,
}

/// Nearest-rank quantile of sorted microsecond samples, in milliseconds.
/// Chat latency at UDP players and at WebSocket players (ms).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ByTransport {
    pub udp_p50_ms: Option<f64>,
    pub udp_p99_ms: Option<f64>,
    pub ws_p50_ms: Option<f64>,
    pub ws_p99_ms: Option<f64>,
}

pub fn quantile_ms(sorted_us: &[u64], q: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((q * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    Some(sorted_us[rank - 1] as f64 / 1000.0)
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

impl Report {
    pub fn set_latencies(&mut self, mut latencies_us: Vec<u64>) {
        latencies_us.sort_unstable();
        self.p50_ms = quantile_ms(&latencies_us, 0.50);
        self.p99_ms = quantile_ms(&latencies_us, 0.99);
        self.max_ms = latencies_us.last().map(|&us| us as f64 / 1000.0);
    }

    pub const HEADER: &'static str = "scenario     target  clients  sent     lost  p50_ms  p99_ms  max_ms  cpu_core  rss_mb  tick_p99_ms  logins/s  login_p99_ms  bytes/pl/s  snap_p50  snap_p99";

    pub fn row(&self) -> String {
        format!(
            "{:<12} {:<7} {:>7}  {:>7}  {:>4}  {:>6}  {:>6}  {:>6}  {:>8}  {:>6}  {:>11}  {:>8}  {:>12}  {:>10}  {:>8}  {:>8}",
            self.scenario,
            self.target
                .map_or("-", |k| if k == Kind::Mmo { "mmo" } else { "floor" }),
            self.clients,
            self.sent,
            self.lost,
            cell(self.p50_ms),
            cell(self.p99_ms),
            cell(self.max_ms),
            self.server_cpu_core
                .map_or_else(|| "-".to_owned(), |c| format!("{c:.3}")),
            cell(self.server_rss_mb),
            cell(self.tick_p99_ms),
            cell(self.logins_per_s),
            cell(self.login_p99_ms),
            self.bytes_per_player_per_s
                .map_or_else(|| "-".to_owned(), |b| format!("{b:.0}")),
            cell(self.snapshot_age_p50_ms),
            cell(self.snapshot_age_p99_ms),
        )
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a report always serialises")
    }
}
