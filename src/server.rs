//! Assembling the server: opening the database, binding the socket and adding every plugin to a Bevy
//! app; and [`ServerHandle`], which runs that app on a thread of its own (for tests and embedding).

use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy::app::{PluginsState, ScheduleRunnerPlugin};
use bevy::ecs::schedule::SingleThreadedExecutor;
use bevy::prelude::*;
use bevy_renet::RenetServer;

use crate::chat::ChatHistory;
use crate::commands::Roles;
use crate::config::{AuthMode, Config};
use crate::http::{self, HttpsInfo, TokenIssuer};
use crate::metrics::{Metrics, MetricsBindError, MetricsServer};
use crate::moderation::Sanctions;
use crate::net::SecureNetcode;
use crate::probes::Health;
use crate::shutdown::ShutdownHandle;
use crate::transport::Transport;
use crate::{
    auth, bus, chat, commands, db, health, moderation, net, npc, players, schedule, shutdown,
    stats, world,
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] db::OpenError),
    #[error("cannot load chat history: {0}")]
    History(String),
    #[error("cannot load roles, bans, mutes and the allow-list: {0}")]
    Sanctions(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "refusing to listen on {0}: in-band login sends passwords over unsecure netcode, readable by \
         anyone on the path. Bind to loopback, or pass --allow-insecure-remote for a LAN you trust"
    )]
    InsecureRemote(SocketAddr),
    #[error(
        "token mode binds {0}, which no client can send to: give the address clients reach with \
         --public-addr HOST:PORT"
    )]
    NoPublicAddr(SocketAddr),
    #[error(transparent)]
    Https(#[from] http::HttpError),
    #[error(transparent)]
    Metrics(#[from] MetricsBindError),
}

/// What a built server tells its runner.
#[derive(Debug, Clone)]
pub struct Started {
    /// The address the server listens on (the real port when the config asked for port 0).
    pub addr: SocketAddr,
    /// Stops the server gracefully.
    pub shutdown: ShutdownHandle,
    /// Token mode's HTTPS endpoint.
    pub https: Option<HttpsInfo>,
    /// Where `/metrics` is served (`--metrics-bind`, with the real port).
    pub metrics: Option<SocketAddr>,
}

/// Adds the whole server to `app`: the headless loop at the configured tick, networking, accounts,
/// players and chat. Slow start-up work (opening and migrating the database, loading chat history,
/// binding) happens here, before the first tick. Logging is the caller's choice (see `main.rs`).
pub fn build(app: &mut App, config: Config) -> Result<Started, StartError> {
    let token_mode = config.auth == AuthMode::Token;
    if !token_mode && !config.bind.ip().is_loopback() && !config.allow_insecure_remote {
        return Err(StartError::InsecureRemote(config.bind));
    }
    if token_mode && config.public_addr.is_none() && config.bind.ip().is_unspecified() {
        return Err(StartError::NoPublicAddr(config.bind));
    }
    let netcode_key = match config.auth {
        AuthMode::Token => Some(http::netcode_key(config.netcode_key_file.as_deref())?),
        AuthMode::InBand => None,
    };
    // Each store takes the connections it needs from it (`Database::pool`).
    let db = db::open(&config.db)?;
    let history = ChatHistory::load(
        &db,
        usize::from(config.chat_history),
        config.chat_retention(),
    )
    .map_err(StartError::History)?;
    let sanctions = Sanctions::load(&db).map_err(StartError::Sanctions)?;
    let roles = Roles::load(&db).map_err(StartError::Sanctions)?;
    let ip_bans = moderation::ipban::load(&db).map_err(StartError::Sanctions)?;
    let allow_list =
        moderation::allow::load(&db, config.allow_list).map_err(StartError::Sanctions)?;
    let secure = |addr| {
        netcode_key.map(|private_key| SecureNetcode {
            private_key,
            public_addr: config.public_addr.unwrap_or(addr),
        })
    };
    let (server, transport, addr) =
        net::bind(&config, secure, ip_bans.clone()).map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
    let routes = net::Routes::default();
    let public_addr = net::PublicAddr(config.public_addr.unwrap_or(addr));
    let https = match netcode_key {
        Some(key) => {
            let issuer = TokenIssuer::new(key, config.public_addr.unwrap_or(addr))
                .with_routes(routes.clone());
            Some(http::bind(&config, issuer)?)
        }
        None => None,
    };
    if !token_mode && !addr.ip().is_loopback() {
        warn!(
            %addr,
            "in-band login over unsecure netcode: passwords cross the network readable by anyone on the \
             path. Use this only on a trusted LAN"
        );
    }
    let auth = match config.auth {
        AuthMode::InBand => "in-band",
        AuthMode::Token => "token",
    };
    info!(%addr, auth, db = %config.db, tick_hz = config.tick_hz, max_clients = config.max_clients, "listening");
    let https_info = https.as_ref().map(|bound| bound.info.clone());
    let metrics = Metrics::new();
    let health = Health::default();
    let metrics_server = config
        .metrics_bind
        .map(|addr| MetricsServer::bind(addr, metrics.clone(), health.clone()))
        .transpose()?;
    let metrics_addr = metrics_server.as_ref().map(|server| server.addr);

    let shutdown = ShutdownHandle::default();
    let (tick, idle_tick) = (config.tick(), IDLE_TICK.max(config.tick()));
    app.add_plugins(MinimalPlugins.build().disable::<ScheduleRunnerPlugin>())
        .set_runner(move |app| run_loop(app, tick, idle_tick))
        .insert_resource(config)
        .insert_resource(db)
        .insert_resource(history)
        .insert_resource(sanctions)
        .insert_resource(roles)
        .insert_resource(ip_bans)
        .insert_resource(allow_list)
        .insert_resource(routes)
        .insert_resource(public_addr)
        .insert_resource(metrics)
        .insert_resource(health)
        .insert_resource(server)
        .insert_resource(transport)
        .insert_resource(shutdown.clone())
        .add_plugins((
            schedule::plugin,
            net::plugin,
            players::plugin,
            commands::plugin,
            moderation::plugin,
            auth::plugin,
            chat::plugin,
            world::plugin,
            npc::plugin,
            bus::plugin,
            shutdown::plugin,
            stats::plugin,
            health::plugin,
        ));
    if let Some(metrics_server) = metrics_server {
        app.insert_resource(metrics_server);
    }
    if let Some(https) = https {
        // After auth: it queues on the auth workers.
        app.insert_resource(https).add_plugins(http::plugin);
    }
    // Every system here needs the renet server or the world in turn, so the multi-threaded executor
    // only adds wake-ups (idle, 0 players: 2.6 % of a core with it). One thread runs the whole tick.
    for (_, schedule) in app.world_mut().resource_mut::<Schedules>().iter_mut() {
        schedule.set_executor(SingleThreadedExecutor::new());
    }
    Ok(Started {
        addr,
        shutdown,
        https: https_info,
        metrics: metrics_addr,
    })
}

/// The tick while nobody is connected: 10 Hz. A connecting client waits at most this long for its
/// first answer, and an empty server costs 0.5 % of a core instead of 1.2 % at 60 Hz.
pub const IDLE_TICK: Duration = Duration::from_millis(100);

/// The server's main loop: run the schedule, then sleep out the rest of the tick (the slower idle tick
/// when there are no connections). Like Bevy's `ScheduleRunnerPlugin::run_loop` with that one change.
fn run_loop(mut app: App, tick: Duration, idle_tick: Duration) -> AppExit {
    while app.plugins_state() == PluginsState::Adding {
        bevy::tasks::tick_global_task_pools_on_main_thread();
    }
    app.finish();
    app.cleanup();
    loop {
        let started = Instant::now();
        app.update();
        if let Some(exit) = app.should_exit() {
            return exit;
        }
        let busy = app
            .world()
            .get_resource::<RenetServer>()
            .is_some_and(|server| server.has_connections())
            || app
                .world()
                .get_resource::<crate::transport::ws::WsPeers>()
                .is_some_and(|peers| !peers.is_empty());
        let wait = if busy { tick } else { idle_tick };
        // Until the next tick, the transport takes in what arrives (renet's share of it, off the tick).
        let until = started + wait;
        let world = app.world_mut();
        if world.contains_resource::<Transport>() && world.contains_resource::<RenetServer>() {
            world.resource_scope(|world, mut transport: Mut<Transport>| {
                let mut server = world.resource_mut::<RenetServer>();
                transport.pump_until(&mut server, until);
            });
        } else if let Some(rest) = until.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
}

/// A server running on its own thread.
pub struct ServerHandle {
    started: Started,
    thread: JoinHandle<AppExit>,
}

impl ServerHandle {
    /// Builds the server on a new thread and runs it there; returns once it listens.
    pub fn spawn(config: Config) -> Result<Self, StartError> {
        Self::spawn_with(config, |_| {})
    }

    /// The same, with `extend` adding to the app (plugins, systems) after [`build`], as a game's own
    /// `main` would.
    pub fn spawn_with(
        config: Config,
        extend: impl FnOnce(&mut App) + Send + 'static,
    ) -> Result<Self, StartError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("mmo-server".into())
            .spawn(move || {
                let mut app = App::new();
                match build(&mut app, config) {
                    Ok(started) => {
                        extend(&mut app);
                        let _ = tx.send(Ok(started));
                        app.run()
                    }
                    Err(error) => {
                        let _ = tx.send(Err(error));
                        AppExit::error()
                    }
                }
            })
            .expect("spawning the server thread");
        match rx.recv() {
            Ok(Ok(started)) => Ok(Self { started, thread }),
            Ok(Err(error)) => Err(error),
            Err(_) => panic!(
                "the server thread panicked while starting: {:?}",
                thread.join().err()
            ),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.started.addr
    }

    /// Where `/metrics` is served, with `--metrics-bind`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.started.metrics
    }

    /// Token mode's HTTPS endpoint (its URL and certificate).
    pub fn https(&self) -> Option<&HttpsInfo> {
        self.started.https.as_ref()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.started.shutdown.clone()
    }

    /// Stops the server gracefully and waits for it.
    pub fn stop(self) -> AppExit {
        self.started.shutdown.request();
        self.wait()
    }

    /// Waits for the server to stop by itself.
    pub fn wait(self) -> AppExit {
        match self.thread.join() {
            Ok(exit) => exit,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
