//! A small program for exercising the pod runner (its tests and its documentation).
//!
//! ```text
//! devcluster-testapp serve --port 8080 [--file PATH]... [--unhealthy]
//!     listens on $DEVCLUSTER_POD_IP (or 127.0.0.1); GET /healthz answers 200 (500 with
//!     --unhealthy), GET / answers {"greeting": $GREETING, "files": {PATH: content}},
//!     GET /env/NAME answers the variable; any request to /echo/... answers
//!     {"method", "path", "query", "headers", "body"} as it arrived (status 201 for POST)
//! devcluster-testapp exit --code N [--message TEXT] [--termination-log PATH] [--sleep-ms MS]
//!     prints a line, writes TEXT to the termination log and exits with N
//! ```
//!
//! It prints what it does (never the values of its environment) to standard output.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

fn flag_values(args: &[String], name: &str) -> Vec<String> {
    args.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

fn flag(args: &[String], name: &str) -> Option<String> {
    flag_values(args, name).into_iter().next()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args),
        Some("exit") => exit(&args),
        _ => {
            eprintln!("usage: devcluster-testapp serve|exit ...");
            ExitCode::from(2)
        }
    }
}

fn exit(args: &[String]) -> ExitCode {
    let code: u8 = flag(args, "--code").and_then(|c| c.parse().ok()).unwrap_or(0);
    if let Some(ms) = flag(args, "--sleep-ms").and_then(|m| m.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    println!("exiting with code {code}");
    if let (Some(path), Some(message)) = (flag(args, "--termination-log"), flag(args, "--message"))
        && let Err(e) = std::fs::write(&path, message)
    {
        eprintln!("cannot write the termination log {path}: {e}");
    }
    ExitCode::from(code)
}

fn serve(args: &[String]) -> ExitCode {
    let port: u16 = flag(args, "--port").and_then(|p| p.parse().ok()).unwrap_or(8080);
    let files: Vec<PathBuf> = flag_values(args, "--file").into_iter().map(PathBuf::from).collect();
    let unhealthy = args.iter().any(|a| a == "--unhealthy");
    let host: IpAddr = std::env::var("DEVCLUSTER_POD_IP")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind((host, port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {host}:{port}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let greeting_set = std::env::var("GREETING").is_ok();
        println!(
            "listening on {host}:{port} (greeting set: {greeting_set}, files: {})",
            files.len()
        );
        for f in &files {
            match std::fs::read_to_string(f) {
                Ok(text) => println!("read {} ({} bytes)", f.display(), text.len()),
                Err(e) => println!("cannot read {}: {e}", f.display()),
            }
        }
        let app =
            axum::Router::new()
                .route(
                    "/healthz",
                    get(move || async move {
                        if unhealthy { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
                    }),
                )
                .route(
                    "/",
                    get(move || {
                        let files = files.clone();
                        async move {
                            let contents: BTreeMap<String, String> = files
                                .iter()
                                .map(|f| {
                                    (
                                        f.display().to_string(),
                                        std::fs::read_to_string(f).unwrap_or_default(),
                                    )
                                })
                                .collect();
                            axum::Json(json!({
                                "greeting": std::env::var("GREETING").unwrap_or_default(),
                                "files": contents,
                            }))
                        }
                    }),
                )
                .route("/echo/{*rest}", axum::routing::any(echo))
                .route(
                    "/env/{name}",
                    get(|Path(name): Path<String>| async move {
                        std::env::var(name).unwrap_or_default()
                    }),
                );
        match axum::serve(listener, app).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("serving failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Answer with the request as it arrived.
async fn echo(request: axum::extract::Request) -> (StatusCode, axum::Json<serde_json::Value>) {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let status =
        if parts.method == axum::http::Method::POST { StatusCode::CREATED } else { StatusCode::OK };
    (
        status,
        axum::Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        })),
    )
}
