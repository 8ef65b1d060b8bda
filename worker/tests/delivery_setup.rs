//! `Outbound::new` checks a whole worker config up front: every configured call's templates,
//! the credentials they name, credential settings and the egress allow-list.

use switchboard_worker::config::WorkerConfig;
use switchboard_worker::delivery::{Outbound, SetupError};

fn config(edit: impl FnOnce(&mut serde_json::Value)) -> WorkerConfig {
    let mut value = serde_json::json!({
        "apiVersion": "worker.switchboard.dev/v1",
        "kind": "WorkerConfig",
        "subject": {"kind": "Integration", "namespace": "ops", "name": "incidents"},
        "owner": {"team": "platform", "contact": "platform@example.com"},
        "delivery": {"mode": "durable", "retry": {"maxAttempts": 3, "initialBackoffMs": 100, "maxBackoffMs": 1000},
                     "deadLetterRetentionSeconds": 86400, "deadLetterMaxEntries": 100, "concurrency": 4},
        "credentials": {
            "snow": {"type": "basic", "directory": "/var/run/switchboard/credentials/snow"},
            "token": {"type": "bearer", "directory": "/var/run/switchboard/credentials/token"}
        },
        "targets": [{"name": "servicenow", "type": "outboundMessage",
            "endpoint": {"name": "servicenow", "url": "https://example.service-now.com/api", "protocol": "rest",
                         "credential": "snow", "timeoutMs": 10000,
                         "retry": {"maxAttempts": 3, "initialBackoffMs": 100, "maxBackoffMs": 1000},
                         "circuitBreaker": {"failureThreshold": 5, "openForMs": 30000}},
            "method": {"name": "create", "httpMethod": "POST", "path": "/now/table/incident",
                       "body": "{\"short_description\":\"${summary}\"}",
                       "variables": [{"name": "summary", "maxLength": 160}]}
        }]
    });
    edit(&mut value);
    serde_json::from_value(value).unwrap()
}

type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

fn target(value: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut value["targets"][0]
}

#[test]
fn a_consistent_config_sets_up() {
    Outbound::new(&config(|_| {})).unwrap();
}

#[test]
fn inconsistent_configs_are_refused_with_the_place_named() {
    let cases: Vec<(&str, Edit)> = vec![
        ("undeclared", Box::new(|v| target(v)["method"]["path"] = "/now/table/${table}".into())),
        ("unknown credential", Box::new(|v| target(v)["endpoint"]["credential"] = "nope".into())),
        (
            "client certificate type",
            Box::new(|v| target(v)["endpoint"]["clientCertificate"] = "token".into()),
        ),
        (
            "templated host",
            Box::new(|v| target(v)["endpoint"]["url"] = "https://${host}/api".into()),
        ),
        (
            "header injection",
            Box::new(|v| target(v)["method"]["headers"] = serde_json::json!({"Host": "evil"})),
        ),
    ];
    for (name, edit) in cases {
        match Outbound::new(&config(edit)) {
            Err(SetupError::Call { call, .. }) => assert_eq!(call, "target servicenow", "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let bad_cidr = config(|v| v["egress"] = serde_json::json!({"allowCidrs": ["10.0.0.0/33"]}));
    assert!(matches!(Outbound::new(&bad_cidr), Err(SetupError::Egress(_))));
    let no_block = config(|v| {
        v["credentials"]["key"] = serde_json::json!({"type": "apiKey", "directory": "/x"})
    });
    let error = Outbound::new(&no_block).unwrap_err();
    assert!(matches!(error, SetupError::Credential(_)));
    assert_eq!(error.to_string(), "credential \"key\" is misconfigured: apiKey block missing");
}
