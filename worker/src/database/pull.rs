//! An incremental database pull: the configured SELECT with `:watermark` bound to the last
//! watermark, read in batches that end on a watermark boundary.
//!
//! ```text
//!  query(:watermark = W) ──stream──▶ rows r1 r2 … (ordered by the watermark column)
//!     read until batchSize rows AND the next row's watermark is greater than the last one's
//!     (the boundary row is not taken: the next query starts after the batch's greatest value)
//!  batch ──▶ caller delivers every row ──▶ watermark W' = greatest value of the batch
//!     └─ next query with :watermark = W' … until the query returns no row past the batch
//! ```
//!
//! Why batches end on a boundary: the query is `WHERE col > :watermark`, so a watermark is
//! only safe to record when *every* row with that value was delivered. Ending each batch where
//! the value changes (and re-running the query rather than holding a cursor open while rows are
//! delivered) means a crash between batches re-reads at most the rows of one batch, and never
//! skips one. Rows must come in watermark order: a value lower than its predecessor's fails the
//! run (the query lacks `ORDER BY <column>`). Without a watermark the query runs once, streamed.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::value::{mysql_row, postgres_row};
use super::{Database, DatabaseError, Driver, Pool, classify};
use crate::config::DatabasePullConfig;

/// One row, as `record` for CEL.
pub type Record = Map<String, Value>;

/// A configured pull.
#[derive(Debug)]
pub struct DatabasePull {
    database: Database,
    config: DatabasePullConfig,
}

/// One batch of rows, and the watermark that is safe to record once they are all delivered.
#[derive(Debug)]
pub struct Batch {
    /// The rows, in query order.
    pub rows: Vec<Record>,
    /// The greatest watermark value of the batch (`None` without a watermark).
    pub watermark: Option<String>,
    /// Whether the query had no more rows after this batch.
    pub last: bool,
}

impl DatabasePull {
    /// A pull of `config` from `database`.
    pub fn new(
        database: Database,
        config: &DatabasePullConfig,
    ) -> Result<DatabasePull, DatabaseError> {
        if let Some(w) = &config.watermark {
            if !config.query.contains(":watermark") {
                return Err(DatabaseError::Config(
                    "a query with a watermark must use :watermark (for example WHERE updated_at > :watermark ORDER BY updated_at)".into(),
                ));
            }
            if !super::is_identifier(&w.column) {
                return Err(DatabaseError::Config(format!(
                    "watermark column {:?} is not a column name",
                    w.column
                )));
            }
        }
        Ok(DatabasePull { database, config: config.clone() })
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Read the next batch after `watermark` (the configured initial value on a first run).
    /// Without a watermark, `stream_all` is used instead.
    pub async fn next_batch(&self, watermark: &str) -> Result<Batch, DatabaseError> {
        let column = self.config.watermark.as_ref().map(|w| w.column.clone()).unwrap_or_default();
        let batch_size = self.config.batch_size.max(1) as usize;
        let mut rx = self.stream(Some(watermark.to_string())).await?;
        let mut rows: Vec<Record> = Vec::new();
        let mut greatest: Option<Value> = None;
        loop {
            let Some(row) = rx.recv().await else {
                return Ok(Batch {
                    watermark: greatest.as_ref().map(watermark_text),
                    rows,
                    last: true,
                });
            };
            let row = row?;
            let value = row.get(&column).cloned().ok_or_else(|| {
                DatabaseError::Schema(format!(
                    "the query result has no watermark column {column:?}"
                ))
            })?;
            if value.is_null() {
                return Err(DatabaseError::Schema(format!(
                    "a row has NULL in the watermark column {column:?}; filter them out in the query"
                )));
            }
            if let Some(previous) = &greatest {
                match compare(&value, previous) {
                    Some(Ordering::Less) | None => {
                        return Err(DatabaseError::Schema(format!(
                            "rows are not in {column:?} order; the query needs ORDER BY {column} so that no row is skipped"
                        )));
                    }
                    Some(Ordering::Greater) if rows.len() >= batch_size => {
                        // A boundary after a full batch: stop here, this row starts the next one.
                        return Ok(Batch {
                            watermark: greatest.as_ref().map(watermark_text),
                            rows,
                            last: false,
                        });
                    }
                    _ => {}
                }
            }
            greatest = Some(value);
            rows.push(row);
        }
    }

    /// Every row of a pull without a watermark, streamed.
    pub async fn stream_all(
        &self,
    ) -> Result<mpsc::Receiver<Result<Record, DatabaseError>>, DatabaseError> {
        self.stream(None).await
    }

    /// Run the query; rows arrive on the channel (bounded, so the reader sets the pace). Drop
    /// the receiver to stop reading.
    async fn stream(
        &self,
        watermark: Option<String>,
    ) -> Result<mpsc::Receiver<Result<Record, DatabaseError>>, DatabaseError> {
        let pool = self.database.pool().await?;
        let driver = self.database.driver();
        let (sql, occurrences) = placeholders(&self.config.query, driver);
        let (tx, rx) = mpsc::channel(self.config.batch_size.clamp(1, 1000) as usize);
        let watermark = watermark.map(|w| WatermarkValue::parse(&w));
        match pool {
            // PostgreSQL's `$1` may appear several times; it is bound once. MySQL's `?` is
            // bound once per occurrence.
            Pool::Postgres(pool) => {
                tokio::spawn(send_rows(pool, sql, watermark, 1, Driver::Postgres, postgres_row, tx))
            }
            Pool::Mysql(pool) => tokio::spawn(send_rows(
                pool,
                sql,
                watermark,
                occurrences,
                Driver::Mysql,
                mysql_row,
                tx,
            )),
        };
        Ok(rx)
    }
}

/// Run `sql` on `pool` with the watermark bound `binds` times, and send each row (as `record`)
/// to `tx` until the rows end, the receiver is dropped, or an error was sent.
async fn send_rows<DB>(
    pool: sqlx::Pool<DB>,
    sql: String,
    watermark: Option<WatermarkValue>,
    binds: usize,
    driver: Driver,
    convert: fn(&DB::Row) -> Result<Record, DatabaseError>,
    tx: mpsc::Sender<Result<Record, DatabaseError>>,
) where
    DB: sqlx::Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'t> DateTime<Utc>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> NaiveDateTime: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    // The query is the Integration's own (reviewed in Git, like all of its spec); the
    // watermark is bound, never spliced in.
    let mut query = sqlx::query::<DB>(sqlx::AssertSqlSafe(sql));
    if let Some(w) = &watermark {
        for _ in 0..binds {
            query = match w {
                WatermarkValue::Timestamp(t) => query.bind(*t),
                WatermarkValue::Naive(t) => query.bind(*t),
                WatermarkValue::Integer(i) => query.bind(*i),
                WatermarkValue::Text(s) => query.bind(s.clone()),
            };
        }
    }
    let mut rows = query.fetch(&pool);
    while let Some(row) = rows.next().await {
        let item = row.map_err(|e| classify(&e, driver)).and_then(|r| convert(&r));
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            break;
        }
    }
}

/// The query with each `:watermark` replaced by the engine's placeholder, and how many there
/// were. `::watermark` (a cast) and `:watermarks` are left alone.
pub fn placeholders(query: &str, driver: Driver) -> (String, usize) {
    const TOKEN: &str = ":watermark";
    let mut out = String::with_capacity(query.len());
    let mut count = 0;
    let mut rest = query;
    while let Some(at) = rest.find(TOKEN) {
        let before = &rest[..at];
        let after = &rest[at + TOKEN.len()..];
        let cast = before.ends_with(':');
        let longer = after.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(before);
        if cast || longer {
            out.push_str(TOKEN);
        } else {
            count += 1;
            out.push_str(match driver {
                Driver::Postgres => "$1",
                Driver::Mysql => "?",
            });
        }
        rest = after;
    }
    out.push_str(rest);
    (out, count)
}

/// A watermark as bound to the query: typed, so that `updated_at > :watermark` compares
/// timestamps (or numbers) rather than text.
#[derive(Clone, Debug, PartialEq)]
pub enum WatermarkValue {
    /// RFC 3339 with an offset.
    Timestamp(DateTime<Utc>),
    /// A timestamp without offset (from a `timestamp`/`datetime` column).
    Naive(NaiveDateTime),
    /// An integer (a sequence or version column).
    Integer(i64),
    /// Anything else, bound as text.
    Text(String),
}

impl WatermarkValue {
    /// Recognise the type of a stored watermark.
    pub fn parse(text: &str) -> WatermarkValue {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return WatermarkValue::Timestamp(t.with_timezone(&Utc));
        }
        for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
                return WatermarkValue::Naive(t);
            }
        }
        if let Ok(i) = text.parse::<i64>() {
            return WatermarkValue::Integer(i);
        }
        WatermarkValue::Text(text.to_string())
    }

    /// Seconds since the epoch, for a timestamp watermark (the metric).
    pub fn epoch_seconds(&self) -> Option<f64> {
        match self {
            WatermarkValue::Timestamp(t) => Some(t.timestamp_micros() as f64 / 1e6),
            WatermarkValue::Naive(t) => Some(t.and_utc().timestamp_micros() as f64 / 1e6),
            _ => None,
        }
    }
}

/// Order two watermarks of the same kind; `None` when they cannot be compared.
pub fn compare_text(a: &str, b: &str) -> Option<Ordering> {
    match (WatermarkValue::parse(a), WatermarkValue::parse(b)) {
        (WatermarkValue::Timestamp(x), WatermarkValue::Timestamp(y)) => Some(x.cmp(&y)),
        (WatermarkValue::Naive(x), WatermarkValue::Naive(y)) => Some(x.cmp(&y)),
        (WatermarkValue::Timestamp(x), WatermarkValue::Naive(y)) => Some(x.naive_utc().cmp(&y)),
        (WatermarkValue::Naive(x), WatermarkValue::Timestamp(y)) => Some(x.cmp(&y.naive_utc())),
        (WatermarkValue::Integer(x), WatermarkValue::Integer(y)) => Some(x.cmp(&y)),
        (WatermarkValue::Text(x), WatermarkValue::Text(y)) => Some(x.cmp(&y)),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        _ => compare_text(&watermark_text(a), &watermark_text(b)),
    }
}

/// A watermark value as stored in the status.
pub fn watermark_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_replace_the_parameter_only() {
        let q = "SELECT a FROM t WHERE u > :watermark AND v::watermark_t = 1 AND w = :watermarks OR z >= :watermark";
        let (pg, n) = placeholders(q, Driver::Postgres);
        assert_eq!(n, 2);
        assert_eq!(
            pg,
            "SELECT a FROM t WHERE u > $1 AND v::watermark_t = 1 AND w = :watermarks OR z >= $1"
        );
        let (my, _) = placeholders(q, Driver::Mysql);
        assert!(my.contains("u > ?") && my.ends_with("z >= ?"), "{my}");
    }

    #[test]
    fn watermarks_are_typed_and_ordered() {
        assert!(matches!(
            WatermarkValue::parse("2026-01-01T00:00:00Z"),
            WatermarkValue::Timestamp(_)
        ));
        assert!(matches!(
            WatermarkValue::parse("2026-01-01T00:00:00.25"),
            WatermarkValue::Naive(_)
        ));
        assert_eq!(WatermarkValue::parse("42"), WatermarkValue::Integer(42));
        assert_eq!(compare_text("9", "10"), Some(Ordering::Less));
        assert_eq!(
            compare_text("2026-01-01T00:00:00.000001Z", "2026-01-01T00:00:00Z"),
            Some(Ordering::Greater)
        );
        assert_eq!(compare_text("2026-01-01T00:00:00Z", "7"), None);
    }
}
