//! Database targets against real PostgreSQL and MariaDB servers on loopback: upserts report
//! created and updated, constraint violations are permanent and name the column, values
//! that look like SQL land as data, TLS modes are honoured, and the password never shows.

mod database_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use database_support::*;
use serde_json::json;
use switchboard_worker::config::{CredentialConfig, DatabaseConnectionConfig, EgressConfig};
use switchboard_worker::credentials::CredentialStore;
use switchboard_worker::database::target::{DatabaseTarget, RowWrite};
use switchboard_worker::database::{Database, DatabaseError};
use switchboard_worker::outbound::egress::EgressPolicy;
use switchboard_worker::transform::Variables;

fn connection(
    driver: &str,
    port: u16,
    tls: &str,
    ca: Option<&std::path::Path>,
) -> DatabaseConnectionConfig {
    DatabaseConnectionConfig {
        driver: driver.into(),
        endpoint: format!("{driver}://127.0.0.1:{port}/{DATABASE}"),
        credential: "db".into(),
        tls: tls.into(),
        ca_file: ca.map(|p| p.display().to_string()),
    }
}

fn database(
    connection: &DatabaseConnectionConfig,
    credential_dir: &std::path::Path,
    allow_loopback: bool,
) -> Database {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let credentials = BTreeMap::from([(
        "db".to_string(),
        CredentialConfig {
            type_: "basic".into(),
            directory: credential_dir.display().to_string(),
            api_key: None,
            oauth2: None,
            hmac: None,
        },
    )]);
    let egress = EgressConfig {
        allow_cidrs: if allow_loopback { vec!["127.0.0.0/8".into()] } else { vec![] },
    };
    Database::new(
        connection,
        CredentialStore::new(&credentials).unwrap(),
        Arc::new(EgressPolicy::new(&egress).unwrap()),
    )
    .unwrap()
}

fn vars(value: serde_json::Value) -> Variables {
    serde_json::from_value(value).unwrap()
}

fn target(db: Database, table: &str, columns: &[&str], keys: &[&str]) -> DatabaseTarget {
    DatabaseTarget::new(
        db,
        table,
        columns.iter().map(|c| c.to_string()).collect(),
        keys.iter().map(|c| c.to_string()).collect(),
    )
    .unwrap()
}

fn assert_no_canary(text: &str) {
    assert!(!text.contains(CANARY_PASSWORD), "the password leaked: {text}");
}

const INJECTION: &str = "x'); DROP TABLE people; --";

#[tokio::test]
async fn postgres_upserts_on_coalesce_keys_and_reports_created_and_updated() {
    let server = postgres();
    postgres_sql(
        "CREATE TABLE pg_people (employee_id text PRIMARY KEY, name text NOT NULL, age integer, \
         start_date date, active boolean, tags jsonb)",
    );
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    let db = database(
        &connection("postgres", server.port, "verifyFull", Some(&server.ca_file)),
        &dir,
        true,
    );
    let people = target(
        db,
        "pg_people",
        &["employee_id", "name", "age", "start_date", "active", "tags"],
        &["employee_id"],
    );
    let row = |id: &str, name: &str| {
        vars(
            json!({"employee_id": id, "name": name, "age": "41", "start_date": "2020-02-29", "active": true, "tags": ["a"]}),
        )
    };
    assert_eq!(people.write(&row("E1", "Ada")).await.unwrap(), RowWrite::Created);
    assert_eq!(people.write(&row("E2", INJECTION)).await.unwrap(), RowWrite::Created);
    assert_eq!(people.write(&row("E1", "Ada Lovelace")).await.unwrap(), RowWrite::Updated);
    // An unchanged row is still an update, not a creation.
    assert_eq!(people.write(&row("E1", "Ada Lovelace")).await.unwrap(), RowWrite::Updated);
    assert_eq!(
        postgres_sql(
            "SELECT employee_id || '|' || name || '|' || age || '|' || start_date || '|' || active || '|' || tags::text FROM pg_people ORDER BY employee_id"
        ),
        format!(
            "E1|Ada Lovelace|41|2020-02-29|true|[\"a\"]\nE2|{INJECTION}|41|2020-02-29|true|[\"a\"]"
        )
    );

    // NOT NULL: permanent, names the column, never the value.
    let err = people.write(&vars(json!({"employee_id": "E3", "name": null}))).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.category(), "constraint");
    assert!(err.to_string().contains("\"name\""), "{err}");
    // A value that does not fit its type: permanent, without the value.
    let err = people
        .write(&vars(json!({"employee_id": "E4", "name": "n", "age": "secret-not-a-number"})))
        .await
        .unwrap_err();
    assert_eq!(err.category(), "invalid_value", "{err}");
    assert!(!err.to_string().contains("secret-not-a-number"), "{err}");
    assert_no_canary(&format!("{err} {err:?} {people:?}"));
}

#[tokio::test]
async fn postgres_tls_modes_and_failures_are_classified_without_the_password() {
    let server = postgres();
    postgres_sql("CREATE TABLE IF NOT EXISTS pg_tls (id integer PRIMARY KEY)");
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    for (i, tls) in ["disable", "require"].iter().enumerate() {
        let t = target(
            database(&connection("postgres", server.port, tls, None), &dir, true),
            "pg_tls",
            &["id"],
            &["id"],
        );
        assert_eq!(t.write(&vars(json!({"id": i}))).await.unwrap(), RowWrite::Created, "{tls}");
    }
    // verifyFull without the private CA: the server's certificate is not trusted.
    let t = target(
        database(&connection("postgres", server.port, "verifyFull", None), &dir, true),
        "pg_tls",
        &["id"],
        &[],
    );
    let err = t.write(&vars(json!({"id": 9}))).await.unwrap_err();
    assert_eq!(err.category(), "tls", "{err}");

    // The SSRF guard applies to database hosts as to HTTP targets.
    let t = target(
        database(&connection("postgres", server.port, "disable", None), &dir, false),
        "pg_tls",
        &["id"],
        &[],
    );
    let err = t.write(&vars(json!({"id": 9}))).await.unwrap_err();
    assert_eq!(err.category(), "egress", "{err}");

    // A wrong password: authentication, permanent, and neither password shows.
    std::fs::write(dir.join("password"), format!("{CANARY_PASSWORD}-wrong")).unwrap();
    let t = target(
        database(&connection("postgres", server.port, "disable", None), &dir, true),
        "pg_tls",
        &["id"],
        &[],
    );
    let err = t.write(&vars(json!({"id": 9}))).await.unwrap_err();
    assert_eq!(err, DatabaseError::Authentication);
    assert_no_canary(&format!("{err} {err:?}"));

    // Nobody listening: a connection failure, retryable.
    let closed = free_port();
    let t = target(
        database(&connection("postgres", closed, "disable", None), &dir, true),
        "pg_tls",
        &["id"],
        &[],
    );
    let err = t.write(&vars(json!({"id": 9}))).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_no_canary(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn postgres_unknown_tables_and_columns_are_named() {
    let server = postgres();
    postgres_sql("CREATE TABLE IF NOT EXISTS pg_known (id integer PRIMARY KEY)");
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    let conn = connection("postgres", server.port, "disable", None);
    let err = target(database(&conn, &dir, true), "pg_missing", &["id"], &[])
        .write(&vars(json!({"id": 1})))
        .await
        .unwrap_err();
    assert_eq!(err.category(), "schema");
    assert!(err.to_string().contains("pg_missing"), "{err}");
    let err = target(database(&conn, &dir, true), "pg_known", &["id", "nope"], &[])
        .write(&vars(json!({"id": 1})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"nope\""), "{err}");
    // Identifiers are validated before any SQL exists.
    assert!(
        DatabaseTarget::new(
            database(&conn, &dir, true),
            "t; DROP TABLE x",
            vec!["id".into()],
            vec![]
        )
        .is_err()
    );
    assert!(
        DatabaseTarget::new(database(&conn, &dir, true), "t", vec!["a\"b".into()], vec![]).is_err()
    );
}

#[tokio::test]
async fn mariadb_upserts_report_created_and_updated_and_constraints_name_the_column() {
    let server = mariadb();
    mariadb_sql(
        "CREATE TABLE my_people (employee_id varchar(32) PRIMARY KEY, name varchar(200) NOT NULL, \
         age int, email varchar(200) UNIQUE, start_date date)",
    );
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    let db = database(
        &connection("mysql", server.port, "verifyFull", Some(&server.ca_file)),
        &dir,
        true,
    );
    let people = target(
        db,
        "my_people",
        &["employee_id", "name", "age", "email", "start_date"],
        &["employee_id"],
    );
    let row = |id: &str, name: &str, email: &str| {
        vars(
            json!({"employee_id": id, "name": name, "age": 30, "email": email, "start_date": "2021-03-04"}),
        )
    };
    assert_eq!(people.write(&row("E1", "Ada", "ada@x")).await.unwrap(), RowWrite::Created);
    assert_eq!(people.write(&row("E2", INJECTION, "e2@x")).await.unwrap(), RowWrite::Created);
    assert_eq!(people.write(&row("E1", "Ada L", "ada@x")).await.unwrap(), RowWrite::Updated);
    assert_eq!(people.write(&row("E1", "Ada L", "ada@x")).await.unwrap(), RowWrite::Updated);
    assert_eq!(
        mariadb_sql(
            "SELECT CONCAT_WS('|', employee_id, name, age, start_date) FROM my_people ORDER BY employee_id"
        ),
        format!("E1|Ada L|30|2021-03-04\nE2|{INJECTION}|30|2021-03-04")
    );
    let err = people.write(&row("E3", "Eve", "ada@x")).await.unwrap_err();
    assert_eq!(err.category(), "constraint", "{err}");
    assert!(err.to_string().contains("email"), "{err}");
    assert!(!err.to_string().contains("ada@x"), "{err}");
    let err = people.write(&vars(json!({"employee_id": "E4", "name": null}))).await.unwrap_err();
    assert!(err.to_string().contains("\"name\""), "{err}");
    assert!(!err.is_retryable());

    // TLS off and on without verification work; verifyFull without the CA does not.
    for tls in ["disable", "require"] {
        let t = target(
            database(&connection("mysql", server.port, tls, None), &dir, true),
            "my_people",
            &["employee_id", "name"],
            &["employee_id"],
        );
        t.write(&vars(json!({"employee_id": format!("T-{tls}"), "name": "t"}))).await.unwrap();
    }
    let t = target(
        database(&connection("mysql", server.port, "verifyFull", None), &dir, true),
        "my_people",
        &["employee_id", "name"],
        &[],
    );
    let err = t.write(&vars(json!({"employee_id": "T-v", "name": "t"}))).await.unwrap_err();
    assert_eq!(err.category(), "tls", "{err}");
    std::fs::write(dir.join("password"), "wrong").unwrap();
    let t = target(
        database(&connection("mysql", server.port, "disable", None), &dir, true),
        "my_people",
        &["employee_id", "name"],
        &[],
    );
    let err = t.write(&vars(json!({"employee_id": "T-w", "name": "t"}))).await.unwrap_err();
    assert_eq!(err, DatabaseError::Authentication);
    assert_no_canary(&format!("{err} {err:?}"));
}
