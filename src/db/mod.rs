//! The database: SQLite (the default: a file, nothing to install) or, in a build with the `postgres`
//! feature, PostgreSQL (shards on several machines share one). Opening either with a connection pool,
//! running its embedded migrations, and the typed queries the rest of the server calls from its worker
//! threads (never from the tick).
//!
//! Both backends run the same queries: [`DbConn`] holds a connection of either, and
//! [`on_backend!`](crate::on_backend) expands a query once per backend, so each is checked and compiled
//! against the real connection type (diesel's `MultiConnection` would refuse upserts and batch inserts,
//! which the writers need).

pub mod copy;
pub mod models;
pub mod queries;
pub mod schema;

use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

#[cfg(feature = "postgres")]
use diesel::RunQueryDsl;

use crate::config::DbLocation;

/// SQLite's migrations (`migrations/sqlite`), compiled into the binary so users need no diesel CLI.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// PostgreSQL's migrations (`migrations/postgres`): the same versions, the same schema.
#[cfg(feature = "postgres")]
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long a worker waits for a connection before its job fails (with the database gone, logins are
/// answered "Server busy, try again" after this).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// One open connection, to whichever database `--db` names.
pub enum DbConn {
    Sqlite(SqliteConnection),
    #[cfg(feature = "postgres")]
    Postgres(diesel::pg::PgConnection),
}

/// Runs `$body` with `$c` bound to the concrete connection inside a [`DbConn`] (once per backend, so
/// the same diesel query is built for each).
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite($c) => $body,
            #[cfg(feature = "postgres")]
            $crate::db::DbConn::Postgres($c) => $body,
        }
    };
}

/// Runs `$body` (a `QueryResult`) in a write transaction on `$c`: `BEGIN IMMEDIATE` on SQLite (the write
/// lock up front, so two writers queue on the busy timeout instead of one failing), `BEGIN` on
/// PostgreSQL.
#[macro_export]
macro_rules! write_transaction {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::db::DbConn::Sqlite(conn) => conn.immediate_transaction(|$c| $body),
            #[cfg(feature = "postgres")]
            $crate::db::DbConn::Postgres(conn) => diesel::Connection::transaction(conn, |$c| $body),
        }
    };
}

/// A pool of connections to one database.
pub type DbPool = Pool<Manager>;

/// The server's database, as a Bevy resource: opened and migrated before the first tick. Each store
/// (a plugin's database thread, the auth workers) takes a pool of its own with [`Database::pool`],
/// sized for its threads, so the connections the server holds are those its stores need, whatever
/// stores exist: nothing lists them.
#[derive(bevy::prelude::Resource, Clone, Debug)]
pub struct Database {
    location: DbLocation,
}

impl Database {
    /// Where it is (`--db`), shown without a password.
    pub fn location(&self) -> &DbLocation {
        &self.location
    }

    /// A pool of at most `connections` for the store named `store` (its name is in the pool's error
    /// lines). Connections open in the background as the store's threads ask for them.
    pub fn pool(&self, store: &'static str, connections: u32) -> DbPool {
        tracing::debug!(store, connections, db = %self.location, "database pool");
        Pool::builder()
            .max_size(connections.max(1))
            .connection_timeout(CONNECTION_TIMEOUT)
            .error_handler(Box::new(QuietErrors {
                store,
                last: Default::default(),
            }))
            .build_unchecked(Manager {
                location: self.location.clone(),
            })
    }

    /// One connection of its own, for reads before the first tick (the chat history, the roles).
    pub fn connect(&self) -> Result<DbConn, String> {
        Manager::connect_to(&self.location).map_err(|error| error.to_string())
    }
}

/// Runs `query` on a connection of its own to `db` (start-up reads, never the tick).
pub fn with_connection<T>(
    db: &Database,
    query: impl FnOnce(&mut DbConn) -> diesel::QueryResult<T>,
) -> Result<T, String> {
    query(&mut db.connect()?).map_err(|error| error.to_string())
}

/// One connection taken from a [`DbPool`].
pub type DbConnection = PooledConnection<Manager>;

/// Why the database could not be opened. The location is shown without its password.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open or migrate database {location}: {source}")]
    Migrate {
        location: DbLocation,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "{location} is a PostgreSQL URL, but this mmo was built without PostgreSQL: build it with `--features postgres`"
    )]
    NoPostgres { location: DbLocation },
}

/// Opens connections to one [`DbLocation`] for the pool: SQLite's with `SQLITE_PRAGMAS` applied,
/// PostgreSQL's with any password scrubbed from their errors (libpq repeats parts of the URL in some).
#[derive(Debug)]
pub struct Manager {
    location: DbLocation,
}

/// Settings applied to every SQLite connection: WAL so readers never wait for the writer, a busy timeout
/// so concurrent writers queue instead of failing, `NORMAL` sync (durable across process crashes in WAL
/// mode), and foreign keys enforced. busy_timeout first: switching to WAL takes a lock other connections
/// may hold.
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

impl Manager {
    /// Connects once (the pool calls this; so do tests and tools).
    pub fn connect_to(location: &DbLocation) -> Result<DbConn, diesel::r2d2::Error> {
        match location {
            DbLocation::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                conn.batch_execute(SQLITE_PRAGMAS)
                    .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConn::Sqlite(conn))
            }
            #[cfg(feature = "postgres")]
            DbLocation::Postgres(url) => diesel::pg::PgConnection::establish(url)
                .map(DbConn::Postgres)
                .map_err(|error| {
                    diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(
                        scrub(&error.to_string(), url),
                    ))
                }),
            #[cfg(not(feature = "postgres"))]
            DbLocation::Postgres(_) => Err(diesel::r2d2::Error::ConnectionError(
                diesel::ConnectionError::BadConnection(
                    OpenError::NoPostgres {
                        location: location.clone(),
                    }
                    .to_string(),
                ),
            )),
        }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        Self::connect_to(&self.location)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        on_backend!(conn, c => c.ping()).map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        on_backend!(conn, c => c.is_broken())
    }
}

/// Logs a pool's connection errors (the pool retries each missing connection in the background), at
/// most one line per [`QuietErrors::EVERY`] with how many were left out, so a database that is away does
/// not flood the log.
#[derive(Debug)]
struct QuietErrors {
    /// The store the pool is for.
    store: &'static str,
    /// When the last line was logged, and how many errors came since.
    last: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

impl QuietErrors {
    const EVERY: Duration = Duration::from_secs(30);
}

impl diesel::r2d2::HandleError<diesel::r2d2::Error> for QuietErrors {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &mut *last {
            Some((at, left_out)) if at.elapsed() < Self::EVERY => *left_out += 1,
            _ => {
                let left_out = last.map_or(0, |(_, left_out)| left_out);
                tracing::warn!(%error, store = self.store, similar_left_out = left_out, "cannot connect to the database");
                *last = Some((std::time::Instant::now(), 0));
            }
        }
    }
}

/// `text` without the password of `url` (nor the whole URL) in it.
#[cfg(feature = "postgres")]
fn scrub(text: &str, url: &str) -> String {
    let mut text = text.replace(url, &crate::config::redacted(url));
    let credentials = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map(|(credentials, _)| credentials);
    if let Some(password) = credentials
        .and_then(|credentials| credentials.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty())
    {
        text = text.replace(password, "***");
    }
    text
}

/// Opens (creating if needed) the database and brings its schema up to date.
pub fn open(location: &DbLocation) -> Result<Database, OpenError> {
    let migrate_error = |source: Box<dyn std::error::Error + Send + Sync>| OpenError::Migrate {
        location: location.clone(),
        source,
    };
    #[cfg(not(feature = "postgres"))]
    if let DbLocation::Postgres(_) = location {
        return Err(OpenError::NoPostgres {
            location: location.clone(),
        });
    }
    // One connection first, so the file's creation, its switch to WAL and the migrations are not raced
    // by the stores' connections opening at the same time.
    let mut first = Manager::connect_to(location).map_err(|e| migrate_error(e.into()))?;
    let applied = migrate(&mut first).map_err(migrate_error)?;
    for version in applied {
        tracing::info!(%version, db = %location, "applied migration");
    }
    Ok(Database {
        location: location.clone(),
    })
}

/// Runs the pending migrations; the versions applied. On PostgreSQL under an advisory lock, so shards
/// starting together against one database migrate it once.
fn migrate(conn: &mut DbConn) -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    let versions = |applied: Vec<diesel::migration::MigrationVersion<'_>>| {
        applied.iter().map(ToString::to_string).collect()
    };
    match conn {
        DbConn::Sqlite(conn) => conn.run_pending_migrations(MIGRATIONS).map(versions),
        #[cfg(feature = "postgres")]
        DbConn::Postgres(conn) => {
            // Any fixed key: every mmo migrating this database takes the same one.
            const MIGRATION_LOCK: i64 = 0x6d6d_6f5f_6d69_6772; // "mmo_migr"
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .execute(conn)?;
            let applied = conn
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(versions);
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                .execute(conn)?;
            applied
        }
    }
}

/// Runs `query` on a connection from `pool` (on the calling thread: a worker's, never the tick's). The
/// error, from the pool or the query, is its text, for the caller's log line.
pub fn with_conn<T>(
    pool: &DbPool,
    query: impl FnOnce(&mut DbConn) -> diesel::QueryResult<T>,
) -> Result<T, String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    query(&mut conn).map_err(|e| e.to_string())
}

/// How long a writer keeps retrying a batch once the server is stopping (the database still away).
const GIVE_UP_WHEN_STOPPING: Duration = Duration::from_secs(10);

/// Runs `write` on a connection from `pool` until it succeeds, so a writer's batch (chat lines the
/// players saw, positions) survives the database being away for a while: the failure is logged once,
/// retried with backoff (up to 5 s), and the recovery logged. Once `stopping` is set it gives up after
/// `GIVE_UP_WHEN_STOPPING` of failures (the loss is logged with `what` and `count`), so a server whose
/// database is gone can still stop.
pub fn write_until_done<T>(
    pool: &DbPool,
    stopping: &std::sync::atomic::AtomicBool,
    what: &str,
    count: usize,
    mut write: impl FnMut(&mut DbConn) -> diesel::QueryResult<T>,
) -> Option<T> {
    let mut failing_since = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        match with_conn(pool, &mut write) {
            Ok(done) => {
                if failing_since.is_some() {
                    tracing::info!(what, count, "the database is back; stored");
                }
                return Some(done);
            }
            Err(error) => {
                let since = *failing_since.get_or_insert_with(|| {
                    tracing::error!(%error, what, count, "cannot store; retrying until the database is back");
                    std::time::Instant::now()
                });
                if stopping.load(std::sync::atomic::Ordering::Relaxed)
                    && since.elapsed() >= GIVE_UP_WHEN_STOPPING
                {
                    tracing::error!(%error, what, count, "stopping with the database away: not stored");
                    return None;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    #[test]
    fn scrub_hides_the_password() {
        let url = "postgres://mmo:s3cret@db.internal:5432/mmo";
        let text = format!("invalid connection option in {url}; password s3cret refused");
        let scrubbed = super::scrub(&text, url);
        assert!(!scrubbed.contains("s3cret"), "{scrubbed}");
        assert!(
            scrubbed.contains("postgres://***@db.internal:5432/mmo"),
            "{scrubbed}"
        );
    }
}
