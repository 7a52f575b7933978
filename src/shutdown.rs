//! Graceful shutdown: when asked (Ctrl-C, SIGTERM, or [`ShutdownHandle::request`]), every client is told
//! why and disconnected, [`ServerStopping`] lets each plugin finish its pending work (auth jobs, chat
//! history: `stop_at_shutdown` stops a plugin's threads then), and the app exits with success. A
//! [`Countdown`] (the console's `shutdown SECONDS REASON`, registered here) tells every player how long
//! is left, then asks for that same shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;

use crate::commands::{AppCommands, Args, Call, CommandSpec, CommandStore, Needs, Outcome, answer};
use crate::load::TickLoad;
use crate::net::{self, Closing, Connection, Outbox};
use crate::players::{self, Player};
use crate::protocol::ServerMessage;
use crate::schedule::ServerSystems;
use crate::time::{MAX_DURATION, format_duration, parse_duration};
use crate::transport::Transport;
pub use crate::worker::{ServerStopping, stop_at_shutdown};

/// How long clients get to acknowledge the shutdown notice before they are disconnected anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// What clients are told (a client in token mode reconnects, to this shard once it is back or to
/// another).
pub use crate::protocol::SHUTTING_DOWN;

pub(crate) fn plugin(app: &mut App) {
    app.init_resource::<Countdown>()
        .add_systems(First, drive_shutdown)
        .add_systems(Update, count_down.in_set(ServerSystems::Simulation))
        .add_command(
            CommandSpec::new(
                "shutdown",
                Needs::Console,
                "shutdown [SECONDS|DURATION] [REASON] (or shutdown cancel): counts down in chat, then stops gracefully",
            )
            .aliases(&["stop"]),
            shutdown,
        );
}

/// A parsed `shutdown`.
#[derive(Debug, PartialEq)]
enum Shutdown {
    After { after: Duration, reason: String },
    Cancel,
}

impl Shutdown {
    fn parse(mut args: Args) -> Result<Self, String> {
        let usage = args.usage();
        let after = match args.word() {
            None => Duration::ZERO,
            Some(word) if word.eq_ignore_ascii_case("cancel") => return Ok(Shutdown::Cancel),
            Some(word) => match word.parse::<u64>() {
                Ok(secs) if secs <= MAX_DURATION.as_secs() => Duration::from_secs(secs),
                Ok(_) => return Err(usage),
                Err(_) => parse_duration(word).ok_or(usage)?,
            },
        };
        Ok(Shutdown::After {
            after,
            reason: args.rest(),
        })
    }
}

fn shutdown(
    In(call): In<Call>,
    mut countdown: ResMut<Countdown>,
    store: Res<CommandStore>,
    mut server: Outbox,
    players: Query<(Entity, &Connection), With<Player>>,
) -> Outcome {
    match Shutdown::parse(call.args())? {
        Shutdown::After { after, reason } => {
            countdown.start(after, reason.clone());
            let detail = format!("in {}s: {reason}", after.as_secs());
            store.audit(&call.actor, "shutdown", "", detail);
            if after.is_zero() {
                answer("Shutting down")
            } else {
                answer(format!("Shutting down in {}", format_duration(after)))
            }
        }
        Shutdown::Cancel if countdown.cancel() => {
            let text = "Shutdown cancelled";
            let bytes = net::encode(&ServerMessage::System { text: text.into() });
            players::broadcast(&mut server, players, &bytes, None);
            answer(text)
        }
        Shutdown::Cancel => Err("No shutdown is counting down".into()),
    }
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

    /// The time left, while one runs.
    pub fn left(&self) -> Option<Duration> {
        self.0
            .as_ref()
            .map(|pending| pending.at.saturating_duration_since(Instant::now()))
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
    mut server: Outbox,
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
    mut server: Outbox,
    transport: Res<Transport>,
    open: Query<(Entity, &Connection), Without<Closing>>,
    mut exit: MessageWriter<AppExit>,
    mut load: ResMut<TickLoad>,
) {
    match *phase {
        Phase::Running if handle.is_requested() => {
            info!(clients = server.connected_clients(), "shutting down");
            load.close();
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
            server.ws().disconnect_all(SHUTTING_DOWN);
            commands.trigger(ServerStopping);
            exit.write(AppExit::Success);
            info!("all clients disconnected; flushing pending work");
            *phase = Phase::Stopped;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_takes_seconds_or_a_duration_and_a_reason_or_cancel() {
        let usage = "shutdown [SECONDS|DURATION] [REASON]";
        let after = |secs, reason: &str| {
            Ok(Shutdown::After {
                after: Duration::from_secs(secs),
                reason: reason.into(),
            })
        };
        assert_eq!(Shutdown::parse(Args::new("", usage)), after(0, ""));
        assert_eq!(
            Shutdown::parse(Args::new("30 update", usage)),
            after(30, "update")
        );
        assert_eq!(Shutdown::parse(Args::new("2m", usage)), after(120, ""));
        assert_eq!(
            Shutdown::parse(Args::new("CANCEL", usage)),
            Ok(Shutdown::Cancel)
        );
        assert_eq!(
            Shutdown::parse(Args::new("soon", usage)),
            Err(format!("Usage: {usage}"))
        );
    }
}
