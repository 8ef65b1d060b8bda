//! File imports through `switchboard worker run-once`: a local HTTP server serves the file,
//! the worker stages, validates, maps and coalesces it into a real PostgreSQL table, and
//! leaves its run report in the run state (no cluster here) and the termination message.

mod database_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use database_support::*;

type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// A loopback HTTP server serving `/files/<name>` from the map.
async fn file_server() -> (std::net::SocketAddr, Files) {
    let files: Files = Arc::default();
    let served = files.clone();
    let app = axum::Router::new().route(
        "/files/{name}",
        axum::routing::get(move |axum::extract::Path(name): axum::extract::Path<String>| {
            let served = served.clone();
            async move {
                match served.lock().unwrap().get(&name) {
                    Some(body) => (axum::http::StatusCode::OK, body.clone()),
                    None => (axum::http::StatusCode::NOT_FOUND, b"no such file".to_vec()),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, files)
}

/// An import of `file` (format and extra source settings) into `table`.
fn import_config(
    name: &str,
    server: std::net::SocketAddr,
    file: &str,
    format_settings: &str,
    table: &str,
    creds: &std::path::Path,
) -> String {
    format!(
        r#"{head}source:
  type: file
  fetch:
{endpoint_hr_files}    method: {{name: download, httpMethod: GET, path: /files/{file}}}
{format_settings}
  maxBytes: 1048576
  maxRejectedPercent: 5
transform:
  rowRules:
  - rule: "size(record.Employee_ID) > 0"
    message: Employee_ID is empty
  - rule: "record.Work_Email.matches('^[^@ ]+@acme[.]example$')"
    message: Work_Email is not an acme.example address
  fieldMap:
    employee_id: record.Employee_ID
    name: record.Name
    email: record.Work_Email.lowerAscii()
  coalesceKeys: [employee_id]
targets:
- name: directory
  type: database
{connection}  table: {table}
{creds}"#,
        head = config_head(name),
        endpoint_hr_files = endpoint_yaml("    ", "hr-files", &format!("http://{server}"), 5000),
        connection = postgres_connection_yaml("  "),
        creds = credentials_yaml(creds),
    )
}

fn create_table(table: &str) {
    postgres_sql(&format!(
        "CREATE TABLE {table} (employee_id text PRIMARY KEY, name text NOT NULL, email text NOT NULL)"
    ));
}

fn rows(table: &str) -> String {
    postgres_sql(&format!(
        "SELECT employee_id || '|' || name || '|' || email FROM {table} ORDER BY employee_id"
    ))
}

fn csv_rows(n: usize, bad: usize) -> String {
    let mut csv = String::from("Employee_ID,Name,Work_Email\n");
    for i in 1..=n {
        if i <= bad {
            csv.push_str(&format!("E{i:03},Bad {i},someone{i}@elsewhere.example\n"));
        } else {
            csv.push_str(&format!("E{i:03},Person {i},person{i}@acme.example\n"));
        }
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_coalesces_reports_and_keeps_formulas_as_text() {
    let (server, files) = file_server().await;
    create_table("imp_csv");
    let csv = "Employee_ID,Name,Work_Email\n\
               E1,Ada,ada@acme.example\n\
               E2,\"=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",grace@acme.example\n\
               ,Nobody,nobody@acme.example\n\
               E1,Ada Lovelace,ADA@acme.example\n";
    // 1 of 4 rows rejected is 25 %: over 5 %. First a file within the threshold.
    let mut good = String::from(csv);
    for i in 3..=40 {
        good.push_str(&format!("E{i},P{i},p{i}@acme.example\n"));
    }
    files.lock().unwrap().insert("people.csv".into(), good.into_bytes());
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    let data = tempfile::tempdir().unwrap();
    let config = import_config(
        "hr-import",
        server,
        "people.csv",
        "  format: csv\n  csvDelimiter: \",\"\n  csvHeader: true",
        "imp_csv",
        &dir,
    );

    let run = run_once(&config, data.path());
    assert_eq!(run.code, 0, "{}\n{}", run.message, run.log);
    // 42 rows read; the empty id rejected; E1 twice in the file: one write, the last wins.
    assert!(
        run.message.starts_with("Succeeded: read 42, created 40, updated 0, rejected 1"),
        "{}",
        run.message
    );
    let table = rows("imp_csv");
    assert!(table.contains("E1|Ada Lovelace|ada@acme.example"), "{table}");
    assert!(
        table.contains("E2|=HYPERLINK(\"http://evil.example\",\"x\")|grace@acme.example"),
        "{table}"
    );
    let report = &run_state(data.path())["lastRun"];
    assert_eq!(report["result"], "Succeeded");
    assert_eq!(
        (report["read"].as_u64(), report["created"].as_u64(), report["rejected"].as_u64()),
        (Some(42), Some(40), Some(1))
    );
    assert_eq!(report["rejections"][0]["row"], 3);
    assert_eq!(report["rejections"][0]["reason"], "Employee_ID is empty");

    // The same file again: every row is an update now.
    let run = run_once(&config, data.path());
    assert_eq!(run.code, 0, "{}", run.message);
    assert!(
        run.message.starts_with("Succeeded: read 42, created 0, updated 40, rejected 1"),
        "{}",
        run.message
    );
    for output in [&run.message, &run.log, &run_state(data.path()).to_string()] {
        assert!(!output.contains(CANARY_PASSWORD), "password leaked: {output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rejection_threshold_writes_nothing_when_exceeded() {
    let (server, files) = file_server().await;
    create_table("imp_threshold");
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    // 100 rows: 5 bad is exactly 5 % (allowed), 6 bad is over it.
    files.lock().unwrap().insert("five.csv".into(), csv_rows(100, 5).into_bytes());
    files.lock().unwrap().insert("six.csv".into(), csv_rows(100, 6).into_bytes());
    let settings = "  format: csv";
    let over = run_once(
        &import_config("hr-six", server, "six.csv", settings, "imp_threshold", &dir),
        tempfile::tempdir().unwrap().path(),
    );
    assert_eq!(over.code, 1, "{}", over.message);
    assert!(
        over.message
            .starts_with("RunFailed: TooManyRejected: 6 of 100 rows rejected, more than 5%"),
        "{}",
        over.message
    );
    assert_eq!(rows("imp_threshold"), "", "nothing may be written");
    // The rejections name the rule, not the cell values.
    assert!(over.message.contains("Work_Email is not an acme.example address"), "{}", over.message);
    assert!(!over.message.contains("elsewhere.example"), "{}", over.message);

    let within = run_once(
        &import_config("hr-five", server, "five.csv", settings, "imp_threshold", &dir),
        tempfile::tempdir().unwrap().path(),
    );
    assert_eq!(within.code, 0, "{}", within.message);
    assert!(
        within.message.starts_with("Succeeded: read 100, created 95, updated 0, rejected 5"),
        "{}",
        within.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_json_lines_and_xml_import_alike() {
    let (server, files) = file_server().await;
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    files.lock().unwrap().insert(
        "people.json".into(),
        br#"{"data": {"workers": [
            {"Employee_ID": "J1", "Name": "Ada", "Work_Email": "ada@acme.example"},
            {"Employee_ID": "J2", "Name": "Grace", "Work_Email": "grace@acme.example"}]}}"#
            .to_vec(),
    );
    files.lock().unwrap().insert(
        "people.jsonl".into(),
        b"{\"Employee_ID\": \"L1\", \"Name\": \"Ada\", \"Work_Email\": \"ada@acme.example\"}\n\n{\"Employee_ID\": \"L2\", \"Name\": \"Grace\", \"Work_Email\": \"grace@acme.example\"}\n".to_vec(),
    );
    files.lock().unwrap().insert(
        "people.xml".into(),
        br#"<?xml version="1.0"?><Report><Worker><Employee_ID>X1</Employee_ID><Name>Ada &amp; Co</Name><Work_Email>ada@acme.example</Work_Email></Worker><Worker><Employee_ID>X2</Employee_ID><Name><![CDATA[<Grace>]]></Name><Work_Email>grace@acme.example</Work_Email></Worker></Report>"#
            .to_vec(),
    );
    for (file, settings, table, expected) in [
        (
            "people.json",
            "  format: json\n  recordsPointer: /data/workers",
            "imp_json",
            "J1|Ada|ada@acme.example\nJ2|Grace|grace@acme.example",
        ),
        (
            "people.jsonl",
            "  format: jsonLines",
            "imp_jsonl",
            "L1|Ada|ada@acme.example\nL2|Grace|grace@acme.example",
        ),
        (
            "people.xml",
            "  format: xml\n  recordElement: Worker",
            "imp_xml",
            "X1|Ada & Co|ada@acme.example\nX2|<Grace>|grace@acme.example",
        ),
    ] {
        create_table(table);
        let run = run_once(
            &import_config(table, server, file, settings, table, &dir),
            tempfile::tempdir().unwrap().path(),
        );
        assert_eq!(run.code, 0, "{file}: {}\n{}", run.message, run.log);
        assert_eq!(rows(table), expected, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_files_fail_clearly_and_write_nothing() {
    let (server, files) = file_server().await;
    create_table("imp_bad");
    let creds = tempfile::tempdir().unwrap();
    let dir = credential_dir(creds.path());
    let laughs = format!(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">{}]><Report><Worker><Name>&lol9;</Name></Worker></Report>"#,
        (1..10)
            .map(|i| format!(
                r#"<!ENTITY lol{i} "{}">"#,
                format!("&lol{};", if i == 1 { String::new() } else { (i - 1).to_string() })
                    .repeat(10)
            ))
            .collect::<String>()
    );
    files.lock().unwrap().insert("laughs.xml".into(), laughs.into_bytes());
    files
        .lock()
        .unwrap()
        .insert("broken.xml".into(), b"<Report><Worker><Name>x</Worker></Report>".to_vec());
    files
        .lock()
        .unwrap()
        .insert("broken.json".into(), br#"{"data": [{"Employee_ID": "1""#.to_vec());
    files.lock().unwrap().insert("notarray.json".into(), br#"{"data": {"x": 1}}"#.to_vec());
    files.lock().unwrap().insert("big.csv".into(), vec![b'a'; 2 * 1024 * 1024]);
    for (file, settings, expect) in [
        ("laughs.xml", "  format: xml\n  recordElement: Worker", "DOCTYPE"),
        ("broken.xml", "  format: xml\n  recordElement: Worker", "not well-formed"),
        ("broken.json", "  format: json\n  recordsPointer: /data", "not valid json"),
        ("notarray.json", "  format: json\n  recordsPointer: /data", "not an array"),
        ("big.csv", "  format: csv", "larger than the limit"),
        ("missing.csv", "  format: csv", "HTTP 404"),
    ] {
        let run = run_once(
            &import_config("bad", server, file, settings, "imp_bad", &dir),
            tempfile::tempdir().unwrap().path(),
        );
        assert_eq!(run.code, 1, "{file}: {}", run.message);
        assert!(run.message.contains(expect), "{file}: {}", run.message);
        assert!(!run.log.contains("panicked"), "{file}: {}", run.log);
    }
    // Rows of a CSV file with the wrong number of cells are rejected one by one, not the file.
    files.lock().unwrap().insert(
        "ragged.csv".into(),
        b"Employee_ID,Name,Work_Email\nE1,A\nE2,B,b@acme.example\n".to_vec(),
    );
    let mut config =
        import_config("ragged", server, "ragged.csv", "  format: csv", "imp_bad", &dir);
    config = config.replace("maxRejectedPercent: 5", "maxRejectedPercent: 50");
    let run = run_once(&config, tempfile::tempdir().unwrap().path());
    assert_eq!(run.code, 0, "{}", run.message);
    assert!(
        run.message.contains("rejected 1; first rejection: row 1: has 2 cells, the header has 3"),
        "{}",
        run.message
    );
    assert_eq!(rows("imp_bad"), "E2|B|b@acme.example");
}
