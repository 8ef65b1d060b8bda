//! A database table as a target: one row per event or record, inserted, or upserted on the
//! transform's coalesce keys.
//!
//! ```text
//!  variables (fieldMap name → JSON value)          the names are the columns
//!    PostgreSQL: INSERT INTO "s"."t" ("a","b") VALUES (CAST($1 AS <type of a>), …)
//!                ON CONFLICT ("key") DO UPDATE SET "a" = EXCLUDED."a", …
//!                RETURNING (xmax = 0)                       true: created, false: updated
//!    MySQL:      BEGIN; SELECT 1 … WHERE `key` <=> ? FOR UPDATE
//!                found:     UPDATE `t` SET `a` = ?, … WHERE `key` <=> ?      → updated
//!                not found: INSERT INTO `t` (`a`,`b`) VALUES (?, ?)          → created
//!                COMMIT
//! ```
//!
//! Values are always bound, as text (PostgreSQL casts them to each column's type, read once
//! from the catalog) or as typed values (MySQL converts them itself); a value never becomes
//! SQL text. The coalesce keys need a unique index or primary key on those columns.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::Row;
use tokio::sync::OnceCell;

use super::{Database, DatabaseError, Driver, Pool, classify, with_timeout};
use crate::config::RetryConfig;
use crate::transform::Variables;

/// What one write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowWrite {
    /// A new row.
    Created,
    /// An existing row, found by the coalesce keys.
    Updated,
}

/// A table target.
#[derive(Debug)]
pub struct DatabaseTarget {
    database: Database,
    table: String,
    quoted_table: String,
    columns: Vec<String>,
    keys: Vec<String>,
    statement: OnceCell<String>,
}

impl DatabaseTarget {
    /// A target writing `columns` (the field map's names) into `table`, upserting on `keys`.
    pub fn new(
        database: Database,
        table: &str,
        columns: Vec<String>,
        keys: Vec<String>,
    ) -> Result<DatabaseTarget, DatabaseError> {
        let driver = database.driver();
        let quoted_table = driver.quote(table)?;
        if columns.is_empty() {
            return Err(DatabaseError::Config(
                "a database target needs transform.fieldMap: its names are the table's columns"
                    .into(),
            ));
        }
        for column in columns.iter().chain(&keys) {
            if column.contains('.') {
                return Err(DatabaseError::Config(format!("{column:?} is not a column name")));
            }
            driver.quote(column)?;
        }
        for key in &keys {
            if !columns.contains(key) {
                return Err(DatabaseError::Config(format!(
                    "coalesce key {key:?} is not a fieldMap name, so no column carries it"
                )));
            }
        }
        Ok(DatabaseTarget {
            database,
            table: table.to_string(),
            quoted_table,
            columns,
            keys,
            statement: OnceCell::new(),
        })
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The table as configured.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Write one row, retrying retryable failures per `retry`; the result and the number of
    /// attempts made.
    pub async fn write_with_retry(
        &self,
        vars: &Variables,
        retry: &RetryConfig,
    ) -> (Result<RowWrite, DatabaseError>, u32) {
        let max = retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            match self.write(vars).await {
                Err(e) if e.is_retryable() && attempt < max => {
                    let delay = crate::delivery::backoff_delay(retry, attempt, None);
                    tracing::info!(table = %self.table, attempt, error = %e, delay_ms = delay.as_millis() as u64,
                        "database write failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                result => return (result, attempt),
            }
        }
    }

    /// Write one row (one attempt).
    pub async fn write(&self, vars: &Variables) -> Result<RowWrite, DatabaseError> {
        let pool = self.database.pool().await?;
        let values: Vec<&Value> =
            self.columns.iter().map(|c| vars.get(c).unwrap_or(&Value::Null)).collect();
        match pool {
            Pool::Postgres(pool) => {
                let sql = self
                    .statement
                    .get_or_try_init(|| async { self.postgres_statement(&pool).await })
                    .await?;
                // Built from validated, quoted identifiers and catalog type names only.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for value in &values {
                    query = query.bind(text_of(value));
                }
                let row = with_timeout(query.fetch_one(&pool), Driver::Postgres).await?;
                let inserted: bool = row.try_get(0).map_err(|e| classify(&e, Driver::Postgres))?;
                Ok(if inserted { RowWrite::Created } else { RowWrite::Updated })
            }
            Pool::Mysql(pool) => self.write_mysql(&pool, &values).await,
        }
    }

    /// The statement, with each column's type read from the catalog (and the table and its
    /// columns checked to exist, with errors that name them).
    async fn postgres_statement(&self, pool: &sqlx::PgPool) -> Result<String, DatabaseError> {
        let rows = with_timeout(
            sqlx::query(
                "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) \
                 FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            )
            .bind(&self.quoted_table)
            .fetch_all(pool),
            Driver::Postgres,
        )
        .await?;
        let types: BTreeMap<String, String> = rows
            .iter()
            .filter_map(|r| {
                Some((r.try_get::<String, _>(0).ok()?, r.try_get::<String, _>(1).ok()?))
            })
            .collect();
        if types.is_empty() {
            return Err(DatabaseError::Schema(format!(
                "table {:?} does not exist or is not visible to the configured user",
                self.table
            )));
        }
        let q = |c: &str| Driver::Postgres.quote(c);
        let mut names = Vec::new();
        let mut params = Vec::new();
        for (i, column) in self.columns.iter().enumerate() {
            let type_name = types.get(column).ok_or_else(|| {
                DatabaseError::Schema(format!("table {:?} has no column {column:?}", self.table))
            })?;
            names.push(q(column)?);
            params.push(format!("CAST(${} AS {type_name})", i + 1));
        }
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.quoted_table,
            names.join(", "),
            params.join(", ")
        );
        if self.keys.is_empty() {
            sql.push_str(" RETURNING true");
        } else {
            let keys = self.keys.iter().map(|k| q(k)).collect::<Result<Vec<_>, _>>()?;
            let updates = self
                .columns
                .iter()
                .filter(|c| !self.keys.contains(c))
                .chain(self.columns.iter().filter(|c| self.keys.contains(c)).take(
                    // With only key columns, "update" one of them to itself so that the
                    // statement still returns the row.
                    usize::from(self.columns.iter().all(|c| self.keys.contains(c))),
                ))
                .map(|c| q(c).map(|c| format!("{c} = EXCLUDED.{c}")))
                .collect::<Result<Vec<_>, _>>()?;
            sql.push_str(&format!(
                " ON CONFLICT ({}) DO UPDATE SET {} RETURNING (xmax = 0)",
                keys.join(", "),
                updates.join(", ")
            ));
        }
        Ok(sql)
    }

    async fn write_mysql(
        &self,
        pool: &sqlx::MySqlPool,
        values: &[&Value],
    ) -> Result<RowWrite, DatabaseError> {
        let q = |c: &str| Driver::Mysql.quote(c);
        let names = self.columns.iter().map(|c| q(c)).collect::<Result<Vec<_>, _>>()?;
        let key_value = |key: &String| {
            values[self.columns.iter().position(|c| c == key).expect("keys are columns")]
        };
        let mut tx = with_timeout(pool.begin(), Driver::Mysql).await?;
        let mut existed = false;
        let mut condition = String::new();
        if !self.keys.is_empty() {
            condition = self
                .keys
                .iter()
                .map(|k| q(k).map(|k| format!("{k} <=> ?")))
                .collect::<Result<Vec<_>, _>>()?
                .join(" AND ");
            // The lock (a gap lock when no row matches) keeps a concurrent writer of the same
            // keys out until commit, so "found" stays true for the statement below.
            let select =
                format!("SELECT 1 FROM {} WHERE {condition} LIMIT 1 FOR UPDATE", self.quoted_table);
            let mut query = sqlx::query(sqlx::AssertSqlSafe(select));
            for key in &self.keys {
                query = bind_mysql(query, key_value(key));
            }
            existed = with_timeout(query.fetch_optional(&mut *tx), Driver::Mysql).await?.is_some();
        }
        // Not `ON DUPLICATE KEY UPDATE`: MySQL applies it to *any* unique index, so a duplicate
        // in another unique column would silently rewrite someone else's row (keys included).
        // Updating by the coalesce keys leaves other unique columns to fail as constraints.
        let others: Vec<usize> =
            (0..self.columns.len()).filter(|i| !self.keys.contains(&self.columns[*i])).collect();
        if existed && !others.is_empty() {
            let set = others.iter().map(|i| format!("{} = ?", names[*i])).collect::<Vec<_>>();
            let update =
                format!("UPDATE {} SET {} WHERE {condition}", self.quoted_table, set.join(", "));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(update));
            for i in &others {
                query = bind_mysql(query, values[*i]);
            }
            for key in &self.keys {
                query = bind_mysql(query, key_value(key));
            }
            with_timeout(query.execute(&mut *tx), Driver::Mysql).await?;
        } else if !existed {
            let marks = vec!["?"; names.len()].join(", ");
            let insert = format!(
                "INSERT INTO {} ({}) VALUES ({marks})",
                self.quoted_table,
                names.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(insert));
            for value in values {
                query = bind_mysql(query, value);
            }
            with_timeout(query.execute(&mut *tx), Driver::Mysql).await?;
        }
        with_timeout(tx.commit(), Driver::Mysql).await?;
        Ok(if existed { RowWrite::Updated } else { RowWrite::Created })
    }
}

/// A value as the text PostgreSQL casts to the column's type (`None` for SQL NULL).
fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn bind_mysql<'q>(
    query: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    value: &Value,
) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    match value {
        Value::Null => query.bind(None::<String>),
        Value::Bool(b) => query.bind(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => query.bind(i),
            (None, Some(u)) => query.bind(u),
            _ => query.bind(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => query.bind(s.clone()),
        other => query.bind(other.to_string()),
    }
}
