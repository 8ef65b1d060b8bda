//! Every CEL rule of the CRDs, evaluated both ways with the `cel` interpreter (through
//! kube-cel, the Kubernetes CEL library) against objects derived from `examples/`.
//!
//! Each case applies a JSON patch to a valid example twice: once so the rule still holds
//! (no violation at all), once so it breaks (a violation carrying the rule's message). A final
//! test checks that every rule message in the CRDs is covered by a case, so a new rule without
//! a test fails here, and a typo in a rule fails here rather than in a cluster.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};
use switchboard::api::{self, validate_rules};
use switchboard::manifest::ObjectSet;

fn example(kind: &str, name: &str) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let (set, errors) = ObjectSet::load(&[dir], "default");
    assert!(errors.is_empty(), "{errors:?}");
    let raw = match kind {
        "Integration" => {
            set.integrations.iter().map(|o| &o.raw).find(|r| r["metadata"]["name"] == name).cloned()
        }
        "Credential" => {
            set.credentials.iter().map(|o| &o.raw).find(|r| r["metadata"]["name"] == name).cloned()
        }
        "OutboundMessage" => set
            .outbound_messages
            .iter()
            .map(|o| &o.raw)
            .find(|r| r["metadata"]["name"] == name)
            .cloned(),
        "Schedule" => {
            set.schedules.iter().map(|o| &o.raw).find(|r| r["metadata"]["name"] == name).cloned()
        }
        _ => None,
    };
    raw.unwrap_or_else(|| panic!("no example {kind} {name}"))
}

fn patched(base: &Value, ops: &Value) -> Value {
    let mut doc = base.clone();
    let ops: json_patch::Patch = serde_json::from_value(ops.clone()).expect("a JSON patch");
    json_patch::patch(&mut doc, &ops)
        .unwrap_or_else(|e| panic!("patch {ops:?} does not apply: {e}"));
    doc
}

/// One rule, exercised both ways.
struct Case {
    /// A distinctive part of the rule's message.
    message: &'static str,
    kind: &'static str,
    example: &'static str,
    /// Keeps the rule satisfied while touching what it checks.
    good: Value,
    /// Breaks the rule.
    bad: Value,
}

fn case(
    message: &'static str,
    kind: &'static str,
    example: &'static str,
    good: Value,
    bad: Value,
) -> Case {
    Case { message, kind, example, good, bad }
}

fn cases() -> Vec<Case> {
    let add = |path: &str, value: Value| json!({"op": "add", "path": path, "value": value});
    let remove = |path: &str| json!({"op": "remove", "path": path});
    vec![
        // Credential
        case(
            "type apiKey needs the apiKey block",
            "Credential",
            "pagerduty-sre",
            json!([add("/spec/apiKey", json!({"in": "header", "name": "X-Key"}))]),
            json!([remove("/spec/apiKey")]),
        ),
        case(
            "the apiKey block is only valid with type apiKey",
            "Credential",
            "servicenow-oauth",
            json!([add("/spec/oauth2/scopes", json!([]))]),
            json!([add("/spec/apiKey", json!({"in": "header", "name": "X-Key"}))]),
        ),
        case(
            "type oauth2ClientCredentials needs the oauth2 block",
            "Credential",
            "servicenow-oauth",
            json!([add("/spec/oauth2/audience", json!("api://x"))]),
            json!([remove("/spec/oauth2")]),
        ),
        case(
            "the oauth2 block is only valid with type oauth2ClientCredentials",
            "Credential",
            "pagerduty-sre",
            json!([add("/spec/type", json!("apiKey"))]),
            json!([add("/spec/oauth2", json!({"tokenUrl": "https://idp.example/token"}))]),
        ),
        case(
            "the hmac block is only valid with type hmac",
            "Credential",
            "monitoring-webhook-signing",
            json!([add("/spec/hmac", json!({"scheme": "stripe"}))]),
            json!([add("/spec/type", json!("bearer"))]),
        ),
        case(
            "name is required: the header, query parameter or body field",
            "Credential",
            "pagerduty-sre",
            json!([add("/spec/apiKey", json!({"in": "path"}))]),
            json!([add("/spec/apiKey", json!({"in": "query"}))]),
        ),
        case(
            "tokenUrl must be an https:// URL",
            "Credential",
            "servicenow-oauth",
            json!([
                add("/spec/oauth2/tokenUrl", json!("http://localhost:8080/token")),
                add("/spec/oauth2/insecureAllowHttp", json!(true))
            ]),
            json!([add("/spec/oauth2/tokenUrl", json!("http://idp.example/token"))]),
        ),
        case(
            "scheme custom needs the header",
            "Credential",
            "monitoring-webhook-signing",
            json!([add("/spec/hmac", json!({"scheme": "custom", "header": "X-Signature"}))]),
            json!([add("/spec/hmac", json!({"scheme": "custom"}))]),
        ),
        case(
            "owner.contact must be an email address or an https:// URL",
            "Credential",
            "servicenow-oauth",
            json!([add("/spec/owner/contact", json!("https://chat.example/itsm"))]),
            json!([add("/spec/owner/contact", json!("the itsm team"))]),
        ),
        // OutboundMessage
        case(
            "endpoint must be an https:// URL",
            "OutboundMessage",
            "servicenow-table",
            json!([
                add("/spec/endpoint", json!("http://sink.local:8080/api")),
                add("/spec/insecureAllowHttp", json!(true))
            ]),
            json!([add("/spec/endpoint", json!("http://acme.service-now.com/api"))]),
        ),
        case(
            "endpoint is fixed",
            "OutboundMessage",
            "servicenow-table",
            json!([add("/spec/endpoint", json!("https://acme.service-now.com:8443/api/now"))]),
            json!([add("/spec/endpoint", json!("https://acme.service-now.com/api?token=x"))]),
        ),
        case(
            "every method of a SOAP OutboundMessage needs a body",
            "OutboundMessage",
            "legacy-billing",
            json!([add("/spec/methods/1/body", json!("<x/>"))]),
            json!([remove("/spec/methods/1/body")]),
        ),
        case(
            "the soap block is only valid with protocol soap",
            "OutboundMessage",
            "servicenow-table",
            json!([add("/spec/protocol", json!("rest"))]),
            json!([add("/spec/soap", json!({"version": "1.2"}))]),
        ),
        case(
            "method names must be unique",
            "OutboundMessage",
            "servicenow-table",
            json!([add("/spec/methods/1/name", json!("other"))]),
            json!([add("/spec/methods/1/name", json!("create-incident"))]),
        ),
        case(
            "path must start with a single /",
            "OutboundMessage",
            "servicenow-table",
            json!([add("/spec/methods/0/path", json!("/table/incident/"))]),
            json!([add("/spec/methods/0/path", json!("//evil.example/table"))]),
        ),
        case(
            "path uses a ${variable} that is not declared",
            "OutboundMessage",
            "servicenow-table",
            json!([add("/spec/methods/0/path", json!("/table/${urgency}"))]),
            json!([add("/spec/methods/0/path", json!("/table/${table}"))]),
        ),
        case(
            "a query parameter uses a ${variable} that is not declared",
            "OutboundMessage",
            "servicenow-table",
            json!([add("/spec/methods/0/query/sysparm_display_value", json!("${impact}"))]),
            json!([add("/spec/methods/0/query/sysparm_display_value", json!("${display}"))]),
        ),
        case(
            "variable names must be unique",
            "OutboundMessage",
            "servicenow-table",
            json!([add("/spec/methods/0/variables/-", json!({"name": "caller"}))]),
            json!([add("/spec/methods/0/variables/-", json!({"name": "urgency"}))]),
        ),
        case(
            "headers may not set Host",
            "OutboundMessage",
            "servicenow-table",
            json!([add("/spec/methods/0/headers", json!({"X-Request-Source": "switchboard"}))]),
            json!([add("/spec/methods/0/headers", json!({"host": "evil.example"}))]),
        ),
        case(
            "initialBackoff must not exceed maxBackoff",
            "OutboundMessage",
            "servicenow-table",
            json!([add("/spec/retry/initialBackoff", json!("2m"))]),
            json!([add("/spec/retry/initialBackoff", json!("1h"))]),
        ),
        // Schedule
        case(
            "cron must have five fields",
            "Schedule",
            "hr-nightly",
            json!([add("/spec/cron", json!("@daily"))]),
            json!([add("/spec/cron", json!("0 2 * *"))]),
        ),
        case(
            "set the time zone with timeZone",
            "Schedule",
            "hr-nightly",
            json!([add("/spec/timeZone", json!("America/New_York"))]),
            json!([add("/spec/cron", json!("CRON_TZ=UTC 0 2 * * *"))]),
        ),
        case(
            "run needs exactly one of integration or outboundMessage",
            "Schedule",
            "billing-close-day",
            json!([add("/spec/run/outboundMessage/method", json!("create-invoice"))]),
            json!([add("/spec/run/integration", json!({"name": "order-invoicing"}))]),
        ),
        case(
            "variables only apply to an outboundMessage run",
            "Schedule",
            "hr-nightly",
            json!([add("/spec/suspend", json!(true))]),
            json!([add("/spec/run/variables", json!({"ledger": "EU-01"}))]),
        ),
        case(
            "a schedule that calls an outbound method needs an owner",
            "Schedule",
            "billing-close-day",
            json!([add("/spec/owner/onCall", json!("finance-oncall"))]),
            json!([remove("/spec/owner")]),
        ),
        // Integration: whole-spec rules
        case(
            "restricted and pii data may not be received by an unauthenticated webhook",
            "Integration",
            "monitoring-incident",
            json!([add("/spec/dataFlow/classification", json!("pii"))]),
            json!([
                add("/spec/dataFlow/classification", json!("pii")),
                add("/spec/source/webhook/auth", json!({"type": "none"}))
            ]),
        ),
        case(
            "restricted and pii data may not be received by an unauthenticated API route",
            "Integration",
            "order-invoicing",
            json!([add("/spec/dataFlow/classification", json!("restricted"))]),
            json!([
                add("/spec/dataFlow/classification", json!("restricted")),
                add("/spec/source/api/routes/0/auth", json!({"type": "none"}))
            ]),
        ),
        case(
            "synchronous delivery only applies to webhook and api sources",
            "Integration",
            "monitoring-incident",
            json!([add("/spec/delivery/mode", json!("synchronous"))]),
            json!([
                remove("/spec/source/webhook"),
                add(
                    "/spec/source/imap",
                    json!({"server": "imaps://imap.example:993", "credentialRef": {"name": "m"}})
                ),
                add("/spec/delivery/mode", json!("synchronous"))
            ]),
        ),
        case(
            "every coalesce key must be a field of transform.fieldMap",
            "Integration",
            "hr-employee-import",
            json!([add("/spec/transform/coalesceKeys", json!(["employee_id", "email"]))]),
            json!([add("/spec/transform/coalesceKeys", json!(["personnel_number"]))]),
        ),
        case(
            "an email action names a target that is not declared",
            "Integration",
            "vendor-email-intake",
            json!([add("/spec/source/imap/actions/0/targets", json!(["work-note", "incident"]))]),
            json!([add("/spec/source/imap/actions/0/targets", json!(["slack"]))]),
        ),
        case(
            "an API route names a target that is not declared",
            "Integration",
            "order-invoicing",
            json!([add("/spec/source/api/routes/0/targets", json!(["billing"]))]),
            json!([add("/spec/source/api/routes/0/targets", json!(["erp"]))]),
        ),
        case(
            "source needs exactly one of webhook, api, rest, database, file or imap",
            "Integration",
            "monitoring-incident",
            json!([add("/spec/source/webhook/path", json!("/events"))]),
            json!([add(
                "/spec/source/imap",
                json!({"server": "imaps://imap.example:993", "credentialRef": {"name": "m"}})
            )]),
        ),
        case(
            "credentialRef is required unless type is none",
            "Integration",
            "monitoring-incident",
            json!([add("/spec/source/webhook/auth", json!({"type": "none"}))]),
            json!([add("/spec/source/webhook/auth", json!({"type": "bearer"}))]),
        ),
        case(
            "type none takes no credentialRef",
            "Integration",
            "monitoring-incident",
            json!([add(
                "/spec/source/webhook/auth",
                json!({"type": "bearer", "credentialRef": {"name": "t"}})
            )]),
            json!([add("/spec/source/webhook/auth/type", json!("none"))]),
        ),
        case(
            "two routes share the same version, method and path",
            "Integration",
            "order-invoicing",
            json!([add(
                "/spec/source/api/routes/-",
                json!({"name": "v2", "version": "v2", "path": "/invoices", "auth": {"type": "bearer", "credentialRef": {"name": "webshop-api-token"}}})
            )]),
            json!([add(
                "/spec/source/api/routes/-",
                json!({"name": "copy", "version": "v1", "path": "/invoices", "auth": {"type": "bearer", "credentialRef": {"name": "webshop-api-token"}}})
            )]),
        ),
        case(
            "cursor pagination needs cursorPointer",
            "Integration",
            "monitoring-incident",
            json!([
                remove("/spec/source/webhook"),
                add(
                    "/spec/source/rest",
                    json!({"request": {"name": "a", "method": "b"}, "pagination": {"type": "cursor", "cursorPointer": "/next"}})
                )
            ]),
            json!([
                remove("/spec/source/webhook"),
                add(
                    "/spec/source/rest",
                    json!({"request": {"name": "a", "method": "b"}, "pagination": {"type": "cursor"}})
                )
            ]),
        ),
        case(
            "endpoint must be driver://host:port/database",
            "Integration",
            "crm-account-sync",
            json!([add(
                "/spec/source/database/connection/endpoint",
                json!("postgres://erp:5432/erp")
            )]),
            json!([add(
                "/spec/source/database/connection/endpoint",
                json!("postgres://reader:secret@erp:5432/erp")
            )]),
        ),
        case(
            "a query with a watermark must use the :watermark parameter",
            "Integration",
            "crm-account-sync",
            json!([add(
                "/spec/source/database/query",
                json!("SELECT * FROM customers WHERE updated_at > :watermark")
            )]),
            json!([add("/spec/source/database/query", json!("SELECT * FROM customers"))]),
        ),
        case(
            "xml imports need recordElement",
            "Integration",
            "hr-employee-import",
            json!([
                add("/spec/source/file/format", json!("xml")),
                remove("/spec/source/file/csv"),
                add("/spec/source/file/recordElement", json!("Worker"))
            ]),
            json!([add("/spec/source/file/format", json!("xml")), remove("/spec/source/file/csv")]),
        ),
        case(
            "csv settings only apply to format csv",
            "Integration",
            "hr-employee-import",
            json!([add("/spec/source/file/csv/delimiter", json!(";"))]),
            json!([add("/spec/source/file/format", json!("jsonLines"))]),
        ),
        case(
            "server must be imaps://host:993",
            "Integration",
            "vendor-email-intake",
            json!([
                add("/spec/source/imap/server", json!("imap://localhost:1143")),
                add("/spec/source/imap/insecureAllowPlaintext", json!(true))
            ]),
            json!([add("/spec/source/imap/server", json!("imap://imap.acme.example:143"))]),
        ),
        case(
            "afterProcessing move needs moveTo",
            "Integration",
            "vendor-email-intake",
            json!([
                add("/spec/source/imap/afterProcessing", json!("delete")),
                remove("/spec/source/imap/moveTo")
            ]),
            json!([remove("/spec/source/imap/moveTo")]),
        ),
        case(
            "a target needs exactly one of outboundMessage, database or email",
            "Integration",
            "monitoring-incident",
            json!([add("/spec/targets/0/when", json!("body.severity != 'info'"))]),
            json!([add(
                "/spec/targets/0/email",
                json!({"smtp": {"server": "smtps://smtp.example:465"}, "from": "a@b.c", "to": ["d@e.f"], "subject": "s", "body": "b"})
            )]),
        ),
        case(
            "server must be smtps://host:465 (implicit TLS) or smtp://host:587",
            "Integration",
            "hr-employee-import",
            json!([add(
                "/spec/alerting/routes/0/email/smtp/server",
                json!("smtp://smtp.acme.example:587")
            )]),
            json!([add(
                "/spec/alerting/routes/0/email/smtp/server",
                json!("https://smtp.acme.example")
            )]),
        ),
        case(
            "runbookUrl must be an https:// URL",
            "Integration",
            "monitoring-incident",
            json!([add("/spec/alerting/runbookUrl", json!("https://wiki.acme.example/runbook"))]),
            json!([add("/spec/alerting/runbookUrl", json!("wiki/runbook"))]),
        ),
        case(
            "an alert route needs exactly one of alertmanager",
            "Integration",
            "monitoring-incident",
            json!([add(
                "/spec/alerting/routes/0/pagerduty/url",
                json!("https://events.eu.pagerduty.com/v2/enqueue")
            )]),
            json!([add(
                "/spec/alerting/routes/0/alertmanager",
                json!({"url": "https://am.example"})
            )]),
        ),
        case(
            "a pagerduty route needs credentialRef",
            "Integration",
            "monitoring-incident",
            json!([add(
                "/spec/alerting/routes/0/pagerduty/credentialRef/name",
                json!("pagerduty-other")
            )]),
            json!([remove("/spec/alerting/routes/0/pagerduty/credentialRef")]),
        ),
        case(
            "a slack route needs credentialRef",
            "Integration",
            "change-approval",
            json!([add("/spec/alerting/routes/0/slack/url", json!("https://hooks.slack.com/"))]),
            json!([remove("/spec/alerting/routes/0/slack/credentialRef")]),
        ),
        case(
            "a teams route needs credentialRef",
            "Integration",
            "change-approval",
            json!([add(
                "/spec/alerting/routes/0",
                json!({"name": "teams", "teams": {"url": "https://acme.webhook.office.com", "credentialRef": {"name": "teams-hook"}}})
            )]),
            json!([add(
                "/spec/alerting/routes/0",
                json!({"name": "teams", "teams": {"url": "https://acme.webhook.office.com"}})
            )]),
        ),
        case(
            "url must be an https:// URL (http:// only with insecureAllowHttp: true)",
            "Integration",
            "monitoring-incident",
            json!([add(
                "/spec/alerting/routes/-",
                json!({"name": "am", "alertmanager": {"url": "http://alertmanager.monitoring:9093", "insecureAllowHttp": true}})
            )]),
            json!([add(
                "/spec/alerting/routes/-",
                json!({"name": "am", "alertmanager": {"url": "http://alertmanager.monitoring:9093"}})
            )]),
        ),
        case(
            "interval must be at least 10s",
            "Integration",
            "monitoring-incident",
            json!([
                add("/spec/healthChecks/interval", json!("10s")),
                add("/spec/healthChecks/timeout", json!("5s"))
            ]),
            json!([
                add("/spec/healthChecks/interval", json!("5s")),
                add("/spec/healthChecks/timeout", json!("1s"))
            ]),
        ),
        case(
            "timeout must be shorter than interval",
            "Integration",
            "monitoring-incident",
            json!([add("/spec/healthChecks/timeout", json!("59s"))]),
            json!([add("/spec/healthChecks/timeout", json!("60s"))]),
        ),
        case(
            "storageClassName only applies to storage persistentVolume",
            "Integration",
            "order-invoicing",
            json!([add("/spec/workers/queue/storageClassName", json!("fast-ssd"))]),
            json!([
                add("/spec/workers/queue/storage", json!("emptyDir")),
                add("/spec/workers/queue/storageClassName", json!("fast-ssd"))
            ]),
        ),
        case(
            "allowCidrs holds CIDRs",
            "Integration",
            "order-invoicing",
            json!([add("/spec/egress/allowCidrs/-", json!("fd00::/8"))]),
            json!([add("/spec/egress/allowCidrs/-", json!("billing.dc1"))]),
        ),
    ]
}

#[test]
fn every_example_satisfies_every_rule() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let (set, _) = ObjectSet::load(&[dir], "default");
    let objects = set
        .integrations
        .iter()
        .map(|o| ("Integration", &o.raw))
        .chain(set.credentials.iter().map(|o| ("Credential", &o.raw)))
        .chain(set.outbound_messages.iter().map(|o| ("OutboundMessage", &o.raw)))
        .chain(set.schedules.iter().map(|o| ("Schedule", &o.raw)));
    for (kind, raw) in objects {
        assert_eq!(validate_rules(kind, raw), vec![], "{kind} {}", raw["metadata"]["name"]);
    }
}

#[test]
fn every_rule_holds_on_good_objects_and_breaks_on_bad_ones() {
    let mut failures = Vec::new();
    for case in cases() {
        let base = example(case.kind, case.example);
        let good = validate_rules(case.kind, &patched(&base, &case.good));
        if !good.is_empty() {
            failures.push(format!("{:?}: the good object was refused: {good:?}", case.message));
        }
        let bad = validate_rules(case.kind, &patched(&base, &case.bad));
        if !bad.iter().any(|v| v.message.contains(case.message)) {
            failures.push(format!(
                "{:?}: the bad object was not refused by this rule; violations: {bad:?}",
                case.message
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every `x-kubernetes-validations` rule in a schema, with the schema node it sits on.
fn rules_of(schema: &Value, found: &mut Vec<(Value, Value)>) {
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        for rule in rules {
            found.push((rule.clone(), schema.clone()));
        }
    }
    for key in ["properties"] {
        if let Some(properties) = schema.get(key).and_then(Value::as_object) {
            for child in properties.values() {
                rules_of(child, found);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = schema.get(key).filter(|c| c.is_object()) {
            rules_of(child, found);
        }
    }
}

fn all_rules() -> Vec<(Value, Value)> {
    let mut found = Vec::new();
    for crd in api::crds() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        rules_of(&schema["openAPIV3Schema"], &mut found);
    }
    found
}

#[test]
fn every_rule_in_the_crds_has_a_case() {
    let covered: Vec<&str> = cases().iter().map(|c| c.message).collect();
    let mut missing = BTreeSet::new();
    for (rule, _) in all_rules() {
        let message = rule["message"].as_str().expect("every rule has a message");
        if !covered.iter().any(|c| message.contains(c)) {
            missing.insert(message.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "rules without a case:\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn every_rule_compiles_and_stays_within_the_cost_budget() {
    use kube::core::cel::{ScopeContext, WarningKind, analyze_rule, compile_schema};
    let rules = all_rules();
    assert!(rules.len() > 50, "found only {} rules", rules.len());
    for (rule, node) in rules {
        let text = rule["rule"].as_str().unwrap();
        assert!(cel::Program::compile(text).is_ok(), "rule does not compile: {text}");
        let compiled = compile_schema(&node);
        // kube-cel reports the variables of comprehensions (`.all(r, ...)`) as out of scope;
        // those are bound by the rule itself, so only the other warnings count.
        let warnings: Vec<_> = analyze_rule(text, &compiled, ScopeContext::CrdValidation)
            .into_iter()
            .filter(|w| {
                !(w.kind == WarningKind::WrongScope && bound_by_comprehension(text, &w.message))
            })
            .collect();
        assert!(warnings.is_empty(), "{text}: {warnings:?}");
    }
}

/// Whether the variable a scope warning names is bound by a comprehension in the rule.
fn bound_by_comprehension(rule: &str, message: &str) -> bool {
    let Some(name) = message.split('\'').nth(1) else { return false };
    ["all", "exists", "exists_one", "map", "filter"]
        .iter()
        .any(|m| rule.contains(&format!(".{m}({name},")))
}
