//! Graceful shutdown: when asked (Ctrl-C, SIGTERM, or [`ShutdownHandle::request`]), every client is told
//! why and disconnected, [`ServerStopping`] lets each plugin finish its pending work (auth jobs, chat
//! history), and the app exits with success. A [`Countdown`] (the console's `shutdown SECONDS REASON`)
//! tells every player how long is left, then asks for that same shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_renet::RenetServer;

use crate::net::{self, Closing, Connection};
use crate::players::{self, Player};
use crate::protocol::ServerMessage;
use crate::time::format_duration;
use crate::transport::Transport;

/// How long clients get to acknowledge the shutdown notice before they are disconnected anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// What clients are told.
pub const SHUTTING_DOWN: &str = "Server is shutting down";

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<Countdown>()
        .add_systems(First, drive_shutdown)
        .add_systems(Update, count_down);
}

/// A shutdown announced ahead: at `at`, the graceful shutdown starts.
#[derive(Resource, Debug, Default)]
pub struct Countdown(Option<Pending>);

#[derive(Debug)]
struct Pending {
    at: Instant,
    reason: String,
    /// The seconds left when players were last told.
    told_at: Option<u64>,
}

impl Countdown {
    /// Starts (or restarts) the countdown; players are told at once and again as it runs down.
    pub fn start(&mut self, after: Duration, reason: String) {
        self.0 = Some(Pending {
            at: Instant::now() + after,
            reason,
            told_at: None,
        });
    }

    /// Stops a running countdown; whether there was one.
    pub fn cancel(&mut self) -> bool {
        self.0.take().is_some()
    }

    pub fn is_running(&self) -> bool {
        self.0.is_some()
    }
}

/// Whether players are told when `left` seconds remain: every minute in the last ten, then at 30, 10
/// and each of the last five seconds.
fn tell_at(left: u64) -> bool {
    (left <= 600 && left.is_multiple_of(60)) || matches!(left, 30 | 10 | 1..=5)
}

fn count_down(
    mut countdown: ResMut<Countdown>,
    handle: Res<ShutdownHandle>,
    mut server: ResMut<RenetServer>,
    players: Query<(Entity, &Connection), With<Player>>,
) {
    let Some(pending) = &mut countdown.0 else {
        return;
    };
    let left = pending.at.saturating_duration_since(Instant::now());
    if left.is_zero() {
        info!(reason = pending.reason, "countdown over");
        countdown.0 = None;
        handle.request();
        return;
    }
    let secs = left.as_secs_f64().ceil() as u64;
    if pending.told_at.is_none() || (pending.told_at != Some(secs) && tell_at(secs)) {
        pending.told_at = Some(secs);
        let mut text = format!(
            "Server shutting down in {}",
            format_duration(Duration::from_secs(secs))
        );
        if !pending.reason.is_empty() {
            text += &format!(": {}", pending.reason);
        }
        let bytes = net::encode(&ServerMessage::System { text });
        players::broadcast(&mut server, players, &bytes, None);
    }
}

/// Asks a running server to stop; cheap to clone and safe to use from any thread or signal handler.
#[derive(Resource, Clone, Default, Debug)]
pub struct ShutdownHandle(Arc<AtomicBool>);

impl ShutdownHandle {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Triggered once, after every client was disconnected and before the app exits: plugins observe it to
/// flush what they hold.
#[derive(Event, Debug)]
pub struct ServerStopping;

#[derive(Default)]
enum Phase {
    #[default]
    Running,
    Draining(Instant),
    Stopped,
}

fn drive_shutdown(
    mut commands: Commands,
    mut phase: Local<Phase>,
    handle: Res<ShutdownHandle>,
    mut server: ResMut<RenetServer>,
    transport: Res<Transport>,
    open: Query<(Entity, &Connection), Without<Closing>>,
    mut exit: MessageWriter<AppExit>,
) {
    match *phase {
        Phase::Running if handle.is_requested() => {
            info!(clients = server.connected_clients(), "shutting down");
            for (entity, connection) in &open {
                net::kick(
                    &mut commands,
                    &mut server,
                    entity,
                    connection.client_id,
                    SHUTTING_DOWN,
                );
            }
            *phase = Phase::Draining(Instant::now() + DRAIN_GRACE);
        }
        Phase::Draining(deadline) if !server.has_connections() || Instant::now() >= deadline => {
            transport.disconnect_all();
            commands.trigger(ServerStopping);
            exit.write(AppExit::Success);
            info!("all clients disconnected; flushing pending work");
            *phase = Phase::Stopped;
        }
        _ => {}
    }
}
