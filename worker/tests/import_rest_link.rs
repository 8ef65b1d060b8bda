//! REST pulls with RFC 8288 `link` pagination through `switchboard worker run-once`: every
//! `rel="next"` page on the same host is followed (query values passed as they are), and a
//! link to another host fails the run instead of being followed.

mod database_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use database_support::*;

type Seen = Arc<Mutex<Vec<String>>>;

/// `/api/items?page=N` (3 pages, linked), `/evil/items` (links to another host), `POST /sink`.
async fn source() -> (std::net::SocketAddr, Seen, Seen) {
    let pages: Seen = Arc::default();
    let delivered: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (p, d) = (pages.clone(), delivered.clone());
    let app = axum::Router::new()
        .route(
            "/api/items",
            axum::routing::get(move |axum::extract::RawQuery(q): axum::extract::RawQuery| {
                let p = p.clone();
                async move {
                    let q = q.unwrap_or_default();
                    p.lock().unwrap().push(q.clone());
                    let params: BTreeMap<String, String> =
                        url::form_urlencoded::parse(q.as_bytes()).into_owned().collect();
                    let page: u32 = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                    let items: Vec<serde_json::Value> =
                        (1..=2).map(|i| serde_json::json!({"id": format!("p{page}-{i}")})).collect();
                    let mut headers = axum::http::HeaderMap::new();
                    if page < 3 {
                        let link = format!(
                            "<http://{addr}/api/items?page={}&token=a%20%24%7Bb%7D>; rel=\"next\", <http://{addr}/api/items?page=1>; rel=\"first\"",
                            page + 1
                        );
                        headers.insert("link", link.parse().unwrap());
                    }
                    (headers, axum::Json(items))
                }
            }),
        )
        .route(
            "/evil/items",
            axum::routing::get(move || async move {
                let link = format!("<http://localhost:{}/evil/items?page=2>; rel=next", addr.port());
                ([("link", link)], axum::Json(serde_json::json!([{"id": "e1"}])))
            }),
        )
        .route(
            "/sink",
            axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                let d = d.clone();
                async move {
                    d.lock().unwrap().push(v["id"].as_str().unwrap_or_default().to_string());
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, pages, delivered)
}

fn config(addr: std::net::SocketAddr, path: &str) -> String {
    let targets = format!(
        r#"- name: sink
  type: outboundMessage
{endpoint_sink}  method:
    name: post
    httpMethod: POST
    path: /sink
    body: '{{"id": "${{id}}"}}'
    variables:
    - {{name: id, maxLength: 100}}
"#,
        endpoint_sink = endpoint_yaml("  ", "sink", &format!("http://{addr}"), 5000),
    );
    config_with_targets(addr, path, &targets)
}

/// A link-paginated pull of `path` into `targets` (YAML list items).
fn config_with_targets(addr: std::net::SocketAddr, path: &str, targets: &str) -> String {
    format!(
        r#"{head}source:
  type: rest
  request:
{endpoint_items}    method: {{name: list, httpMethod: GET, path: {path}}}
  pagination: {{type: link, param: page, pageSize: 2, maxPages: 10}}
transform:
  fieldMap:
    id: body.id
  coalesceKeys: [id]
targets:
{targets}"#,
        head = config_head("items"),
        endpoint_items = endpoint_yaml("    ", "items", &format!("http://{addr}"), 5000),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_links_are_followed_on_the_same_host_only() {
    let (addr, pages, delivered) = source().await;
    let run = run_once(&config(addr, "/api/items"), tempfile::tempdir().unwrap().path());
    assert_eq!(run.code, 0, "{}\n{}", run.message, run.log);
    let queries: Vec<Vec<(String, String)>> = pages
        .lock()
        .unwrap()
        .iter()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .collect();
    let linked = |page: &str| {
        vec![("page".to_string(), page.to_string()), ("token".into(), "a ${b}".into())]
    };
    assert_eq!(
        queries,
        [vec![], linked("2"), linked("3")],
        "the link's query values arrive as data, `${{b}}` included"
    );
    assert_eq!(delivered.lock().unwrap().len(), 6);

    let run = run_once(&config(addr, "/evil/items"), tempfile::tempdir().unwrap().path());
    assert_eq!(run.code, 1, "{}", run.message);
    assert!(run.message.contains("another host"), "{}", run.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_pages_fill_a_database_table() {
    postgres_sql("CREATE TABLE rest_items (id text PRIMARY KEY)");
    let (addr, _, _) = source().await;
    let creds = tempfile::tempdir().unwrap();
    let targets = format!(
        "- name: table\n  type: database\n{connection}  table: rest_items\n{credentials}",
        connection = postgres_connection_yaml("  "),
        credentials = credentials_yaml(&credential_dir(creds.path())),
    );
    let data = tempfile::tempdir().unwrap();
    let run = run_once(&config_with_targets(addr, "/api/items", &targets), data.path());
    assert_eq!(run.code, 0, "{}\n{}", run.message, run.log);
    assert_eq!(
        postgres_sql("SELECT string_agg(id, ',' ORDER BY id) FROM rest_items"),
        "p1-1,p1-2,p2-1,p2-2,p3-1,p3-2"
    );
    assert!(!run.log.contains(CANARY_PASSWORD) && !run.message.contains(CANARY_PASSWORD));
}
