//! One pull of an IMAP source (what a Schedule's Job runs): inbound email actions, delivery,
//! dead letters and the mailbox update.
//!
//! ```text
//!  mailbox ──unseen, oldest first, ≤ maxMessages──▶ per message (one in memory at a time):
//!    fetch (BODY.PEEK, bounded) ─▶ parse ─▶ `email`
//!    actions in order: first whose `when` holds ─▶ its variables (CEL over `email`)
//!      (no actions: the transform's filter and field map, over `email`)
//!      none ─────────────────────────────▶ unmatched: left unread, counted
//!    deliver to the action's targets (or all) through the runtime pipeline: the same
//!    deliverers, retries and target conditions as every other event
//!      delivered ────────────────────────▶ handled: markSeen | move | delete
//!      failed / mapping error ───────────▶ dead letter (data dir), mail left for the next run
//! ```
//!
//! Each message has a delivery id built from the server, mailbox, `UIDVALIDITY` and UID. It is
//! the idempotency key (and the SMTP Message-ID seed) on every attempt, in this run and in a
//! later run that retries the same message, and it is the dead letter's id, so a message that
//! keeps failing holds one dead letter, the newest. The mailbox is only changed for messages
//! every target took: a failure leaves the mail where it was, and nothing is lost.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::Utc;
use secrecy::SecretString;
use serde::Serialize;
use sha2::Digest;

use super::imap::{self, ImapError, ImapServer, MailboxSession};
use super::message::{InboundEmail, MAX_MESSAGE_BYTES};
use crate::config::{EmailActionConfig, ImapConfig, SecretRole, WorkerConfig};
use crate::outbound::egress::EgressPolicy;
use crate::queue::{DeadLetter, Queue, QueueSettings, QueuedEvent, StoredRequest};
use crate::runtime::delivery::{Pipeline, PipelineResult};
use crate::runtime::metrics::{Metrics, ResultLabels};
use crate::transform::{CelInput, Expression, Outcome, TransformError, Variables, cel_to_json};

/// Why a pull could not run (or stopped). Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The IMAP source's settings are unusable.
    #[error("IMAP source is misconfigured: {0}")]
    Config(String),
    /// The mailbox credential cannot be read.
    #[error(transparent)]
    Credential(#[from] crate::credentials::CredentialError),
    /// The server could not be reached, refused the login, or a command failed.
    #[error(transparent)]
    Imap(#[from] ImapError),
}

impl SourceError {
    /// Short category for the run report and the termination message.
    pub fn category(&self) -> &'static str {
        match self {
            SourceError::Config(_) => "config",
            SourceError::Credential(e) => e.category(),
            SourceError::Imap(e) => e.category(),
        }
    }
}

/// An inbound email action, compiled.
#[derive(Debug)]
pub struct CompiledAction {
    /// Action name.
    pub name: String,
    when: Option<Expression>,
    variables: Vec<(String, Expression)>,
    /// Targets it feeds (empty: all).
    pub targets: Vec<String>,
}

/// The actions of a source, in order.
#[derive(Debug, Default)]
pub struct EmailActions {
    actions: Vec<CompiledAction>,
}

impl EmailActions {
    /// Compile every condition and variable (bounded cost, like the transform's), and check
    /// that each named target exists.
    pub fn compile(
        actions: &[EmailActionConfig],
        targets: &[String],
    ) -> Result<EmailActions, SourceError> {
        let mut compiled = Vec::new();
        for action in actions {
            let what = format!("actions.{}", action.name);
            let invalid = |e: TransformError| SourceError::Config(e.to_string());
            for target in &action.targets {
                if !targets.contains(target) {
                    return Err(SourceError::Config(format!(
                        "{what} feeds target {target:?}, which the integration does not have"
                    )));
                }
            }
            let when = action
                .when
                .as_deref()
                .map(|w| Expression::compile(&format!("{what}.when"), w))
                .transpose()
                .map_err(invalid)?;
            let variables = action
                .variables
                .iter()
                .map(|(name, source)| {
                    Ok((
                        name.clone(),
                        Expression::compile(&format!("{what}.variables.{name}"), source)?,
                    ))
                })
                .collect::<Result<_, TransformError>>()
                .map_err(invalid)?;
            compiled.push(CompiledAction {
                name: action.name.clone(),
                when,
                variables,
                targets: action.targets.clone(),
            });
        }
        Ok(EmailActions { actions: compiled })
    }

    /// Whether there are no actions.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The first action whose `when` holds (an action without `when` always does) and the
    /// variables it maps; `None` when no action matches.
    pub fn decide(
        &self,
        input: &CelInput,
    ) -> Result<Option<(&CompiledAction, Variables)>, TransformError> {
        for action in &self.actions {
            if let Some(when) = &action.when
                && !when.evaluate_bool(input)?
            {
                continue;
            }
            let mut vars = Variables::new();
            for (name, expression) in &action.variables {
                let value = expression.evaluate(input)?;
                let json = cel_to_json(&value).map_err(|message| TransformError::Evaluation {
                    what: format!("actions.{}.variables.{name}", action.name),
                    message,
                })?;
                vars.insert(name.clone(), json);
            }
            return Ok(Some((action, vars)));
        }
        Ok(None)
    }
}

/// The counts of one pull, for the run report and the termination message.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EmailRunReport {
    /// Mailbox read.
    pub mailbox: String,
    /// Messages fetched.
    pub examined: u64,
    /// Delivered to every target of their action; the mailbox was updated.
    pub handled: u64,
    /// No action matched (or the filter dropped them): left unread.
    pub unmatched: u64,
    /// Delivery or mapping failed: left for the next run, dead-lettered.
    pub failed: u64,
    /// Failed messages written to the dead-letter store.
    pub dead_lettered: u64,
    /// Attachments seen (not read).
    pub attachments: u64,
    /// Messages larger than the fetch limit, or with a body cut to its limit.
    pub truncated: u64,
    /// Handled messages per action name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub by_action: BTreeMap<String, u64>,
    /// Reason and message of the first failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

impl EmailRunReport {
    /// One line for logs and the termination message.
    pub fn summary(&self) -> String {
        format!(
            "read {} message(s) from {}: {} handled, {} unmatched (left unread), {} failed (left for the next run, {} dead-lettered); {} attachment(s) ignored, {} truncated",
            self.examined,
            self.mailbox,
            self.handled,
            self.unmatched,
            self.failed,
            self.dead_lettered,
            self.attachments,
            self.truncated
        )
    }
}

/// The delivery id of a message: stable across attempts and runs.
pub fn delivery_id(server: &ImapServer, mailbox: &str, uid_validity: u32, uid: u32) -> String {
    let digest = sha2::Sha256::digest(format!("{}\u{0}{mailbox}", server.authority()).as_bytes());
    format!("imap-{}-{uid_validity}-{uid}", hex::encode(&digest[..6]))
}

/// The dead-letter store of the data directory, opened on first use: a run whose messages
/// all succeed never touches it, and one that cannot open it still leaves failed mail in the
/// mailbox.
struct DeadLetters {
    dir: PathBuf,
    settings: QueueSettings,
    queue: Option<Queue>,
    unavailable: bool,
}

impl DeadLetters {
    async fn put(&mut self, dead: DeadLetter, retries: u64) -> bool {
        if self.unavailable {
            return false;
        }
        if self.queue.is_none() {
            match Queue::open(&self.dir, self.settings.clone()) {
                Ok(queue) => self.queue = Some(queue),
                Err(e) => {
                    tracing::error!(error = %e, "dead-letter store unavailable; failed mail stays in the mailbox");
                    self.unavailable = true;
                    return false;
                }
            }
        }
        let queue = self.queue.as_ref().expect("opened above");
        match queue.dead_letter(None, dead, retries).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot write a dead letter; the mail stays in the mailbox");
                false
            }
        }
    }

    async fn close(self) {
        if let Some(queue) = self.queue
            && let Err(e) = queue.close().await
        {
            tracing::error!(error = %e, "closing the dead-letter store failed");
        }
    }
}

/// What to do with a handled message.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AfterProcessing {
    MarkSeen,
    Move(String),
    Delete,
}

/// One pull of `imap`: the counts, and the error that stopped it, if one did (the counts
/// then say how far it got).
pub async fn pull(
    config: &WorkerConfig,
    imap: &ImapConfig,
    pipeline: &Pipeline,
    credentials: &crate::credentials::CredentialStore,
    metrics: &Metrics,
    data_dir: PathBuf,
) -> (EmailRunReport, Result<(), SourceError>) {
    let mut report = EmailRunReport { mailbox: imap.mailbox.clone(), ..Default::default() };
    let result =
        pull_into(config, imap, pipeline, credentials, metrics, data_dir, &mut report).await;
    (report, result)
}

async fn pull_into(
    config: &WorkerConfig,
    imap: &ImapConfig,
    pipeline: &Pipeline,
    credentials: &crate::credentials::CredentialStore,
    metrics: &Metrics,
    data_dir: PathBuf,
    report: &mut EmailRunReport,
) -> Result<(), SourceError> {
    let target_names: Vec<String> = config.targets.iter().map(|t| t.name.clone()).collect();
    let actions = EmailActions::compile(&imap.actions, &target_names)?;
    let after = match (imap.after_processing.as_str(), &imap.move_to) {
        ("markSeen", _) => AfterProcessing::MarkSeen,
        ("delete", _) => AfterProcessing::Delete,
        ("move", Some(folder)) if !folder.is_empty() => AfterProcessing::Move(folder.clone()),
        ("move", _) => return Err(SourceError::Config("afterProcessing move needs moveTo".into())),
        (other, _) => {
            return Err(SourceError::Config(format!(
                "afterProcessing {other:?} is not one of markSeen, move, delete"
            )));
        }
    };
    let server = ImapServer::parse(&imap.server)?;
    let egress =
        EgressPolicy::new(&config.egress).map_err(|e| SourceError::Config(e.to_string()))?;
    let credential = credentials.get(&imap.credential)?;
    if credential.type_name() != "basic" {
        return Err(SourceError::Credential(crate::credentials::CredentialError::WrongType {
            credential: imap.credential.clone(),
            found: credential.type_name(),
            expected: "basic",
        }));
    }
    let user: SecretString = credential.text(SecretRole::Username)?;
    let password: SecretString = credential.text(SecretRole::Password)?;

    let (client, _) =
        imap::open(&server, imap.ca_file.as_deref(), &egress, imap::CONNECT_TIMEOUT).await?;
    let mut session =
        MailboxSession::login(client, &server, &user, &password, &imap.mailbox).await?;
    drop((user, password));
    if let AfterProcessing::Move(folder) = &after
        && session.ensure_folder(folder).await?
    {
        tracing::info!(folder = %folder, "created the folder processed mail moves to");
    }
    let mut dead_letters = DeadLetters {
        dir: data_dir,
        settings: crate::runtime::queue_settings(config),
        queue: None,
        unavailable: false,
    };
    let result = process(
        &mut session,
        &server,
        imap,
        &actions,
        &after,
        pipeline,
        metrics,
        &mut dead_letters,
        report,
    )
    .await;
    session.logout().await;
    dead_letters.close().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn process(
    session: &mut MailboxSession,
    server: &ImapServer,
    imap: &ImapConfig,
    actions: &EmailActions,
    after: &AfterProcessing,
    pipeline: &Pipeline,
    metrics: &Metrics,
    dead_letters: &mut DeadLetters,
    report: &mut EmailRunReport,
) -> Result<(), SourceError> {
    let count = |result: &str| {
        metrics.emails.get_or_create(&ResultLabels { result: result.into() }).inc();
    };
    let uids = session.unseen(imap.max_messages.max(1) as usize).await?;
    for uid in uids {
        let Some(fetched) = session.fetch(uid, MAX_MESSAGE_BYTES).await? else { continue };
        report.examined += 1;
        let email = InboundEmail::parse(&fetched.raw, fetched.size);
        drop(fetched);
        report.attachments += email.attachments as u64;
        report.truncated += u64::from(email.truncated);
        let json = email.to_json();
        let input = CelInput::new(&[("email", &json), ("body", &json)]);
        let id = delivery_id(server, &imap.mailbox, session.uid_validity, uid);

        let decided = if actions.is_empty() {
            match pipeline.transform().apply(&input, &json) {
                Ok(Outcome::Filtered) => Ok(None),
                Ok(Outcome::Mapped(vars)) => Ok(Some((None, vars, Vec::new()))),
                Err(e) => Err(e),
            }
        } else {
            actions.decide(&input).map(|found| {
                found
                    .map(|(action, vars)| (Some(action.name.clone()), vars, action.targets.clone()))
            })
        };
        let mut event = QueuedEvent {
            id: id.clone(),
            source_id: None,
            received_at: Utc::now(),
            route: format!("imap:{}", imap.mailbox),
            pending_targets: Vec::new(),
            request: StoredRequest {
                method: "IMAP".into(),
                path: imap.mailbox.clone(),
                headers: email.headers.clone(),
                content_type: Some("application/json".into()),
                ..Default::default()
            },
            attempts: vec![],
            replays: vec![],
            body: serde_json::to_vec(&json).unwrap_or_default(),
        };
        let (action, vars, targets) = match decided {
            Ok(Some(found)) => found,
            Ok(None) => {
                report.unmatched += 1;
                count("unmatched");
                tracing::info!(uid, event = %id, "no email action matched; the message stays unread");
                continue;
            }
            Err(e) => {
                let failure = (e.category().to_string(), e.to_string(), Vec::new(), 0);
                record_failure(report, dead_letters, event, failure, &count).await;
                continue;
            }
        };
        event.pending_targets = targets;
        match pipeline.deliver_variables(&mut event, &vars, &input).await {
            PipelineResult::Delivered { .. } | PipelineResult::Filtered => {
                match after {
                    AfterProcessing::MarkSeen => session.mark_seen(uid).await?,
                    AfterProcessing::Move(folder) => session.move_to(uid, folder).await?,
                    AfterProcessing::Delete => session.delete(uid).await?,
                }
                report.handled += 1;
                count("handled");
                if let Some(action) = action {
                    *report.by_action.entry(action).or_default() += 1;
                }
                tracing::info!(uid, event = %id, "email handled");
            }
            PipelineResult::MappingFailed(e) => {
                let targets = event.pending_targets.clone();
                let failure = (e.category().to_string(), e.to_string(), targets, 0);
                record_failure(report, dead_letters, event, failure, &count).await;
            }
            PipelineResult::Failed { reason, message, failed_targets, retries } => {
                let failure = (reason, message, failed_targets, retries);
                record_failure(report, dead_letters, event, failure, &count).await;
            }
        }
    }
    Ok(())
}

async fn record_failure(
    report: &mut EmailRunReport,
    dead_letters: &mut DeadLetters,
    event: QueuedEvent,
    (reason, message, failed_targets, retries): (String, String, Vec<String>, u64),
    count: &impl Fn(&str),
) {
    let message = crate::queue::sanitize_message(&message);
    report.failed += 1;
    count("failed");
    report.first_failure.get_or_insert_with(|| format!("{}: {reason}: {message}", event.id));
    tracing::warn!(event = %event.id, reason = %reason, message = %message,
        "email not delivered; it stays in the mailbox for the next run");
    let dead = DeadLetter {
        id: event.id.clone(),
        dead_lettered_at: Utc::now(),
        reason,
        message,
        failed_targets,
        state: "pending".into(),
        event,
    };
    if dead_letters.put(dead, retries).await {
        report.dead_lettered += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(name: &str, when: Option<&str>, vars: &[(&str, &str)]) -> EmailActionConfig {
        EmailActionConfig {
            name: name.into(),
            when: when.map(str::to_string),
            variables: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            targets: vec![],
        }
    }

    #[test]
    fn the_first_matching_action_wins() {
        let actions = EmailActions::compile(
            &[
                action(
                    "reply",
                    Some(r"email.subject.matches('\\[ref:[a-f0-9]{32}\\]')"),
                    &[("sys_id", "email.messageId")],
                ),
                action(
                    "vendor",
                    Some("email.from.endsWith('@supplier.example')"),
                    &[("d", "email.text")],
                ),
                action("catch-all", None, &[]),
            ],
            &[],
        )
        .unwrap();
        let email = serde_json::json!({
            "from": "help@supplier.example", "subject": "Re: x [ref:0123456789abcdef0123456789abcdef]",
            "text": "hi", "messageId": "m1"
        });
        let input = CelInput::new(&[("email", &email)]);
        let (chosen, vars) = actions.decide(&input).unwrap().unwrap();
        assert_eq!(chosen.name, "reply");
        assert!(vars.contains_key("sys_id"));

        let email = serde_json::json!({"from": "help@supplier.example", "subject": "hello", "text": "t", "messageId": "m2"});
        let input = CelInput::new(&[("email", &email)]);
        let (chosen, vars) = actions.decide(&input).unwrap().unwrap();
        assert_eq!(chosen.name, "vendor");
        assert_eq!(vars["d"], "t");
    }

    #[test]
    fn no_match_and_unknown_targets() {
        let actions =
            EmailActions::compile(&[action("only", Some("email.from == 'x'"), &[])], &[]).unwrap();
        let email = serde_json::json!({"from": "y"});
        assert!(actions.decide(&CelInput::new(&[("email", &email)])).unwrap().is_none());
        let mut feeding = action("a", None, &[]);
        feeding.targets = vec!["nope".into()];
        let error = EmailActions::compile(&[feeding], &["incident".into()]).unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
    }

    #[test]
    fn delivery_ids_are_stable_and_distinct() {
        let server = ImapServer::parse("imaps://mail.example.com").unwrap();
        let id = delivery_id(&server, "INBOX", 7, 42);
        assert_eq!(id, delivery_id(&server, "INBOX", 7, 42));
        assert_ne!(id, delivery_id(&server, "INBOX", 8, 42));
        assert_ne!(id, delivery_id(&server, "Other", 7, 42));
        assert!(id.starts_with("imap-") && id.ends_with("-7-42"), "{id}");
    }
}
