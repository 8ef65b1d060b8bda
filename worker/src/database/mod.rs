//! Database connections of a worker: PostgreSQL and MySQL/MariaDB through sqlx.
//!
//! ```text
//!  DatabaseConnectionConfig { driver, endpoint, credential, tls, caFile }
//!      │ endpoint parsed (driver://host:port/database, no user info)
//!      │ host resolved and checked by the SSRF guard (egress.allowCidrs), like HTTP targets
//!      │ username/password read from the basic Credential's files (re-read on rotation)
//!      ▼
//!  Database (a small lazy pool: acquire/connect/statement timeouts, TLS per mode)
//!      ├─▶ target::DatabaseTarget   insert, or upsert on the coalesce keys → created | updated
//!      └─▶ pull::DatabasePull       SELECT … :watermark in batches → records (JSON objects)
//! ```
//!
//! Identifiers (tables, columns) are validated and quoted; values are always bound
//! parameters. Errors are [`DatabaseError`]s: classified as retryable (connection refused,
//! timeouts, serialization failures, deadlocks) or permanent (constraint violations naming the
//! column or constraint, invalid values, unknown tables), and never carrying a value or a
//! credential: messages are written here from the server's error code and object names, not
//! copied from the server's message (which may quote the offending value).

pub mod pull;
pub mod target;
mod value;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;
use sha2::Digest;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{MySqlPool, PgPool};

use crate::config::{DatabaseConnectionConfig, SecretRole};
use crate::credentials::CredentialStore;
use crate::outbound::egress::EgressPolicy;

/// How long to wait for a pooled connection (or a new one) before giving up.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one statement may run.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Most connections one worker keeps to one database.
pub const MAX_CONNECTIONS: u32 = 4;

/// Why a database operation failed. Never carries a value or a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseError {
    /// The connection settings are invalid (endpoint, driver, TLS mode, identifiers).
    #[error("database config invalid: {0}")]
    Config(String),
    /// The credential files cannot be read.
    #[error("database credential: {0}")]
    Credential(String),
    /// The SSRF guard refused the host.
    #[error("{0}")]
    Egress(String),
    /// Connecting failed, or the connection broke (retryable).
    #[error("database connection failed: {0}")]
    Connection(String),
    /// TLS could not be established or the certificate did not verify.
    #[error("database TLS failed: {0}")]
    Tls(String),
    /// The server refused the user or password.
    #[error("database authentication failed for the configured user")]
    Authentication,
    /// No answer within the timeout (retryable).
    #[error("database did not answer within {0} ms")]
    Timeout(u64),
    /// A transaction conflict: serialization failure or deadlock (retryable).
    #[error("database transaction conflict ({0}); retrying may succeed")]
    Conflict(String),
    /// A constraint refused the row (permanent).
    #[error("constraint violation: {0}")]
    Constraint(String),
    /// A value does not fit its column (permanent).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// The table, a column or the query is wrong (permanent).
    #[error("schema or query error: {0}")]
    Schema(String),
    /// Another server error (permanent), with its code.
    #[error("database error {0}")]
    Other(String),
}

impl DatabaseError {
    /// Short category for metrics, dead letters and run reports.
    pub fn category(&self) -> &'static str {
        match self {
            DatabaseError::Config(_) => "config",
            DatabaseError::Credential(_) => "credential",
            DatabaseError::Egress(_) => "egress",
            DatabaseError::Connection(_) => "connect",
            DatabaseError::Tls(_) => "tls",
            DatabaseError::Authentication => "authentication",
            DatabaseError::Timeout(_) => "timeout",
            DatabaseError::Conflict(_) => "conflict",
            DatabaseError::Constraint(_) => "constraint",
            DatabaseError::InvalidValue(_) => "invalid_value",
            DatabaseError::Schema(_) => "schema",
            DatabaseError::Other(_) => "database",
        }
    }

    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DatabaseError::Connection(_) | DatabaseError::Timeout(_) | DatabaseError::Conflict(_)
        )
    }
}

/// The database engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl Driver {
    fn parse(name: &str) -> Result<Driver, DatabaseError> {
        match name {
            "postgres" => Ok(Driver::Postgres),
            "mysql" => Ok(Driver::Mysql),
            other => Err(DatabaseError::Config(format!(
                "driver {other:?} is not supported (postgres or mysql)"
            ))),
        }
    }

    /// Quote a validated identifier (`schema.table` or `column`) for this engine.
    pub fn quote(self, identifier: &str) -> Result<String, DatabaseError> {
        let parts: Vec<&str> = identifier.split('.').collect();
        if parts.len() > 2 || parts.iter().any(|p| !is_identifier(p)) {
            return Err(DatabaseError::Config(format!(
                "{identifier:?} is not a valid name (letters, digits, _ and $, starting with a letter or _, at most 63 characters; schema.table for tables)"
            )));
        }
        let (open, close) = match self {
            Driver::Postgres => ('"', '"'),
            Driver::Mysql => ('`', '`'),
        };
        Ok(parts.iter().map(|p| format!("{open}{p}{close}")).collect::<Vec<_>>().join("."))
    }
}

/// Whether `name` is a plain SQL identifier we accept (no quoting tricks possible).
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Where a connection goes, parsed from the endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Engine.
    pub driver: Driver,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub database: String,
}

impl Endpoint {
    /// Parse `driver://host:port/database` (no user info, no query).
    pub fn parse(config: &DatabaseConnectionConfig) -> Result<Endpoint, DatabaseError> {
        let driver = Driver::parse(&config.driver)?;
        let url = url::Url::parse(&config.endpoint).map_err(|e| {
            DatabaseError::Config(format!(
                "endpoint is not a URL ({e}); expected driver://host:port/database"
            ))
        })?;
        let scheme = match driver {
            Driver::Postgres => ["postgres", "postgresql"].contains(&url.scheme()),
            Driver::Mysql => ["mysql", "mariadb"].contains(&url.scheme()),
        };
        if !scheme {
            return Err(DatabaseError::Config(format!(
                "endpoint scheme {:?} does not match driver {}",
                url.scheme(),
                config.driver
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DatabaseError::Config(
                "endpoint must not carry a user or password; they come from the credential".into(),
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| DatabaseError::Config("endpoint has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(match driver {
            Driver::Postgres => 5432,
            Driver::Mysql => 3306,
        });
        let database = url.path().trim_start_matches('/').to_string();
        if database.is_empty() || database.contains('/') {
            return Err(DatabaseError::Config(
                "endpoint must name one database: driver://host:port/database".into(),
            ));
        }
        Ok(Endpoint { driver, host, port, database })
    }

    /// The endpoint as shown in logs, lineage and errors (never credentials).
    pub fn display(&self) -> String {
        let scheme = match self.driver {
            Driver::Postgres => "postgres",
            Driver::Mysql => "mysql",
        };
        format!("{scheme}://{}:{}/{}", self.host, self.port, self.database)
    }
}

/// A connection pool of either engine.
#[derive(Clone, Debug)]
pub enum Pool {
    /// PostgreSQL.
    Postgres(PgPool),
    /// MySQL/MariaDB.
    Mysql(MySqlPool),
}

/// One database of a worker: the pool, and what it needs to follow credential rotation.
pub struct Database {
    config: DatabaseConnectionConfig,
    endpoint: Endpoint,
    credentials: CredentialStore,
    policy: Arc<EgressPolicy>,
    state: Mutex<Option<([u8; 32], Pool)>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("endpoint", &self.endpoint.display())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Set up (nothing is connected yet): checks the endpoint, the TLS mode and that the
    /// credential is a basic one.
    pub fn new(
        config: &DatabaseConnectionConfig,
        credentials: CredentialStore,
        policy: Arc<EgressPolicy>,
    ) -> Result<Database, DatabaseError> {
        let endpoint = Endpoint::parse(config)?;
        if !["disable", "require", "verifyFull"].contains(&config.tls.as_str()) {
            return Err(DatabaseError::Config(format!(
                "tls {:?} is not one of disable, require, verifyFull",
                config.tls
            )));
        }
        let credential = credentials
            .get(&config.credential)
            .map_err(|e| DatabaseError::Credential(e.to_string()))?;
        if credential.type_name() != "basic" {
            return Err(DatabaseError::Credential(format!(
                "credential {:?} has type {}, a database needs a basic credential",
                config.credential,
                credential.type_name()
            )));
        }
        Ok(Database {
            config: config.clone(),
            endpoint,
            credentials,
            policy,
            state: Mutex::new(None),
        })
    }

    /// The parsed endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The engine.
    pub fn driver(&self) -> Driver {
        self.endpoint.driver
    }

    /// The pool, after checking the host against the SSRF guard and (re)building the
    /// connect options when the credential files changed.
    pub async fn pool(&self) -> Result<Pool, DatabaseError> {
        self.check_egress().await?;
        let credential = self
            .credentials
            .get(&self.config.credential)
            .map_err(|e| DatabaseError::Credential(e.to_string()))?;
        let username = credential
            .text(SecretRole::Username)
            .map_err(|e| DatabaseError::Credential(e.to_string()))?;
        let password = credential
            .text(SecretRole::Password)
            .map_err(|e| DatabaseError::Credential(e.to_string()))?;
        let mut hasher = sha2::Sha256::new();
        hasher.update(username.expose_secret().as_bytes());
        hasher.update([0]);
        hasher.update(password.expose_secret().as_bytes());
        let fingerprint: [u8; 32] = hasher.finalize().into();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, pool)) = state.as_ref() {
            if *known == fingerprint {
                return Ok(pool.clone());
            }
            // Rotation: new connections use the new password; pooled ones keep working
            // until they are closed.
            self.set_options(pool, username.expose_secret(), password.expose_secret())?;
            let pool = pool.clone();
            *state = Some((fingerprint, pool.clone()));
            return Ok(pool);
        }
        let pool = self.build(username.expose_secret(), password.expose_secret())?;
        *state = Some((fingerprint, pool.clone()));
        Ok(pool)
    }

    async fn check_egress(&self) -> Result<(), DatabaseError> {
        let host = &self.endpoint.host;
        let literal = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        let url = url::Url::parse(&format!("tcp://{literal}:{}", self.endpoint.port))
            .map_err(|e| DatabaseError::Config(format!("endpoint host: {e}")))?;
        self.policy.check_url(&url).await.map_err(|e| match e {
            crate::outbound::egress::EgressError::Resolve { .. } => {
                DatabaseError::Connection(e.to_string())
            }
            other => DatabaseError::Egress(other.to_string()),
        })
    }

    fn postgres_options(
        &self,
        username: &str,
        password: &str,
    ) -> Result<PgConnectOptions, DatabaseError> {
        let mode = match self.config.tls.as_str() {
            "disable" => PgSslMode::Disable,
            "require" => PgSslMode::Require,
            _ => PgSslMode::VerifyFull,
        };
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&self.endpoint.host)
            .port(self.endpoint.port)
            .database(&self.endpoint.database)
            .username(username)
            .password(password)
            .ssl_mode(mode)
            .application_name("switchboard-worker")
            .options([("statement_timeout", STATEMENT_TIMEOUT.as_millis().to_string())]);
        if let Some(ca) = &self.config.ca_file {
            options = options.ssl_root_cert(ca);
        }
        Ok(options)
    }

    fn mysql_options(
        &self,
        username: &str,
        password: &str,
    ) -> Result<MySqlConnectOptions, DatabaseError> {
        let mode = match self.config.tls.as_str() {
            "disable" => MySqlSslMode::Disabled,
            "require" => MySqlSslMode::Required,
            _ => MySqlSslMode::VerifyIdentity,
        };
        let mut options = MySqlConnectOptions::new()
            .host(&self.endpoint.host)
            .port(self.endpoint.port)
            .database(&self.endpoint.database)
            .username(username)
            .password(password)
            .ssl_mode(mode)
            .charset("utf8mb4")
            .timezone(Some("+00:00".to_string()));
        if let Some(ca) = &self.config.ca_file {
            options = options.ssl_ca(ca);
        }
        Ok(options)
    }

    fn build(&self, username: &str, password: &str) -> Result<Pool, DatabaseError> {
        Ok(match self.endpoint.driver {
            Driver::Postgres => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .min_connections(0)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .idle_timeout(Duration::from_secs(60))
                    .test_before_acquire(true)
                    .connect_lazy_with(self.postgres_options(username, password)?),
            ),
            Driver::Mysql => Pool::Mysql(
                MySqlPoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .min_connections(0)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .idle_timeout(Duration::from_secs(60))
                    .test_before_acquire(true)
                    .connect_lazy_with(self.mysql_options(username, password)?),
            ),
        })
    }

    fn set_options(
        &self,
        pool: &Pool,
        username: &str,
        password: &str,
    ) -> Result<(), DatabaseError> {
        match pool {
            Pool::Postgres(pool) => {
                pool.set_connect_options(self.postgres_options(username, password)?)
            }
            Pool::Mysql(pool) => pool.set_connect_options(self.mysql_options(username, password)?),
        }
        Ok(())
    }

    /// Close the pool's connections.
    pub async fn close(&self) {
        let pool = self.state.lock().unwrap_or_else(|p| p.into_inner()).take();
        match pool {
            Some((_, Pool::Postgres(pool))) => pool.close().await,
            Some((_, Pool::Mysql(pool))) => pool.close().await,
            None => {}
        }
    }
}

/// Run `future` under [`STATEMENT_TIMEOUT`].
pub(crate) async fn with_timeout<T>(
    future: impl Future<Output = Result<T, sqlx::Error>>,
    driver: Driver,
) -> Result<T, DatabaseError> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, future).await {
        Ok(result) => result.map_err(|e| classify(&e, driver)),
        Err(_) => Err(DatabaseError::Timeout(STATEMENT_TIMEOUT.as_millis() as u64)),
    }
}

/// Classify a sqlx error without copying any value from the server's message.
pub fn classify(error: &sqlx::Error, driver: Driver) -> DatabaseError {
    match error {
        sqlx::Error::Configuration(e) => DatabaseError::Config(first_line(&e.to_string())),
        sqlx::Error::Tls(e) => DatabaseError::Tls(first_line(&e.to_string())),
        sqlx::Error::Io(e) => {
            match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                // A certificate that does not verify is not going to verify on the next attempt.
                Some(tls) => DatabaseError::Tls(first_line(&tls.to_string())),
                None => DatabaseError::Connection(e.kind().to_string()),
            }
        }
        sqlx::Error::PoolTimedOut => DatabaseError::Connection(format!(
            "no connection within {} s",
            ACQUIRE_TIMEOUT.as_secs()
        )),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            DatabaseError::Connection("the connection pool is closed".into())
        }
        sqlx::Error::Protocol(message) => DatabaseError::Connection(first_line(message)),
        sqlx::Error::Database(db) => match driver {
            Driver::Postgres => match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                Some(pg) => classify_postgres(pg),
                None => DatabaseError::Other(db.code().map(|c| c.to_string()).unwrap_or_default()),
            },
            Driver::Mysql => match db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                Some(my) => classify_mysql(my.number(), my.message()),
                None => DatabaseError::Other(db.code().map(|c| c.to_string()).unwrap_or_default()),
            },
        },
        sqlx::Error::ColumnDecode { index, .. } => {
            DatabaseError::Schema(format!("column {index} cannot be decoded"))
        }
        other => DatabaseError::Other(first_line(&other.to_string())),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(200).collect()
}

fn classify_postgres(pg: &sqlx::postgres::PgDatabaseError) -> DatabaseError {
    let code = pg.code();
    let named = |what: &str| -> String {
        let mut parts = Vec::new();
        if let Some(column) = pg.column() {
            parts.push(format!("column {column:?}"));
        }
        if let Some(constraint) = pg.constraint() {
            parts.push(format!("constraint {constraint:?}"));
        }
        if let Some(table) = pg.table() {
            parts.push(format!("table {table:?}"));
        }
        if parts.is_empty() {
            format!("{what} (SQLSTATE {code})")
        } else {
            format!("{what} on {} (SQLSTATE {code})", parts.join(", "))
        }
    };
    match code {
        "40001" => DatabaseError::Conflict("serialization failure".into()),
        "40P01" => DatabaseError::Conflict("deadlock".into()),
        "55P03" => DatabaseError::Conflict("lock not available".into()),
        "57014" => DatabaseError::Timeout(STATEMENT_TIMEOUT.as_millis() as u64),
        "23502" => DatabaseError::Constraint(named("a required value is missing")),
        "23505" => DatabaseError::Constraint(named("a unique value is duplicated")),
        "23503" => DatabaseError::Constraint(named("a foreign key has no match")),
        "23514" => DatabaseError::Constraint(named("a check failed")),
        c if c.starts_with("23") => DatabaseError::Constraint(named("integrity rule violated")),
        c if c.starts_with("28") => DatabaseError::Authentication,
        c if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") => {
            DatabaseError::Connection(format!("server unavailable (SQLSTATE {c})"))
        }
        c if c.starts_with("22") => {
            DatabaseError::InvalidValue(named("a value does not fit its column's type"))
        }
        // Syntax and undefined objects: the server's message names objects, not values.
        c if c.starts_with("42") || c.starts_with("3F") || c.starts_with("3D") => {
            DatabaseError::Schema(format!("{} (SQLSTATE {c})", first_line(pg.message())))
        }
        c => DatabaseError::Other(format!("SQLSTATE {c}")),
    }
}

/// The quoted name after `marker` in a MySQL message (`for key 'name'`, `Column 'name'`).
fn quoted_after(message: &str, marker: &str) -> Option<String> {
    let start = message.rfind(marker)? + marker.len();
    let rest = message[start..].trim_start();
    let quote = rest.chars().next().filter(|c| ['\'', '`', '"'].contains(c))?;
    let name: String = rest[1..].chars().take_while(|c| *c != quote).take(128).collect();
    Some(name)
}

fn classify_mysql(number: u16, message: &str) -> DatabaseError {
    let column = || quoted_after(message, "column").or_else(|| quoted_after(message, "Column"));
    let name = |what: &str, object: Option<(&str, String)>| match object {
        Some((kind, name)) => format!("{what} on {kind} {name:?} (error {number})"),
        None => format!("{what} (error {number})"),
    };
    match number {
        1213 => DatabaseError::Conflict("deadlock".into()),
        1205 => DatabaseError::Conflict("lock wait timeout".into()),
        1062 | 1586 => DatabaseError::Constraint(name(
            "a unique value is duplicated",
            quoted_after(message, "for key").map(|k| ("key", k)),
        )),
        1048 | 1364 => DatabaseError::Constraint(name(
            "a required value is missing",
            column().map(|c| ("column", c)),
        )),
        1451 | 1452 | 1216 | 1217 => DatabaseError::Constraint(name(
            "a foreign key has no match",
            quoted_after(message, "CONSTRAINT").map(|c| ("constraint", c)),
        )),
        3819 | 4025 => DatabaseError::Constraint(name(
            "a check failed",
            quoted_after(message, "constraint").map(|c| ("constraint", c)),
        )),
        1264 | 1265 | 1292 | 1366 | 1406 | 1367 | 4078 => DatabaseError::InvalidValue(name(
            "a value does not fit its column's type",
            column().map(|c| ("column", c)),
        )),
        1044 | 1045 | 1698 => DatabaseError::Authentication,
        1040 | 1053 | 1927 | 2002 | 2003 | 2006 | 2013 => {
            DatabaseError::Connection(format!("server unavailable (error {number})"))
        }
        3024 => DatabaseError::Timeout(STATEMENT_TIMEOUT.as_millis() as u64),
        1146 | 1054 | 1064 | 1049 | 1142 | 1143 => {
            // These messages name tables, columns or show the query text, never row values.
            DatabaseError::Schema(format!("{} (error {number})", first_line(message)))
        }
        n => DatabaseError::Other(format!("error {n}")),
    }
}

impl FromStr for Driver {
    type Err = DatabaseError;
    fn from_str(s: &str) -> Result<Driver, DatabaseError> {
        Driver::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(endpoint: &str) -> DatabaseConnectionConfig {
        DatabaseConnectionConfig {
            driver: endpoint.split(':').next().unwrap().into(),
            endpoint: endpoint.into(),
            credential: "db".into(),
            tls: "verifyFull".into(),
            ca_file: None,
        }
    }

    #[test]
    fn endpoints_parse_without_credentials() {
        let e = Endpoint::parse(&connection("postgres://db.example:6543/hr")).unwrap();
        assert_eq!((e.host.as_str(), e.port, e.database.as_str()), ("db.example", 6543, "hr"));
        let e = Endpoint::parse(&connection("mysql://db.example/crm")).unwrap();
        assert_eq!(e.port, 3306);
        for bad in ["postgres://u:p@db/hr", "postgres://db:5432", "postgres://db/a/b", "nope"] {
            assert!(Endpoint::parse(&connection(bad)).is_err(), "{bad}");
        }
        let mut c = connection("postgres://db/hr");
        c.driver = "mysql".into();
        assert!(Endpoint::parse(&c).is_err());
    }

    #[test]
    fn identifiers_are_validated_and_quoted() {
        assert_eq!(Driver::Postgres.quote("people.employees").unwrap(), r#""people"."employees""#);
        assert_eq!(Driver::Mysql.quote("employee_id").unwrap(), "`employee_id`");
        for bad in ["a;drop", "x\"y", "a.b.c", "", "1abc", "a b", "a`b", &"x".repeat(64)] {
            assert!(Driver::Postgres.quote(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mysql_messages_give_names_not_values() {
        let e = classify_mysql(1062, "Duplicate entry 'secret-value' for key 'employees.email'");
        assert_eq!(e.category(), "constraint");
        assert!(e.to_string().contains("employees.email"), "{e}");
        assert!(!e.to_string().contains("secret-value"), "{e}");
        let e = classify_mysql(1366, "Incorrect integer value: 'abc' for column `age` at row 1");
        assert!(e.to_string().contains("\"age\"") && !e.to_string().contains("abc"), "{e}");
        assert!(classify_mysql(1213, "Deadlock found").is_retryable());
        assert!(!classify_mysql(1048, "Column 'name' cannot be null").is_retryable());
    }
}
