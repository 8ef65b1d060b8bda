//! Pointing the applied objects at devcluster's request sink.
//!
//! The examples name real systems (`https://acme.service-now.com`, Slack, PagerDuty). With
//! no network and no accounts, `switchboard dev` rewrites, in the objects it applies (never
//! in the files):
//!
//! | object | field | becomes |
//! |---|---|---|
//! | OutboundMessage | `spec.endpoint` | `http://<sink>/<host><path>`, `insecureAllowHttp: true` |
//! | Credential (oauth2) | `spec.oauth2.tokenUrl` | `http://<sink>/<host><path>`, `insecureAllowHttp: true` |
//! | Integration | `spec.alerting.routes[].{alertmanager,pagerduty,slack,teams,webhook}.url` | the same |
//! | Integration | `spec.egress.allowCidrs` | adds `<sink IP>/32`, so the worker's SSRF guard lets the calls through |
//!
//! The original host stays as the first path segment, so the sink's records say which
//! system a call was meant for. Each OutboundMessage method's first expected status becomes
//! a sink rule, so a `create-incident` answered by the sink gets the `201` it expects.
//! Databases, SMTP and IMAP are not HTTP: they keep their addresses (and fail visibly).

use std::net::SocketAddr;

use devcluster::sink::SinkRule;
use serde_json::{Value, json};

/// What was changed, for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// `Kind namespace/name`.
    pub object: String,
    /// The field.
    pub field: String,
    /// The URL as written.
    pub from: String,
    /// The URL used.
    pub to: String,
}

/// The sink URL standing for `url`: the host becomes the first path segment.
pub fn sink_url(sink: SocketAddr, url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let rest = rest.trim_end_matches('/');
    Some(format!("http://{sink}/{rest}"))
}

/// Rewrites one object in place; returns what changed and the sink rules it needs.
pub fn point_at_sink(obj: &mut Value, sink: SocketAddr) -> (Vec<Rewrite>, Vec<SinkRule>) {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let object = format!("{kind} {ns}/{name}");
    let mut rewrites = Vec::new();
    let mut rules = Vec::new();
    let mut swap = |holder: &mut Value, field: &str, label: String| {
        let Some(from) = holder.get(field).and_then(Value::as_str).map(str::to_string) else {
            return;
        };
        let Some(to) = sink_url(sink, &from) else { return };
        holder[field] = json!(to);
        holder["insecureAllowHttp"] = json!(true);
        rewrites.push(Rewrite { object: object.clone(), field: label, from, to });
    };
    match kind.as_str() {
        "OutboundMessage" => {
            if let Some(spec) = obj.get_mut("spec") {
                swap(spec, "endpoint", "spec.endpoint".into());
                let base = spec
                    .get("endpoint")
                    .and_then(Value::as_str)
                    .and_then(|e| e.strip_prefix(&format!("http://{sink}")))
                    .unwrap_or("")
                    .to_string();
                for m in spec.get("methods").and_then(Value::as_array).into_iter().flatten() {
                    let path = m.get("path").and_then(Value::as_str).unwrap_or("");
                    let fixed = path.split("${").next().unwrap_or("");
                    let status = m
                        .get("expectedStatuses")
                        .and_then(Value::as_array)
                        .and_then(|a| a.first())
                        .and_then(Value::as_u64)
                        .and_then(|s| u16::try_from(s).ok());
                    if let Some(status) = status {
                        rules.push(SinkRule {
                            method: m.get("httpMethod").and_then(Value::as_str).map(str::to_string),
                            path_prefix: format!("{base}{fixed}"),
                            status,
                        });
                    }
                }
            }
        }
        "Credential" => {
            if let Some(oauth2) = obj.pointer_mut("/spec/oauth2") {
                swap(oauth2, "tokenUrl", "spec.oauth2.tokenUrl".into());
            }
        }
        "Integration" => {
            if let Some(routes) =
                obj.pointer_mut("/spec/alerting/routes").and_then(Value::as_array_mut)
            {
                for (i, route) in routes.iter_mut().enumerate() {
                    for channel in ["alertmanager", "pagerduty", "slack", "teams", "webhook"] {
                        if let Some(target) = route.get_mut(channel) {
                            swap(target, "url", format!("spec.alerting.routes[{i}].{channel}.url"));
                        }
                    }
                }
            }
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                let cidr = format!("{}/32", sink.ip());
                let egress = spec.entry("egress").or_insert_with(|| json!({}));
                if !egress.is_object() {
                    *egress = json!({});
                }
                let list = egress
                    .as_object_mut()
                    .expect("an object")
                    .entry("allowCidrs")
                    .or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut()
                    && !a.iter().any(|c| c.as_str() == Some(&cidr))
                {
                    a.push(json!(cidr));
                }
            }
        }
        _ => {}
    }
    (rewrites, rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    #[test]
    fn outbound_endpoints_move_to_the_sink_with_rules_for_expected_statuses() {
        let mut obm = json!({"kind": "OutboundMessage", "metadata": {"name": "sn", "namespace": "a"},
            "spec": {"endpoint": "https://acme.service-now.com/api/now", "methods": [
                {"name": "create", "httpMethod": "POST", "path": "/table/incident", "expectedStatuses": [201]},
                {"name": "note", "httpMethod": "PATCH", "path": "/table/incident/${sys_id}", "expectedStatuses": [200]}]}});
        let (rewrites, rules) = point_at_sink(&mut obm, sink());
        assert_eq!(obm["spec"]["endpoint"], "http://127.0.0.1:4000/acme.service-now.com/api/now");
        assert_eq!(obm["spec"]["insecureAllowHttp"], true);
        assert_eq!(rewrites.len(), 1);
        assert_eq!(rewrites[0].from, "https://acme.service-now.com/api/now");
        assert_eq!(
            rules[0],
            SinkRule {
                method: Some("POST".into()),
                path_prefix: "/acme.service-now.com/api/now/table/incident".into(),
                status: 201
            }
        );
        assert_eq!(rules[1].path_prefix, "/acme.service-now.com/api/now/table/incident/");
    }

    #[test]
    fn token_urls_alert_routes_and_egress_are_rewritten() {
        let mut cred = json!({"kind": "Credential", "metadata": {"name": "c", "namespace": "a"},
            "spec": {"oauth2": {"tokenUrl": "https://login.example.com/oauth2/token"}}});
        point_at_sink(&mut cred, sink());
        assert_eq!(
            cred["spec"]["oauth2"]["tokenUrl"],
            "http://127.0.0.1:4000/login.example.com/oauth2/token"
        );
        assert_eq!(cred["spec"]["oauth2"]["insecureAllowHttp"], true);
        let mut integration = json!({"kind": "Integration", "metadata": {"name": "i", "namespace": "a"},
            "spec": {"alerting": {"routes": [{"name": "p", "pagerduty": {"url": "https://events.pagerduty.com/v2/enqueue"}},
                {"name": "m", "email": {"to": ["x@example.com"]}}]}, "egress": {"allowCidrs": ["10.0.0.0/8"]}}});
        let (rewrites, _) = point_at_sink(&mut integration, sink());
        assert_eq!(rewrites.len(), 1);
        assert_eq!(rewrites[0].field, "spec.alerting.routes[0].pagerduty.url");
        assert_eq!(
            integration["spec"]["egress"]["allowCidrs"],
            json!(["10.0.0.0/8", "127.0.0.1/32"])
        );
        assert!(
            integration["spec"]["alerting"]["routes"][1]["email"]
                .get("insecureAllowHttp")
                .is_none()
        );
    }
}
