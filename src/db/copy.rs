//! `--copy-to DB`: copies every row of the database at `--db` into another, SQLite to PostgreSQL when a
//! game outgrows one machine (or back, or SQLite to SQLite). Both are migrated first; the target must
//! hold no account. Every table of the schema is copied, found in the source's own catalog rather than
//! listed here, so a table a plugin's migration adds is copied without anyone touching this file: rows
//! travel as SQL literals (SQLite's `quote()`, PostgreSQL's text form quoted), parents before children
//! (by their foreign keys), in primary-key order, with their ids, in one transaction on the target (all
//! or nothing). Before it commits, every table's row count on the target is checked against the
//! source's. Then PostgreSQL's id sequences are moved past the copied ids so new rows do not collide.
//! The source is read in one read-only transaction, a snapshot: a running server's database copies
//! consistently while it plays (into a new SQLite file, that is a backup).
//!
//! Column types the literals carry: integers, reals and text (all the schema uses). A table needs a
//! primary key.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

use super::{DbConn, Manager, migrate};
use crate::config::DbLocation;
use crate::on_backend;

/// Rows read and written at a time.
const BATCH: usize = 500;
/// diesel's own table: each database keeps its own migration history.
const MIGRATIONS_TABLE: &str = "__diesel_schema_migrations";

/// Why a copy stopped (nothing is left in the target when it does).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot open {location}: {detail}")]
    Open {
        location: DbLocation,
        detail: String,
    },
    #[error("{0} already has accounts: copy into a new or empty database")]
    NotEmpty(DbLocation),
    #[error("copying {table}: {source}")]
    Table {
        table: String,
        source: diesel::result::Error,
    },
    #[error("table {0} has no primary key: it cannot be copied in order")]
    NoKey(String),
    #[error("tables {0:?} refer to each other: no order copies parents first")]
    Cycle(Vec<String>),
    #[error("copied {table}: {copied} of {rows} rows arrived; nothing was copied")]
    Mismatch {
        table: String,
        rows: i64,
        copied: i64,
    },
}

/// One table as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    /// The primary key's columns, in order.
    pub key: Vec<String>,
    /// The tables its foreign keys point at.
    pub parents: Vec<String>,
}

/// One text column of a catalog or data query.
#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    text: String,
}

/// A row as literals, with its key's literals (where the next batch starts).
#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    text: String,
    #[diesel(sql_type = Text)]
    key: String,
}

fn failed(table: &str) -> impl Fn(diesel::result::Error) -> CopyError + '_ {
    move |source| CopyError::Table {
        table: table.to_owned(),
        source,
    }
}

/// `"name"`, quoted as an SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs a catalog query returning one text column, with `table` bound to its one parameter (if any).
fn lines(conn: &mut DbConn, sql: &str, table: &str) -> Result<Vec<String>, CopyError> {
    let rows: Vec<Line> = if sql.contains('?') || sql.contains("$1") {
        on_backend!(conn, c => diesel::sql_query(sql).bind::<Text, _>(table).load(c))
    } else {
        on_backend!(conn, c => diesel::sql_query(sql).load(c))
    }
    .map_err(failed(table))?;
    Ok(rows.into_iter().map(|line| line.text).collect())
}

/// Every table of `conn`'s schema (but diesel's migration history), parents first.
pub fn tables(conn: &mut DbConn) -> Result<Vec<Table>, CopyError> {
    let [names, columns, key, parents] = match conn {
        DbConn::Sqlite(_) => [
            "SELECT name AS text FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
            "SELECT name AS text FROM pragma_table_info(?) ORDER BY cid",
            "SELECT name AS text FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk",
            "SELECT DISTINCT \"table\" AS text FROM pragma_foreign_key_list(?)",
        ],
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => [
            "SELECT table_name::text AS text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name",
            "SELECT column_name::text AS text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            "SELECT k.column_name::text AS text FROM information_schema.table_constraints t \
             JOIN information_schema.key_column_usage k \
             ON k.constraint_name = t.constraint_name AND k.table_schema = t.table_schema \
             WHERE t.table_schema = current_schema() AND t.table_name = $1 \
             AND t.constraint_type = 'PRIMARY KEY' ORDER BY k.ordinal_position",
            "SELECT DISTINCT u.table_name::text AS text FROM information_schema.table_constraints t \
             JOIN information_schema.constraint_column_usage u \
             ON u.constraint_name = t.constraint_name AND u.table_schema = t.table_schema \
             WHERE t.table_schema = current_schema() AND t.table_name = $1 \
             AND t.constraint_type = 'FOREIGN KEY'",
        ],
    };
    let mut found = Vec::new();
    for name in lines(conn, names, "")? {
        if name == MIGRATIONS_TABLE {
            continue;
        }
        let table = Table {
            columns: lines(conn, columns, &name)?,
            key: lines(conn, key, &name)?,
            parents: lines(conn, parents, &name)?
                .into_iter()
                .filter(|parent| *parent != name)
                .collect(),
            name,
        };
        if table.key.is_empty() {
            return Err(CopyError::NoKey(table.name));
        }
        found.push(table);
    }
    parents_first(found)
}

/// `tables` ordered so that every table comes after the tables it refers to.
fn parents_first(mut tables: Vec<Table>) -> Result<Vec<Table>, CopyError> {
    let mut ordered: Vec<Table> = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let ready = tables.iter().position(|table| {
            table
                .parents
                .iter()
                .all(|parent| ordered.iter().any(|done| done.name == *parent))
        });
        match ready {
            Some(index) => ordered.push(tables.remove(index)),
            None => {
                return Err(CopyError::Cycle(
                    tables.into_iter().map(|t| t.name).collect(),
                ));
            }
        }
    }
    Ok(ordered)
}

/// How many rows `table` holds.
fn count(conn: &mut DbConn, table: &str) -> Result<i64, CopyError> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = format!("SELECT COUNT(*) AS n FROM {}", ident(table));
    let found: Vec<Count> =
        on_backend!(conn, c => diesel::sql_query(&sql).load(c)).map_err(failed(table))?;
    Ok(found.first().map_or(0, |count| count.n))
}

/// Every table's row count, parents first (what a copy checks, and what a test compares).
pub fn row_counts(conn: &mut DbConn) -> Result<Vec<(String, i64)>, CopyError> {
    tables(conn)?
        .into_iter()
        .map(|table| Ok((table.name.clone(), count(conn, &table.name)?)))
        .collect()
}

/// The SQL expression that renders `column` as a literal on `conn`'s backend.
fn literal(conn: &DbConn, column: &str) -> String {
    match conn {
        DbConn::Sqlite(_) => format!("quote({})", ident(column)),
        // Its text form, quoted: an integer or real column takes '5' or '1.5' on either side.
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => format!(
            "CASE WHEN {c} IS NULL THEN 'NULL' ELSE '''' || replace({c}::text, '''', '''''') || '''' END",
            c = ident(column)
        ),
    }
}

/// `'(' || a || ',' || b || ')'`: a tuple of literals of `columns`.
fn tuple(conn: &DbConn, columns: &[String]) -> String {
    let parts: Vec<String> = columns.iter().map(|c| literal(conn, c)).collect();
    format!("'(' || {} || ')'", parts.join(" || ',' || "))
}

/// Copies `table`'s rows from `from` to `to`, [`BATCH`] at a time in key order; how many.
fn copy_table(from: &mut DbConn, to: &mut DbConn, table: &Table) -> Result<usize, CopyError> {
    let name = ident(&table.name);
    let columns: Vec<String> = table.columns.iter().map(|c| ident(c)).collect();
    let key: Vec<String> = table.key.iter().map(|c| ident(c)).collect();
    let select = format!(
        "SELECT {} AS text, {} AS key FROM {name}",
        tuple(from, &table.columns),
        tuple(from, &table.key)
    );
    let order = format!("ORDER BY {} LIMIT {BATCH}", key.join(", "));
    let mut after: Option<String> = None;
    let mut copied = 0;
    loop {
        let sql = match &after {
            None => format!("{select} {order}"),
            Some(last) => format!("{select} WHERE ({}) > {last} {order}", key.join(", ")),
        };
        let rows: Vec<Row> = on_backend!(&mut *from, c => diesel::sql_query(&sql).load(c))
            .map_err(failed(&table.name))?;
        let Some(last) = rows.last() else { break };
        after = Some(last.key.clone());
        let values: Vec<&str> = rows.iter().map(|row| row.text.as_str()).collect();
        let insert = format!(
            "INSERT INTO {name} ({}) VALUES {}",
            columns.join(", "),
            values.join(", ")
        );
        on_backend!(&mut *to, c => c.batch_execute(&insert)).map_err(failed(&table.name))?;
        copied += rows.len();
    }
    tracing::info!(table = table.name.as_str(), rows = copied, "copied");
    Ok(copied)
}

/// Copies everything in `from` into `to`; how many rows of each table.
pub fn copy(from: &DbLocation, to: &DbLocation) -> Result<Vec<(String, usize)>, CopyError> {
    let open = |location: &DbLocation| {
        let error = |detail: String| CopyError::Open {
            location: location.clone(),
            detail,
        };
        let mut conn = Manager::connect_to(location).map_err(|e| error(e.to_string()))?;
        migrate(&mut conn).map_err(|e| error(e.to_string()))?;
        Ok::<_, CopyError>(conn)
    };
    let mut source = open(from)?;
    let mut target = open(to)?;
    if count(&mut target, "accounts")? > 0 {
        return Err(CopyError::NotEmpty(to.clone()));
    }
    // By hand rather than diesel's transaction: its body reads another connection of either backend.
    let statement = |conn: &mut DbConn, sql: &str| {
        on_backend!(conn, c => c.batch_execute(sql)).map_err(failed("(transaction)"))
    };
    // The source's snapshot: SQLite's read transaction (WAL: writers carry on meanwhile) holds from
    // its first read; PostgreSQL's repeatable read from the first statement.
    let snapshot = match source {
        DbConn::Sqlite(_) => "BEGIN",
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    };
    statement(&mut source, snapshot)?;
    let tables = tables(&mut source)?;
    let begin = match target {
        DbConn::Sqlite(_) => "BEGIN IMMEDIATE",
        #[cfg(feature = "postgres")]
        DbConn::Postgres(_) => "BEGIN",
    };
    statement(&mut target, begin)?;
    let copied = copy_tables(&mut source, &mut target, &tables);
    let _ = statement(&mut source, "COMMIT");
    match copied {
        Ok(counts) => {
            statement(&mut target, "COMMIT")?;
            reset_sequences(&mut target)?;
            Ok(counts)
        }
        Err(error) => {
            let _ = statement(&mut target, "ROLLBACK");
            Err(error)
        }
    }
}

/// Every table, parents first, each checked to hold on the target what the source holds.
fn copy_tables(
    from: &mut DbConn,
    to: &mut DbConn,
    tables: &[Table],
) -> Result<Vec<(String, usize)>, CopyError> {
    let mut counts = Vec::with_capacity(tables.len());
    for table in tables {
        let copied = copy_table(from, to, table)?;
        let (rows, arrived) = (count(from, &table.name)?, count(to, &table.name)?);
        if rows != arrived {
            return Err(CopyError::Mismatch {
                table: table.name.clone(),
                rows,
                copied: arrived,
            });
        }
        counts.push((table.name.clone(), copied));
    }
    Ok(counts)
}

/// On PostgreSQL, moves each serial column's sequence past the highest value copied (the rows came
/// with their ids, so the sequences never moved).
fn reset_sequences(to: &mut DbConn) -> Result<(), CopyError> {
    #[cfg(feature = "postgres")]
    if let DbConn::Postgres(_) = to {
        let serial = "SELECT table_name::text || '.' || column_name::text AS text \
             FROM information_schema.columns WHERE table_schema = current_schema() \
             AND column_default LIKE 'nextval(%'";
        for found in lines(to, serial, "")? {
            let Some((table, column)) = found.split_once('.') else {
                continue;
            };
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                 (SELECT COALESCE(MAX({c}), 0) + 1 FROM {t}), false)",
                c = ident(column),
                t = ident(table)
            );
            on_backend!(&mut *to, c => c.batch_execute(&sql)).map_err(failed(table))?;
        }
    }
    #[cfg(not(feature = "postgres"))]
    let _ = to;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, parents: &[&str]) -> Table {
        Table {
            name: name.into(),
            columns: vec!["id".into()],
            key: vec!["id".into()],
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn parents_are_copied_before_their_children() {
        let ordered = parents_first(vec![
            table("chat_messages", &["accounts"]),
            table("audit_log", &[]),
            table("scores", &["chat_messages", "accounts"]),
            table("accounts", &[]),
        ])
        .unwrap();
        let names: Vec<&str> = ordered.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["audit_log", "accounts", "chat_messages", "scores"]);
        assert!(matches!(
            parents_first(vec![table("a", &["b"]), table("b", &["a"])]),
            Err(CopyError::Cycle(_))
        ));
    }

    #[test]
    fn every_table_of_the_schema_is_found_with_its_key_and_parents() {
        let dir = tempfile::tempdir().unwrap();
        let location = DbLocation::Sqlite(dir.path().join("schema.sqlite3"));
        let mut conn = Manager::connect_to(&location).unwrap();
        migrate(&mut conn).unwrap();
        let tables = tables(&mut conn).unwrap();
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names[0], "accounts", "the parent of the others comes first");
        for name in [
            "audit_log",
            "chat_messages",
            "positions",
            "sanctions",
            "sessions",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        assert!(!names.contains(&MIGRATIONS_TABLE));
        let sanctions = tables.iter().find(|t| t.name == "sanctions").unwrap();
        assert_eq!(sanctions.key, ["account_id", "kind"]);
        assert_eq!(sanctions.parents, ["accounts"]);
    }
}
