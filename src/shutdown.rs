//! Graceful shutdown: when asked (Ctrl-C, SIGTERM, or [`ShutdownHandle::request`]), every client is told
//! why and disconnected, [`ServerStopping`] lets each plugin finish its pending work (auth jobs, chat
//! history), and the app exits with success.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bevy::prelude::*;
use bevy_renet::RenetServer;

use crate::net::{self, Closing, Connection};
use crate::transport::Transport;

/// How long clients get to acknowledge the shutdown notice before they are disconnected anyway.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// What clients are told.
pub const SHUTTING_DOWN: &str = "Server is shutting down";

pub(crate) fn plugin(app: &mut App) {
    app.add_systems(First, drive_shutdown);
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
