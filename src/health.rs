//! Keeps the probes' [`Health`] current (`crate::probes` answers `/healthz` and `/readyz` from it): the
//! tick marks itself every tick, a thread of its own asks the database for `SELECT 1` every second
//! (never the tick: a database that is away makes a query wait seconds), and once a second the tick
//! writes what keeps the server from being ready: the database, Redis with `--bus`, a shutdown
//! counting down or under way.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use diesel::connection::SimpleConnection;

use crate::config::Config;
use crate::db::{self, Database};
use crate::metrics::Metrics;
use crate::on_backend;
use crate::probes::Health;
use crate::shutdown::{Countdown, ShutdownHandle};
use crate::time::format_duration;
use crate::worker::{Stop, Threads, stop_at_shutdown};

/// How often the database is asked, and the problems written.
const EVERY: Duration = Duration::from_secs(1);

pub(crate) fn plugin(app: &mut App) {
    let pool = app.world().resource::<Database>().pool("health", 1);
    let database = DatabaseState::default();
    let seen = database.clone();
    let thread = Threads::default().spawn("health-probe", move |stopping| {
        while !stopping.is_set() {
            let answer = db::with_conn(
                &pool,
                |conn| on_backend!(conn, c => c.batch_execute("SELECT 1")),
            );
            *seen.0.lock().unwrap_or_else(|p| p.into_inner()) = answer.err();
            let until = Instant::now() + EVERY;
            while !stopping.is_set() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let bus = app.world().resource::<Config>().bus.is_some();
    app.insert_resource(Prober {
        database,
        bus,
        _thread: thread,
    })
    .add_systems(Last, watch);
    stop_at_shutdown::<Prober>(app);
}

/// The database's last answer: `None` when it answered, else why not.
#[derive(Clone, Default)]
struct DatabaseState(Arc<Mutex<Option<String>>>);

/// The probe thread and what it found.
#[derive(Resource)]
struct Prober {
    database: DatabaseState,
    /// Whether the server is on a bus (`--bus`).
    bus: bool,
    _thread: Threads,
}

impl Stop for Prober {
    fn stop(&mut self) {
        self._thread.stop();
    }
}

/// Marks the tick, and once a second writes what keeps the server from being ready.
fn watch(
    health: Res<Health>,
    prober: Res<Prober>,
    metrics: Res<Metrics>,
    countdown: Res<Countdown>,
    shutdown: Res<ShutdownHandle>,
    mut last: Local<Option<Instant>>,
) {
    health.ticked();
    if last.is_some_and(|at| at.elapsed() < EVERY) {
        return;
    }
    *last = Some(Instant::now());
    let mut problems = Vec::new();
    if let Some(error) = prober
        .database
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        problems.push(format!("the database is unreachable: {error}"));
    }
    if prober.bus && metrics.bus_up.get() == 0 {
        problems.push("the bus (Redis) is unreachable".to_owned());
    }
    if shutdown.is_requested() {
        problems.push("shutting down".to_owned());
    } else if let Some(left) = countdown.left() {
        problems.push(format!("shutting down in {}", format_duration(left)));
    }
    health.set_problems(problems);
}
