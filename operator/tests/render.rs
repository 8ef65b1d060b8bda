//! The pure builders, field by field, from YAML fixtures.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;
use kube::ResourceExt;
use support::workspace;
use switchboard::manifest::ObjectSet;
use switchboard::render::{
    self, IntegrationChildren, References, RenderErrorReason, RenderSettings, Workload,
};
use switchboard_worker::config::{SourceConfig, TargetKind, WorkerConfig};

fn load(path: &str) -> ObjectSet {
    let (set, errors) = ObjectSet::load(&[workspace().join(path)], "default");
    assert!(errors.is_empty(), "{errors:?}");
    set
}

fn settings() -> RenderSettings {
    RenderSettings {
        image: "registry.example/switchboard:test".into(),
        ..RenderSettings::default()
    }
}

fn render_named(set: &ObjectSet, namespace: &str, name: &str) -> IntegrationChildren {
    let refs = set.references(namespace);
    let integration = &refs.integrations[name];
    render::render_integration(integration, &refs, &settings()).unwrap_or_else(|e| panic!("{e}"))
}

fn fixture() -> IntegrationChildren {
    render_named(
        &load("operator/tests/fixtures/render-webhook.yaml"),
        "team-a",
        "payments-to-ledger",
    )
}

fn worker_config(children: &IntegrationChildren) -> WorkerConfig {
    WorkerConfig::from_yaml(&children.config_map.data.as_ref().unwrap()["worker.yaml"]).unwrap()
}

fn deployment_pod(children: &IntegrationChildren) -> (BTreeMap<String, String>, PodSpec) {
    let Workload::Deployment(deployment) = &children.workload else {
        panic!("expected a Deployment")
    };
    let template = deployment.spec.as_ref().unwrap().template.clone();
    (template.metadata.unwrap().annotations.unwrap(), template.spec.unwrap())
}

#[test]
fn every_child_is_owned_labelled_and_named_after_the_integration() {
    let c = fixture();
    let metas = [
        &c.config_map.metadata,
        &c.service_account.metadata,
        &c.role.metadata,
        &c.role_binding.metadata,
        &c.service.as_ref().unwrap().metadata,
        &c.pod_disruption_budget.as_ref().unwrap().metadata,
    ];
    for meta in metas {
        assert_eq!(meta.namespace.as_deref(), Some("team-a"));
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.api_version, "switchboard.dev/v1alpha1");
        assert_eq!(owner.kind, "Integration");
        assert_eq!(owner.name, "payments-to-ledger");
        assert_eq!(owner.uid, "0b5c0f5e-3f4e-4d5a-9a0b-1c2d3e4f5a6b");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["switchboard.dev/integration"], "payments-to-ledger");
        assert_eq!(labels["switchboard.dev/owner-team"], "payments");
        assert_eq!(labels["app.kubernetes.io/name"], "switchboard-worker");
        assert_eq!(labels["app.kubernetes.io/instance"], "payments-to-ledger");
        assert_eq!(labels["app.kubernetes.io/component"], "worker");
        assert_eq!(labels["app.kubernetes.io/part-of"], "switchboard");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "switchboard-operator");
    }
    assert_eq!(c.config_map.metadata.name.as_deref(), Some("payments-to-ledger-worker"));
    assert_eq!(c.service.as_ref().unwrap().metadata.name.as_deref(), Some("payments-to-ledger"));
}

#[test]
fn worker_config_resolves_every_reference_and_holds_no_secret() {
    let c = fixture();
    let text = &c.config_map.data.as_ref().unwrap()["worker.yaml"];
    assert!(!text.contains("not-a-real-secret"), "a secret value leaked into the config");
    let config = worker_config(&c);
    assert_eq!(config.api_version, "worker.switchboard.dev/v1");
    assert_eq!(
        (
            config.subject.kind.as_str(),
            config.subject.namespace.as_str(),
            config.subject.name.as_str()
        ),
        ("Integration", "team-a", "payments-to-ledger")
    );
    assert_eq!(config.owner.team, "payments");
    assert_eq!(config.owner.on_call.as_deref(), Some("payments-primary"));
    let flow = config.data_flow.unwrap();
    assert_eq!(
        (flow.source_system.as_str(), flow.target_system.as_str(), flow.classification.as_str()),
        ("Stripe", "Ledger", "restricted")
    );

    let Some(SourceConfig::Webhook(webhook)) = &config.source else { panic!("webhook source") };
    assert_eq!(webhook.path, "/stripe");
    assert_eq!(webhook.auth.type_, "signature");
    assert_eq!(webhook.auth.credential.as_deref(), Some("hook"));
    assert_eq!(webhook.auth.tolerance_seconds, 120);
    assert_eq!(webhook.max_body_bytes, 65536);
    assert_eq!(webhook.id_header.as_deref(), Some("X-Event-Id"));

    assert_eq!(config.transform.filter.as_deref(), Some("body.type == 'payment_intent.succeeded'"));
    assert_eq!(config.transform.field_map["id"], "body.data.object.id");

    let target = &config.targets[0];
    assert_eq!(target.name, "ledger");
    assert_eq!(target.when.as_deref(), Some("body.livemode"));
    let TargetKind::OutboundMessage(call) = &target.kind else { panic!("outbound target") };
    assert_eq!(call.endpoint.name, "ledger");
    assert_eq!(call.endpoint.url, "https://ledger.internal.example:8443/v2");
    assert_eq!(call.endpoint.protocol, "rest");
    assert_eq!(call.endpoint.credential.as_deref(), Some("api-token"));
    assert_eq!(call.endpoint.client_certificate.as_deref(), Some("client-cert"));
    assert_eq!(call.endpoint.ca_file.as_deref(), Some("/var/run/switchboard/ca/ledger/ca.crt"));
    assert_eq!(call.endpoint.server_name.as_deref(), Some("ledger.internal"));
    assert_eq!(call.endpoint.timeout_ms, 1500);
    assert_eq!(
        (
            call.endpoint.retry.max_attempts,
            call.endpoint.retry.initial_backoff_ms,
            call.endpoint.retry.max_backoff_ms
        ),
        (4, 500, 10_000)
    );
    assert_eq!(
        (
            call.endpoint.circuit_breaker.failure_threshold,
            call.endpoint.circuit_breaker.open_for_ms
        ),
        (7, 45_000)
    );
    assert_eq!(call.method.name, "post-payment");
    assert_eq!(call.method.http_method, "POST");
    assert_eq!(call.method.path, "/payments/${id}");
    assert_eq!(call.method.query["source"], "stripe");
    assert_eq!(call.method.headers["X-Source"], "switchboard");
    assert_eq!(call.method.body.as_deref(), Some(r#"{"id": "${id}", "amount": ${amount}}"#));
    assert_eq!(call.method.variables[0].name, "id");
    assert_eq!(call.method.variables[0].max_length, 64);
    assert_eq!(call.method.variables[1].max_length, 4096);
    assert_eq!(call.method.expected_statuses, vec![200, 201]);
    assert_eq!(call.method.capture["ref"], "/ledgerRef");

    assert_eq!(config.delivery.mode, "durable");
    assert_eq!(
        (
            config.delivery.retry.max_attempts,
            config.delivery.retry.initial_backoff_ms,
            config.delivery.retry.max_backoff_ms
        ),
        (10, 2000, 60_000)
    );
    assert_eq!(config.delivery.dead_letter_retention_seconds, 7 * 86400);
    assert_eq!(config.delivery.dead_letter_max_entries, 5000);
    assert_eq!(config.delivery.concurrency, 4);
    assert_eq!(config.egress.allow_cidrs, vec!["10.0.0.0/8"]);
    assert_eq!(config.server.log_level, "debug");

    let names: Vec<&str> = config.credentials.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec!["api-token", "client-cert", "hook"],
        "alert route credentials are the operator's, not the worker's"
    );
    assert_eq!(config.credentials["hook"].type_, "hmac");
    assert_eq!(config.credentials["hook"].directory, "/var/run/switchboard/credentials/hook");
    assert_eq!(config.credentials["hook"].hmac.as_ref().unwrap().scheme, "stripe");
    assert_eq!(config.credentials["client-cert"].type_, "mtls");
}

#[test]
fn pod_template_is_restricted_probed_and_carries_the_hashes() {
    let c = fixture();
    let Workload::Deployment(deployment) = &c.workload else { panic!("expected a Deployment") };
    let spec = deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    let strategy = spec.strategy.as_ref().unwrap().rolling_update.as_ref().unwrap();
    assert_eq!(serde_json::to_value(&strategy.max_unavailable).unwrap(), 0);
    let selector = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(selector.len(), 3, "selectors hold only the immutable labels");

    let (annotations, pod) = deployment_pod(&c);
    let config_text = &c.config_map.data.as_ref().unwrap()["worker.yaml"];
    assert_eq!(
        annotations["switchboard.dev/config-hash"],
        switchboard::render::sha256_hex(config_text.as_bytes())
    );
    assert_eq!(
        annotations["credential.switchboard.dev/hook"].len(),
        64,
        "the hook Secret is known, so its hash is annotated"
    );
    assert!(
        !annotations.contains_key("credential.switchboard.dev/api-token"),
        "no Secret given, no hash"
    );

    assert_eq!(pod.service_account_name.as_deref(), Some("payments-to-ledger-worker"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "integrations");
    assert_eq!(pod.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("dedicated"));
    assert_eq!(pod.priority_class_name.as_deref(), Some("integrations-high"));
    let security = pod.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");

    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("registry.example/switchboard:test"));
    assert_eq!(container.command.as_deref(), Some(&["switchboard".to_string()][..]));
    assert_eq!(
        container.args.as_ref().unwrap(),
        &["worker", "--config", "/etc/switchboard/worker.yaml"]
    );
    let cs = container.security_context.as_ref().unwrap();
    assert_eq!(cs.allow_privilege_escalation, Some(false));
    assert_eq!(cs.read_only_root_filesystem, Some(true));
    assert_eq!(cs.capabilities.as_ref().unwrap().drop.as_ref().unwrap(), &["ALL"]);
    let resources = container.resources.as_ref().unwrap();
    assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "96Mi");
    assert_eq!(resources.limits.as_ref().unwrap()["cpu"].0, "1");
    assert_eq!(
        container.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(),
        Some("/livez")
    );
    assert_eq!(
        container.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(),
        Some("/readyz")
    );
    let ports: Vec<i32> =
        container.ports.as_ref().unwrap().iter().map(|p| p.container_port).collect();
    assert_eq!(ports, vec![8080, 9090]);

    let mounts: BTreeMap<String, String> = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect();
    assert_eq!(mounts["config"], "/etc/switchboard");
    assert_eq!(mounts["data"], "/var/lib/switchboard");
    assert_eq!(mounts["cred-hook"], "/var/run/switchboard/credentials/hook");
    assert_eq!(mounts["ca-ledger"], "/var/run/switchboard/ca/ledger");
    let volumes = pod.volumes.as_ref().unwrap();
    let hook = volumes.iter().find(|v| v.name == "cred-hook").unwrap().secret.as_ref().unwrap();
    assert_eq!(hook.secret_name.as_deref(), Some("hook-secret"));
    let items: Vec<(&str, &str)> =
        hook.items.as_ref().unwrap().iter().map(|i| (i.key.as_str(), i.path.as_str())).collect();
    assert_eq!(
        items,
        vec![("signing-key", "secret")],
        "the configured key is mounted under the role's file name"
    );
    let cert =
        volumes.iter().find(|v| v.name == "cred-client-cert").unwrap().secret.as_ref().unwrap();
    let items: Vec<(&str, &str)> =
        cert.items.as_ref().unwrap().iter().map(|i| (i.key.as_str(), i.path.as_str())).collect();
    assert_eq!(
        items,
        vec![("tls.crt", "certificate"), ("tls.key", "privateKey"), ("ca.crt", "caCertificate")]
    );
    let ca = volumes.iter().find(|v| v.name == "ca-ledger").unwrap().secret.as_ref().unwrap();
    assert_eq!(ca.items.as_ref().unwrap()[0].key, "bundle.pem");
    let data = volumes.iter().find(|v| v.name == "data").unwrap();
    assert_eq!(data.empty_dir.as_ref().unwrap().size_limit.as_ref().unwrap().0, "1Gi");
}

#[test]
fn service_rbac_and_disruption_budget() {
    let c = fixture();
    let service = c.service.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(service.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(service.ports.as_ref().unwrap()[0].port, 80);
    assert_eq!(
        service.selector.as_ref().unwrap()["app.kubernetes.io/instance"],
        "payments-to-ledger"
    );

    assert_eq!(c.service_account.automount_service_account_token, Some(false));
    let rules = c.role.rules.as_ref().unwrap();
    assert_eq!(rules.len(), 2);
    for rule in rules {
        assert_eq!(rule.api_groups.as_ref().unwrap(), &["switchboard.dev"]);
        assert_eq!(
            rule.resource_names.as_ref().unwrap(),
            &["payments-to-ledger"],
            "every rule is scoped to the one integration"
        );
        assert!(!rule.verbs.iter().any(|v| v == "*" || v == "list" || v == "watch"));
    }
    assert_eq!(rules[0].resources.as_ref().unwrap(), &["integrations"]);
    assert_eq!(rules[0].verbs, vec!["get"]);
    assert_eq!(rules[1].resources.as_ref().unwrap(), &["integrations/status"]);
    assert_eq!(rules[1].verbs, vec!["get", "patch"]);
    assert_eq!(c.role_binding.role_ref.name, "payments-to-ledger-worker");
    let subject = &c.role_binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.kind.as_str(), subject.name.as_str(), subject.namespace.as_deref()),
        ("ServiceAccount", "payments-to-ledger-worker", Some("team-a"))
    );

    let pdb = c.pod_disruption_budget.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(serde_json::to_value(&pdb.max_unavailable).unwrap(), 1);
}

#[test]
fn pull_sources_have_no_service_and_single_replicas_no_budget() {
    let set = load("examples");
    let c = render_named(&set, "acme-integrations", "crm-account-sync");
    assert!(c.service.is_none());
    assert!(c.pod_disruption_budget.is_none());
    let (_, pod) = deployment_pod(&c);
    assert!(pod.containers[0].ports.as_ref().unwrap().iter().all(|p| p.container_port != 8080));
    let config = worker_config(&c);
    let Some(SourceConfig::Database(db)) = &config.source else { panic!("database source") };
    assert_eq!(db.connection.driver, "postgres");
    assert_eq!(db.connection.tls, "verifyFull");
    assert_eq!(db.watermark.as_ref().unwrap().column, "updated_at");
    assert_eq!(db.batch_size, 500);
}

#[test]
fn persistent_queues_become_a_stateful_set_with_a_claim() {
    let set = load("examples");
    let c = render_named(&set, "acme-integrations", "order-invoicing");
    let Workload::StatefulSet(sts) = &c.workload else { panic!("expected a StatefulSet") };
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.service_name.as_deref(), Some("order-invoicing"));
    let claim = &spec.volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("data"));
    let requests =
        claim.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["storage"].0, "2Gi");
    let pod = spec.template.spec.as_ref().unwrap();
    assert!(
        pod.volumes.as_ref().unwrap().iter().all(|v| v.name != "data"),
        "the claim, not a pod volume, holds the queue"
    );
    let config = worker_config(&c);
    assert_eq!(config.delivery.mode, "synchronous");
    let TargetKind::OutboundMessage(call) = &config.targets[0].kind else { panic!() };
    assert_eq!(call.endpoint.protocol, "soap");
    assert_eq!(call.endpoint.soap_version.as_deref(), Some("1.1"));
    assert_eq!(call.method.soap_action.as_deref(), Some("urn:acme:billing:CreateInvoice"));
}

#[test]
fn schedules_become_cron_jobs_that_run_once() {
    let set = load("examples");
    let refs = set.references("acme-integrations");
    let hr = set.schedules.iter().find(|s| s.object.name_any() == "hr-nightly").unwrap();
    let children = render::render_schedule(&hr.object, &refs, &settings()).unwrap();
    assert!(children.config_map.is_none(), "an integration run uses the integration's config");
    let cron = children.cron_job.spec.unwrap();
    assert_eq!(cron.schedule, "0 2 * * *");
    assert_eq!(cron.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(cron.concurrency_policy.as_deref(), Some("Forbid"));
    assert_eq!(cron.starting_deadline_seconds, Some(3600));
    assert_eq!(cron.suspend, Some(false));
    assert_eq!(cron.successful_jobs_history_limit, Some(3));
    assert_eq!(cron.failed_jobs_history_limit, Some(5));
    let job = cron.job_template.spec.unwrap();
    assert_eq!(job.backoff_limit, Some(2));
    assert_eq!(job.active_deadline_seconds, Some(3600));
    let pod = job.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.service_account_name.as_deref(), Some("hr-employee-import-worker"));
    assert_eq!(
        pod.automount_service_account_token,
        Some(true),
        "run-once reports its run into the status"
    );
    let container = &pod.containers[0];
    assert_eq!(
        container.args.as_ref().unwrap(),
        &["worker", "run-once", "--config", "/etc/switchboard/worker.yaml"]
    );
    assert!(container.liveness_probe.is_none() && container.ports.is_none());
    let config_volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "config").unwrap();
    assert_eq!(config_volume.config_map.as_ref().unwrap().name, "hr-employee-import-worker");

    let close = set.schedules.iter().find(|s| s.object.name_any() == "billing-close-day").unwrap();
    let children = render::render_schedule(&close.object, &refs, &settings()).unwrap();
    let config_map = children.config_map.expect("a method call gets a config of its own");
    assert_eq!(config_map.metadata.name.as_deref(), Some("billing-close-day-schedule"));
    let config = WorkerConfig::from_yaml(&config_map.data.unwrap()["worker.yaml"]).unwrap();
    assert_eq!(config.subject.kind, "Schedule");
    let run = config.run.unwrap();
    assert_eq!(run.method.name, "close-day");
    assert_eq!(run.variables["ledger"], "EU-01");
    let pod = children.cron_job.spec.unwrap().job_template.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
}

#[test]
fn problems_name_the_object_and_field_and_are_all_reported() {
    let set = load("operator/tests/fixtures/render-webhook.yaml");
    let mut refs: References = set.references("team-a");
    refs.outbound_messages.clear();
    refs.credentials.remove("hook");
    let integration = &refs.integrations["payments-to-ledger"];
    let errors = render::render_integration(integration, &refs, &settings()).unwrap_err();
    let text = errors.to_string();
    assert_eq!(errors.0.len(), 2, "{text}");
    assert_eq!(errors.0[0].reason, RenderErrorReason::MissingReference);
    assert_eq!(errors.0[0].field, "spec.source.webhook.auth.credentialRef");
    assert!(text.contains("Integration team-a/payments-to-ledger: spec.source.webhook.auth.credentialRef: Credential \"hook\" not found"), "{text}");
    assert!(
        text.contains("spec.targets[0].outboundMessage: OutboundMessage \"ledger\" not found"),
        "{text}"
    );
}

#[test]
fn wrong_credential_types_and_invalid_schedules_are_refused() {
    let set = load("examples");
    let mut refs = set.references("acme-integrations");
    let slack = refs.credentials["slack-release-bot"].clone();
    refs.credentials.insert("itsm-change-events".into(), slack);
    let errors =
        render::render_integration(&refs.integrations["change-approval"], &refs, &settings())
            .unwrap_err();
    assert_eq!(errors.0[0].reason, RenderErrorReason::WrongCredentialType);
    assert!(
        errors.0[0].message.contains("has type bearer, but inbound auth type signature needs hmac"),
        "{errors}"
    );

    let mut schedule =
        set.schedules.iter().find(|s| s.object.name_any() == "hr-nightly").unwrap().object.clone();
    schedule.spec.cron = "61 2 * * *".into();
    schedule.spec.time_zone = "Mars/Olympus".into();
    let errors = render::render_schedule(&schedule, &refs, &settings()).unwrap_err();
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, vec!["spec.cron", "spec.timeZone"]);
    assert!(errors.0.iter().all(|e| e.reason == RenderErrorReason::InvalidSchedule));
}

/// What a worker pod says about its admin token.
#[derive(Clone, Debug, PartialEq)]
struct AdminTokenMount {
    secret: String,
    optional: Option<bool>,
    mode: Option<i32>,
    mount_path: String,
    env: String,
}

/// The admin token volume, mount and env of a worker pod.
fn admin_token_mount(pod: &PodSpec) -> Option<AdminTokenMount> {
    let volume = pod.volumes.as_ref()?.iter().find(|v| v.name == "admin-token")?;
    let secret = volume.secret.as_ref()?;
    let items = secret.items.as_ref()?;
    assert_eq!((items[0].key.as_str(), items[0].path.as_str()), ("token", "token"));
    let container = &pod.containers[0];
    let mount = container.volume_mounts.as_ref()?.iter().find(|m| m.name == "admin-token")?;
    assert_eq!(mount.read_only, Some(true));
    let env = container.env.as_ref()?.iter().find(|e| e.name == "SWITCHBOARD_ADMIN_TOKEN_FILE")?;
    Some(AdminTokenMount {
        secret: secret.secret_name.clone()?,
        optional: secret.optional,
        mode: secret.default_mode,
        mount_path: mount.mount_path.clone(),
        env: env.value.clone()?,
    })
}

#[test]
fn workers_mount_their_admin_token_and_find_it_through_the_env() {
    let c = fixture();
    let (_, pod) = deployment_pod(&c);
    let expected = AdminTokenMount {
        secret: "payments-to-ledger-worker-admin".into(),
        optional: Some(true),
        mode: Some(0o440),
        mount_path: "/var/run/switchboard/admin".into(),
        env: "/var/run/switchboard/admin/token".into(),
    };
    assert_eq!(admin_token_mount(&pod), Some(expected.clone()));
    assert_eq!(render::admin_token_secret_name("payments-to-ledger"), expected.secret);

    // The persistent-queue StatefulSet mounts it too; run-once Jobs serve no admin API.
    let set = load("examples");
    let c = render_named(&set, "acme-integrations", "order-invoicing");
    let Workload::StatefulSet(sts) = &c.workload else { panic!("expected a StatefulSet") };
    let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(admin_token_mount(pod).unwrap().secret, "order-invoicing-worker-admin");
    let refs = set.references("acme-integrations");
    let hr = set.schedules.iter().find(|s| s.object.name_any() == "hr-nightly").unwrap();
    let cron = render::render_schedule(&hr.object, &refs, &settings()).unwrap().cron_job;
    let pod = cron.spec.unwrap().job_template.spec.unwrap().template.spec.unwrap();
    assert_eq!(admin_token_mount(&pod), None);
}

#[test]
fn the_admin_token_secret_is_owned_labelled_and_holds_only_the_token() {
    let set = load("operator/tests/fixtures/render-webhook.yaml");
    let refs = set.references("team-a");
    let integration = &refs.integrations["payments-to-ledger"];
    let token = secrecy::SecretString::from("canary-admin-token".to_string());
    let secret = render::render_admin_token_secret(integration, &token);
    let meta = &secret.metadata;
    assert_eq!(meta.name.as_deref(), Some("payments-to-ledger-worker-admin"));
    assert_eq!(meta.namespace.as_deref(), Some("team-a"));
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Integration", "payments-to-ledger"));
    assert_eq!(owner.controller, Some(true));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["switchboard.dev/integration"], "payments-to-ledger");
    assert_eq!(labels["switchboard.dev/owner-team"], "payments");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "switchboard-operator");
    let data = secret.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["token"]);
    assert_eq!(data["token"].0, b"canary-admin-token");
}
