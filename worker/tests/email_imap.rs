//! The IMAP source against a real IMAP server (Dovecot from Debian, see `email_support`),
//! run as a Schedule's Job runs it: `switchboard worker run-once` as a process. Mail is
//! seeded with IMAP APPEND and inspected with FETCH afterwards.
//!
//! Covered: actions in order (first match wins), unmatched mail left unread, move and delete
//! after processing, a failing target leaving the mail and dead-lettering it once, the same
//! idempotency key in a later run, hostile mail (huge, malformed MIME, header injection in
//! the subject), and the mailbox password (a canary) in no output.

mod email_support;
mod support;

use email_support::runtime_support;
use std::path::Path;

use email_support::{Dovecot, Pki};
use support::{Reply, Sink};
use switchboard_worker::queue::{Queue, QueueSettings};

const USER: &str = "intake";
const CANARY: &str = "canary-imap-51c0de-password";

fn mail(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: intake@acme.example\r\nSubject: {subject}\r\nMessage-ID: <{}@test>\r\nDate: Tue, 3 Nov 2026 10:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.len() ^ body.len() ^ from.len()
    )
    .into_bytes()
}

fn target(name: &str, sink: &Sink, path: &str, max_attempts: u32) -> String {
    format!(
        r#"- name: {name}
  type: outboundMessage
  endpoint:
    name: {name}-api
    url: {url}
    protocol: rest
    timeoutMs: 5000
    retry: {{maxAttempts: {max_attempts}, initialBackoffMs: 10, maxBackoffMs: 20}}
    circuitBreaker: {{failureThreshold: 1000, openForMs: 1000}}
  method:
    name: post
    httpMethod: POST
    path: {path}
    contentType: application/json
    body: '{{"key": "${{key}}", "text": "${{text}}"}}'
    variables:
    - {{name: key, maxLength: 1000}}
    - {{name: text, maxLength: 2000000, default: ""}}
"#,
        url = sink.url()
    )
}

struct Run {
    ok: bool,
    termination: String,
    output: String,
}

fn config(
    dovecot: &Dovecot,
    pki: &Pki,
    creds: &Path,
    after: &str,
    targets: &str,
    actions: &str,
) -> String {
    format!(
        r#"apiVersion: worker.switchboard.dev/v1
kind: WorkerConfig
subject: {{kind: Integration, namespace: ops, name: vendor-email-intake}}
owner: {{team: itsm, contact: itsm@acme.example}}
source:
  type: imap
  server: {server}
  credential: mailbox
  mailbox: INBOX
  afterProcessing: {after}
  moveTo: Processed
  maxMessages: 50
  caFile: {ca}
  actions:
{actions}
targets:
{targets}
delivery:
  mode: durable
  retry: {{maxAttempts: 2, initialBackoffMs: 10, maxBackoffMs: 20}}
  deadLetterRetentionSeconds: 86400
  deadLetterMaxEntries: 100
  concurrency: 1
credentials:
  mailbox: {{type: basic, directory: {creds}}}
egress:
  allowCidrs: [127.0.0.0/8]
server: {{inboundPort: 8080, adminPort: 9090, dataDir: /nonexistent, logLevel: trace}}
"#,
        server = dovecot.url(),
        ca = pki.ca_file().display(),
        creds = creds.display(),
    )
}

const ACTIONS: &str = r#"  - name: reply-to-incident
    when: 'email.subject.matches(''\\[ref:[a-f0-9]{32}\\]'')'
    variables: {key: "email.messageId", text: "'reply from ' + email.from + ': ' + email.text"}
    targets: [work-note]
  - name: new-vendor-case
    when: "email.from.endsWith('@supplier.example')"
    variables: {key: "email.subject", text: "email.text"}
    targets: [incident]
"#;

const VENDOR_ONLY: &str = r#"  - name: new-vendor-case
    when: "email.from.endsWith('@supplier.example')"
    variables: {key: "email.subject", text: "email.text"}
"#;

/// Run the process without blocking the runtime that serves the test's sinks.
async fn run_once(config_text: &str, dir: &Path) -> Run {
    let config_path = dir.join("worker.yaml");
    std::fs::write(&config_path, config_text).unwrap();
    let termination = dir.join("termination-log");
    std::fs::write(&termination, "").unwrap();
    let out = tokio::process::Command::new(runtime_support::switchboard_bin())
        .args(["worker", "run-once", "--config"])
        .arg(&config_path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--termination-log")
        .arg(&termination)
        .env("RUST_LOG", "trace")
        .output()
        .await
        .unwrap();
    Run {
        ok: out.status.success(),
        termination: std::fs::read_to_string(&termination).unwrap(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn credential_dir(root: &Path, password: &str) -> std::path::PathBuf {
    let dir = root.join("mailbox-credential");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("username"), USER).unwrap();
    std::fs::write(dir.join("password"), format!("{password}\n")).unwrap();
    dir
}

fn bodies(sink: &Sink) -> Vec<serde_json::Value> {
    sink.received().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect()
}

fn seen(flags: &[String]) -> bool {
    flags.iter().any(|f| f.contains("Seen"))
}

#[tokio::test]
async fn actions_route_mail_and_only_handled_mail_moves() {
    let pki = Pki::new();
    let dovecot = Dovecot::start(&pki, USER, CANARY, 90).await;
    let mut huge_hostile = b"From: Support <help@supplier.example>\r\n\
        Subject: =?UTF-8?B?dXJnZW50DQpCY2M6IHZpY3RpbUBldmlsLmV4YW1wbGU=?=\r\n\
        Message-ID: <hostile@test>\r\n\
        Content-Type: multipart/mixed; boundary=\"never-closed\"\r\n\r\n\
        --never-closed\r\nContent-Type: text/plain\r\n\r\nstart of a huge body "
        .to_vec();
    huge_hostile.extend(std::iter::repeat_n(b'x', 9 * 1024 * 1024));
    dovecot
        .append(
            "INBOX",
            &[
                mail(
                    "help@supplier.example",
                    "Re: disk [ref:0123456789abcdef0123456789abcdef]",
                    "done",
                ),
                mail("ops@supplier.example", "New outage", "the router is down"),
                mail("news@elsewhere.example", "Weekly newsletter", "hello"),
                huge_hostile,
            ],
        )
        .await;
    let incident = Sink::always(201).await;
    let work_note = Sink::always(200).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = credential_dir(dir.path(), CANARY);
    let targets = format!(
        "{}{}",
        target("incident", &incident, "/incidents", 2),
        target("work-note", &work_note, "/notes", 2)
    );
    let run =
        run_once(&config(&dovecot, &pki, &creds, "move", &targets, ACTIONS), dir.path()).await;
    assert!(run.ok, "{}\n{}", run.termination, run.output);
    assert!(
        run.termination.contains("read 4 message(s) from INBOX: 3 handled, 1 unmatched"),
        "{}",
        run.termination
    );
    assert!(run.termination.contains("1 truncated"), "{}", run.termination);

    let notes = bodies(&work_note);
    assert_eq!(notes.len(), 1, "the reply matched the first action only");
    assert_eq!(
        notes[0]["text"].as_str().unwrap().trim_end(),
        "reply from help@supplier.example: done"
    );
    let cases = bodies(&incident);
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0]["key"], "New outage");
    let hostile_subject = cases[1]["key"].as_str().unwrap();
    assert!(
        !hostile_subject.contains('\r') && !hostile_subject.contains('\n'),
        "{hostile_subject:?}"
    );
    // Malformed MIME (a boundary never closed) and 9 MiB of body: handled, with text bounded.
    let text = cases[1]["text"].as_str().unwrap();
    assert!(text.chars().count() <= 1024 * 1024, "{} characters", text.chars().count());

    let inbox = dovecot.messages("INBOX").await;
    assert_eq!(inbox.len(), 1, "only the unmatched message stays");
    assert!(String::from_utf8_lossy(&inbox[0].2).contains("Weekly newsletter"));
    assert!(!seen(&inbox[0].1), "unmatched mail stays unread: {:?}", inbox[0].1);
    let processed = dovecot.messages("Processed").await;
    assert_eq!(processed.len(), 3);
    assert!(processed.iter().all(|(_, flags, _)| seen(flags)), "{processed:?}");

    // The next run finds only the unmatched message again.
    let again =
        run_once(&config(&dovecot, &pki, &creds, "move", &targets, ACTIONS), dir.path()).await;
    assert!(
        again.termination.contains("read 1 message(s) from INBOX: 0 handled, 1 unmatched"),
        "{}",
        again.termination
    );
    assert_eq!(bodies(&incident).len() + bodies(&work_note).len(), 3, "nothing delivered twice");
    for output in [&run.output, &run.termination, &again.output] {
        assert!(!output.contains(CANARY), "the password leaked:\n{output}");
    }
}

#[tokio::test]
async fn a_failing_target_leaves_the_mail_for_the_next_run() {
    let pki = Pki::new();
    let dovecot = Dovecot::start(&pki, USER, CANARY, 90).await;
    dovecot.append("INBOX", &[mail("ops@supplier.example", "Outage", "down")]).await;
    let incident = Sink::start(vec![Reply::status(503); 4], Reply::status(201)).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = credential_dir(dir.path(), CANARY);
    let config_text = config(
        &dovecot,
        &pki,
        &creds,
        "markSeen",
        &target("incident", &incident, "/incidents", 2),
        VENDOR_ONLY,
    );

    for round in 0..2 {
        let run = run_once(&config_text, dir.path()).await;
        assert!(!run.ok, "nothing handled, one failed: the run fails");
        assert!(run.termination.starts_with("RunFailed: emails_failed"), "{}", run.termination);
        assert!(
            run.termination.contains("1 failed (left for the next run, 1 dead-lettered)"),
            "round {round}: {}",
            run.termination
        );
        let inbox = dovecot.messages("INBOX").await;
        assert_eq!(inbox.len(), 1);
        assert!(!seen(&inbox[0].1), "a failed delivery leaves the mail unread");
        assert!(!run.output.contains(CANARY));
    }
    let queue = Queue::open(&dir.path().join("data"), QueueSettings::default()).unwrap();
    let dead = queue.list_dead_letters(true, 10).unwrap();
    assert_eq!(dead.len(), 1, "one dead letter per message, the newest");
    assert_eq!(dead[0].reason, "retries_exhausted");
    let letter = queue.get_dead_letter(&dead[0].id).unwrap();
    assert!(letter.id.starts_with("imap-") && letter.id.ends_with("-1"), "{}", letter.id);
    assert_eq!(letter.failed_targets, vec!["incident"]);
    queue.close().await.unwrap();

    // The target recovers: the next run delivers and marks the message seen.
    let run = run_once(&config_text, dir.path()).await;
    assert!(run.ok, "{}\n{}", run.termination, run.output);
    assert!(run.termination.contains("1 handled"), "{}", run.termination);
    let inbox = dovecot.messages("INBOX").await;
    assert!(seen(&inbox[0].1));
    let keys: std::collections::BTreeSet<String> = incident
        .received()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 1, "every attempt in every run carried the same key: {keys:?}");
}

#[tokio::test]
async fn delete_removes_handled_mail_and_a_wrong_password_is_not_shown() {
    let pki = Pki::new();
    let dovecot = Dovecot::start(&pki, USER, CANARY, 90).await;
    dovecot
        .append(
            "INBOX",
            &[mail("ops@supplier.example", "One", "1"), mail("x@elsewhere.example", "Two", "2")],
        )
        .await;
    let incident = Sink::always(201).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = credential_dir(dir.path(), CANARY);
    let targets = target("incident", &incident, "/incidents", 1);
    let run =
        run_once(&config(&dovecot, &pki, &creds, "delete", &targets, VENDOR_ONLY), dir.path())
            .await;
    assert!(run.ok, "{}\n{}", run.termination, run.output);
    let inbox = dovecot.messages("INBOX").await;
    assert_eq!(inbox.len(), 1);
    assert!(String::from_utf8_lossy(&inbox[0].2).contains("Subject: Two"));

    let wrong = tempfile::tempdir().unwrap();
    let wrong_creds = credential_dir(wrong.path(), "canary-imap-wrong-7e21");
    let run = run_once(
        &config(&dovecot, &pki, &wrong_creds, "delete", &targets, VENDOR_ONLY),
        wrong.path(),
    )
    .await;
    assert!(!run.ok);
    assert!(run.termination.starts_with("RunFailed: imap_login"), "{}", run.termination);
    for output in [&run.output, &run.termination] {
        assert!(!output.contains("canary-imap-wrong-7e21"), "{output}");
    }
}
