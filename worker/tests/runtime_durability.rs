//! The real `switchboard worker` process against a local sink on loopback: acknowledged
//! events survive SIGKILL (D1), hostile target errors are dead-lettered intact and replayed
//! with `switchboard dlq` (D4), and no output carries the planted secrets.

mod runtime_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use runtime_support::*;
use switchboard_worker::inbound::signature::{SignatureScheme, SigningKey, sign_standard};

const ADMIN_TOKEN: &str = "admin-canary-5d1e-token";

struct Setup {
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    token: std::path::PathBuf,
    data: std::path::PathBuf,
    log: std::path::PathBuf,
    secret: String,
}

fn setup(sink: std::net::SocketAddr, mode: &str, max_attempts: u32, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let secret = whsec(CANARY);
    let cred = credential_dir(dir.path(), "hook", &[("secret", secret.as_bytes())]);
    let config = format!(
        "{}source:\n  type: webhook\n  path: /hook\n  auth: {{type: signature, credential: hook, toleranceSeconds: 300}}\n  maxBodyBytes: 65536\ncredentials:\n  hook:\n    type: hmac\n    directory: {}\n    hmac: {{scheme: standardWebhooks}}\ntransform:\n  fieldMap:\n    id: body.id\n    title: body.title\n{extra}{}",
        config_head(mode),
        cred.display(),
        sink_target_yaml(sink, max_attempts)
    );
    let config_path = dir.path().join("worker.yaml");
    std::fs::write(&config_path, config).unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, format!("{ADMIN_TOKEN}\n")).unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("worker.log");
    Setup { config: config_path, token, data, log, secret, dir }
}

fn signed(secret: &str, id: &str, body: &[u8]) -> (String, String) {
    let key =
        SigningKey::from_secret(&SignatureScheme::StandardWebhooks, secret.as_bytes()).unwrap();
    let ts = now();
    (ts.to_string(), sign_standard(&key, id, ts, body))
}

async fn post_event(
    client: &reqwest::Client,
    worker: &WorkerProcess,
    secret: &str,
    id: &str,
) -> Result<u16, String> {
    post_event_to(client, worker.inbound, secret, id).await
}

fn assert_no_canary(what: &str, text: &str) {
    assert!(!text.contains(CANARY), "{what} contains the webhook secret");
    assert!(!text.contains(ADMIN_TOKEN), "{what} contains the admin token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_sigkill_under_load() {
    let (sink, state) = start_sink().await;
    let s = setup(sink, "durable", 5, "");
    let mut worker = WorkerProcess::start(&s.config, &s.data, &s.token, &s.log, &[]);
    worker.wait_live().await;

    let client = http_client();
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let total = 3000usize;
    let kill_after = 1000usize;
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(total);
    for i in 0..total {
        tx.send(format!("evt-{i:05}")).await.unwrap();
    }
    drop(tx);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    // 32 concurrent senders; the worker is killed once `kill_after` events were acknowledged.
    let inbound = Arc::new(std::sync::Mutex::new(worker.inbound));
    let mut senders = Vec::new();
    let unacked = Arc::new(std::sync::Mutex::new(Vec::new()));
    for _ in 0..32 {
        let (client, rx, acked, secret, inbound, unacked) = (
            client.clone(),
            rx.clone(),
            acked.clone(),
            s.secret.clone(),
            inbound.clone(),
            unacked.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let Some(id) = rx.lock().await.recv().await else { break };
                let addr = *inbound.lock().unwrap();
                match post_event_to(&client, addr, &secret, &id).await {
                    Ok(s) if (200..300).contains(&s) => {
                        acked.lock().unwrap().insert(id);
                    }
                    _ => unacked.lock().unwrap().push(id),
                }
            }
        }));
    }
    // Kill once enough were acknowledged.
    loop {
        if acked.lock().unwrap().len() >= kill_after {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    worker.kill9();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked_before_kill = acked.lock().unwrap().len();
    assert!(acked_before_kill >= kill_after);

    // Restart on the same volume; the senders retry what was not acknowledged.
    let mut worker = WorkerProcess::start(&s.config, &s.data, &s.token, &s.log, &[]);
    worker.wait_live().await;
    let retry: Vec<String> = unacked.lock().unwrap().drain(..).collect();
    for id in &retry {
        let status = post_event(&client, &worker, &s.secret, id).await.unwrap();
        assert!((200..300).contains(&status), "{id}: {status}");
        acked.lock().unwrap().insert(id.clone());
    }
    let acked: BTreeSet<String> = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), total);

    let status = worker
        .wait_status("queue drained", |st| {
            let c = &st["counters"];
            c["queueDepth"] == 0 && c["delivered"].as_u64().unwrap_or(0) >= total as u64
        })
        .await;
    let received = state.received.lock().unwrap().clone();
    let missing: Vec<&String> = acked.iter().filter(|id| !received.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events never reached the sink: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let c = &status["counters"];
    let accepted = c["accepted"].as_u64().unwrap();
    assert!(accepted >= total as u64, "{status}");
    assert_eq!(
        c["delivered"].as_u64().unwrap()
            + c["filtered"].as_u64().unwrap()
            + c["deadLettered"].as_u64().unwrap(),
        accepted,
        "every accepted event is delivered, filtered or dead-lettered: {status}"
    );
    // Redeliveries after the crash carry the same idempotency key.
    for (id, keys) in state.keys.lock().unwrap().iter() {
        assert_eq!(keys.len(), 1, "{id} was delivered with several idempotency keys: {keys:?}");
    }
    assert_eq!(worker.terminate().code(), Some(0));
    assert_no_canary("worker log", &std::fs::read_to_string(&s.log).unwrap());
}

async fn post_event_to(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    secret: &str,
    id: &str,
) -> Result<u16, String> {
    let body = serde_json::json!({"id": id, "title": format!("event {id}")}).to_string();
    let (ts, sig) = signed(secret, id, body.as_bytes());
    client
        .post(format!("http://{addr}/hook"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts)
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_target_errors_are_dead_lettered_and_replayed_with_the_cli() {
    let (sink, state) = start_sink().await;
    let s = setup(sink, "durable", 2, "");
    let worker =
        WorkerProcess::start(&s.config, &s.data, &s.token, &s.log, &["--log-format", "json"]);
    worker.wait_live().await;
    let client = http_client();
    assert_eq!(post_event(&client, &worker, &s.secret, "hostile-1").await.unwrap(), 202);
    let status = worker.wait_status("dead letter", |st| st["counters"]["deadLettered"] == 1).await;
    assert_eq!(status["counters"]["deadLettersPending"], 1);
    assert_eq!(status["lastFailure"]["reason"], "DeliveryFailed");
    assert_eq!(status["consecutiveFailures"], 1);
    // A later success resets the run of failures but keeps the last failure on record.
    assert_eq!(post_event(&client, &worker, &s.secret, "fine-1").await.unwrap(), 202);
    let status = worker.wait_status("delivery", |st| st["counters"]["delivered"] == 1).await;
    assert_eq!(status["consecutiveFailures"], 0);
    assert_eq!(status["lastFailure"]["reason"], "DeliveryFailed");
    assert!(status["lastSuccessTime"].is_string());

    // The dead-letter API needs the token.
    let (code, _) = worker.admin_json("/v1/dead-letters").await;
    assert_eq!(code, 401);
    let wrong = s.dir.path().join("wrong-token");
    std::fs::write(&wrong, "nope").unwrap();
    let (ok, _, err) = dlq(&worker, &wrong, &["list"]);
    assert!(!ok && err.contains("401"), "{err}");

    let (ok, out, err) = dlq(&worker, &s.token, &["list", "--json"]);
    assert!(ok, "{err}");
    let items: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 1);
    let item = &items[0];
    assert_eq!(item["reason"], "retries_exhausted");
    assert_eq!(item["attempts"], 2);
    let id = item["id"].as_str().unwrap().to_string();
    let message = item["message"].as_str().unwrap();
    assert!(message.len() < 4096, "the 10 MB body was stored: {} bytes", message.len());
    assert!(!message.contains('\r') && !message.contains('\n') && !message.contains('\u{1b}'));

    let (ok, table, _) = dlq(&worker, &s.token, &["list"]);
    assert!(ok && table.contains(&id) && table.contains("retries_exhausted"), "{table}");
    let (ok, shown, err) = dlq(&worker, &s.token, &["show", &id]);
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["event"]["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(shown["event"]["attempts"][0]["status"], 500);
    assert!(shown["event"]["body"].as_str().unwrap().contains("hostile-1"));
    assert!(shown["event"]["request"]["headers"].get("webhook-signature").is_none());

    // The target recovers; the replay records who and when, and the event arrives.
    state.refuse_hostile.store(false, Ordering::SeqCst);
    let (ok, out, err) = dlq(&worker, &s.token, &["replay", &id, "--by", "alice"]);
    assert!(ok, "{err}");
    assert!(out.contains("by alice"), "{out}");
    worker.wait_status("replayed delivery", |st| st["counters"]["delivered"] == 2).await;
    assert_eq!(state.received.lock().unwrap().get("hostile-1"), Some(&1));
    let (ok, _, err) = dlq(&worker, &s.token, &["replay", &id]);
    assert!(!ok && err.contains("already replayed"), "{err}");
    let (ok, shown, _) = dlq(&worker, &s.token, &["show", &id]);
    assert!(ok);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["state"], "replayed");
    assert_eq!(shown["event"]["replays"][0]["by"], "alice");
    let status = worker.status().await;
    assert_eq!(status["counters"]["deadLettersPending"], 0);
    assert_eq!(status["counters"]["replayed"], 1);

    // No output carries a secret: answers, metrics, status, dead letters, CLI, logs.
    let metrics = http_client()
        .get(format!("http://{}/metrics", worker.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("switchboard_worker_dead_lettered_total"));
    assert!(metrics.contains("switchboard_worker_circuit_state{"), "{metrics}");
    // The outbound module's metrics keep their names and carry the owner labels too.
    assert!(
        metrics.contains("switchboard_outbound_deliveries_total{integration=\"alerts\""),
        "{metrics}"
    );
    assert!(!metrics.contains("switchboard_worker_switchboard"));
    assert_no_canary("metrics", &metrics);
    assert_no_canary("status", &status.to_string());
    assert_no_canary("dead letter", &shown.to_string());
    assert_no_canary("dlq output", &(out + &table));
    drop(worker);
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(log.lines().any(|l| l.starts_with('{')), "JSON logs were asked for");
    assert_no_canary("worker log", &log);
}

#[tokio::test]
async fn config_and_credential_errors_show_on_readyz_without_a_crash_loop() {
    let (sink, _) = start_sink().await;
    let s = setup(sink, "durable", 2, "");
    // A config that does not parse: the process stays up and says why.
    let broken = s.dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: worker.switchboard.dev/v1\nkind: WorkerConfig\nsubject: [",
    )
    .unwrap();
    let worker = WorkerProcess::start(&broken, &s.data, &s.token, &s.log, &[]);
    worker.wait_live().await;
    let (code, body) = worker.admin_json("/readyz").await;
    assert_eq!(code, 503);
    assert!(body["reason"].as_str().unwrap().starts_with("ConfigInvalid"), "{body}");
    drop(worker);

    // A missing credential file: not ready, with the file named; ready once it appears.
    let secret_file = s.dir.path().join("hook").join("secret");
    std::fs::remove_file(&secret_file).unwrap();
    let worker = WorkerProcess::start(&s.config, &s.data, &s.token, &s.log, &[]);
    worker.wait_live().await;
    let (code, body) = worker.admin_json("/readyz").await;
    assert_eq!(code, 503);
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("CredentialUnavailable") && reason.contains("secret"), "{reason}");
    std::fs::write(&secret_file, &s.secret).unwrap();
    worker.wait_status("ready after the Secret appeared", |st| st["ready"] == true).await;
    let (code, _) = worker.admin_json("/readyz").await;
    assert_eq!(code, 200);
    assert_no_canary("worker log", &std::fs::read_to_string(&s.log).unwrap());
}

#[tokio::test]
async fn synchronous_mode_acknowledges_after_delivery() {
    let (sink, state) = start_sink().await;
    let s = setup(sink, "synchronous", 1, "");
    let worker = WorkerProcess::start(&s.config, &s.data, &s.token, &s.log, &[]);
    worker.wait_live().await;
    let client = http_client();
    assert_eq!(post_event(&client, &worker, &s.secret, "sync-1").await.unwrap(), 200);
    assert_eq!(state.received.lock().unwrap().get("sync-1"), Some(&1));
    // The target fails: the sender gets a 502 and keeps the event (its retries take over).
    assert_eq!(post_event(&client, &worker, &s.secret, "hostile-sync").await.unwrap(), 502);
    // A mapping error: 422 with the reason.
    let body = br#"{"title":"no id"}"#;
    let (ts, sig) = signed(&s.secret, "nomap", body);
    let r = client
        .post(format!("http://{}/hook", worker.inbound))
        .header("content-type", "application/json")
        .header("webhook-id", "nomap")
        .header("webhook-timestamp", ts)
        .header("webhook-signature", sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["error"], "mapping_failed");
    assert!(answer["message"].as_str().unwrap().contains("fieldMap.id"));
    let status = worker.status().await;
    assert_eq!(status["counters"]["delivered"], 1);
    assert_eq!(status["counters"]["queueDepth"], 0);
}

#[test]
fn run_once_exits_with_a_status_a_job_understands() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (sink, state) = rt.block_on(start_sink());
    let dir = tempfile::tempdir().unwrap();
    let run = |id: &str| {
        let target = sink_target_yaml(sink, 2);
        // Reuse the target's call as the Schedule's `run`, with a fixed id.
        let call: String = target
            .lines()
            .skip_while(|l| !l.contains("endpoint:"))
            .take_while(|l| !l.starts_with("egress"))
            .map(|l| format!("{l}\n"))
            .collect();
        format!(
            "{}run:\n{call}  variables: {{id: {id}, title: scheduled}}\negress:\n  allowCidrs: [127.0.0.0/8]\n",
            config_head("durable").replace("Integration", "Schedule")
        )
    };
    for (id, code) in [("run-ok", 0), ("hostile-run", 1)] {
        let config = dir.path().join(format!("{id}.yaml"));
        std::fs::write(&config, run(id)).unwrap();
        let termination = dir.path().join(format!("{id}.termination"));
        std::fs::write(&termination, "").unwrap();
        let out = std::process::Command::new(switchboard_bin())
            .args(["worker", "run-once", "--config"])
            .arg(&config)
            .arg("--termination-log")
            .arg(&termination)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{}", String::from_utf8_lossy(&out.stderr));
        let message = std::fs::read_to_string(&termination).unwrap();
        if code == 0 {
            assert!(message.contains("answered 204"), "{message}");
        } else {
            assert!(message.starts_with("RunFailed: retries_exhausted"), "{message}");
            assert!(message.len() < 4096 && !message.contains('\n'));
        }
    }
    assert_eq!(state.received.lock().unwrap().get("run-ok"), Some(&1));
    // A pull whose config cannot run says why (here: its credential is not configured).
    let config = dir.path().join("db.yaml");
    std::fs::write(
        &config,
        format!("{}source:\n  type: database\n  connection: {{driver: postgres, endpoint: 'postgres://db:5432/x', credential: db, tls: disable}}\n  query: SELECT 1\n  batchSize: 10\n", config_head("durable")),
    )
    .unwrap();
    let termination = dir.path().join("db.termination");
    std::fs::write(&termination, "").unwrap();
    let out = std::process::Command::new(switchboard_bin())
        .args(["worker", "run-once", "--config"])
        .arg(&config)
        .arg("--termination-log")
        .arg(&termination)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        std::fs::read_to_string(&termination)
            .unwrap()
            .contains("credential \"db\" is not configured")
    );
}
