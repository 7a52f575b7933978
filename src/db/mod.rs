//! The database: opening the SQLite file with a connection pool, running the embedded migrations, and the
//! typed queries the rest of the server calls from its worker threads (never from the tick).

pub mod models;
pub mod queries;
pub mod schema;

use std::path::Path;
use std::time::Duration;

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The migrations under `migrations/`, compiled into the binary so users need no diesel CLI.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// A pool of SQLite connections, each set up by [`SqlitePragmas`].
pub type DbPool = Pool<ConnectionManager<SqliteConnection>>;
/// The server's pool, as a Bevy resource: plugins clone it for their worker threads.
#[derive(bevy::prelude::Resource, Clone)]
pub struct Database(pub DbPool);

/// One connection taken from a [`DbPool`].
pub type DbConnection = PooledConnection<ConnectionManager<SqliteConnection>>;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open database {path}: {source}")]
    Pool {
        path: String,
        source: diesel::r2d2::PoolError,
    },
    #[error("cannot open or migrate database {path}: {source}")]
    Migrate {
        path: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Settings applied to every pooled connection: WAL so readers never wait for the writer, a busy
/// timeout so concurrent writers queue instead of failing, `NORMAL` sync (durable across process crashes
/// in WAL mode), and foreign keys enforced.
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        // busy_timeout first: switching to WAL takes a lock other connections may hold.
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Opens (creating if needed) the database file and brings its schema up to date.
pub fn open(path: &Path, max_connections: u32) -> Result<DbPool, OpenError> {
    let url = path.to_string_lossy().into_owned();
    // One connection first, so the file's creation, its switch to WAL and the migrations are not raced
    // by the pool's other connections opening at the same time.
    let mut first = SqliteConnection::establish(&url).map_err(|e| OpenError::Migrate {
        path: url.clone(),
        source: e.into(),
    })?;
    SqlitePragmas
        .on_acquire(&mut first)
        .map_err(|e| OpenError::Migrate {
            path: url.clone(),
            source: e.into(),
        })?;
    let applied =
        first
            .run_pending_migrations(MIGRATIONS)
            .map_err(|source| OpenError::Migrate {
                path: url.clone(),
                source,
            })?;
    for version in applied {
        tracing::info!(%version, db = %url, "applied migration");
    }
    drop(first);
    let pool = Pool::builder()
        .max_size(max_connections)
        .connection_timeout(Duration::from_secs(10))
        .connection_customizer(Box::new(SqlitePragmas))
        .build(ConnectionManager::<SqliteConnection>::new(&url))
        .map_err(|source| OpenError::Pool {
            path: url.clone(),
            source,
        })?;
    Ok(pool)
}

/// Runs `query` on a connection from `pool` (on the calling thread: a worker's, never the tick's). The
/// error, from the pool or the query, is its text, for the caller's log line.
pub fn with_conn<T>(
    pool: &DbPool,
    query: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<T>,
) -> Result<T, String> {
    let mut conn = pool.get().map_err(|e| e.to_string())?;
    query(&mut conn).map_err(|e| e.to_string())
}
