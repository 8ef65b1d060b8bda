//! Which routes an alert goes to, and with which credentials.
//!
//! ```text
//!   spec.alerting.routes ──────────────────────────────┐  (credentials: integration's namespace)
//!   ConfigMap switchboard-alert-routes, same namespace ─┼─▶ RouteSpec list ─▶ resolve ─▶ ResolvedRoute
//!   ConfigMap switchboard-alert-routes, operator's ns ──┘  (credentials: the ConfigMap's namespace)
//!            (the two defaults only with useDefaultRoutes, the default)
//! ```
//!
//! Default routes live in a ConfigMap named `switchboard-alert-routes`, key `routes.yaml`,
//! holding a YAML list in the shape of `spec.alerting.routes`. The one in an integration's
//! namespace is that namespace's default (a team's own on-call); the one in the operator's
//! namespace is the cluster default (the platform team's catch-all). Their routes are named
//! `namespace-default/NAME` and `cluster-default/NAME` in `failedRoutes`, Events and logs;
//! their `credentialRef`s name Credentials in the ConfigMap's own namespace, so a cluster
//! default's secrets never have to be copied into tenant namespaces.
//!
//! Resolving reads each route's Credential and its Secret through the API (the operator may
//! `get` Secrets; it never mounts them). Secret values are kept in `secrecy` types and leave
//! this module only towards the route's own endpoint.

use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};
use secrecy::{ExposeSecret, SecretSlice, SecretString};

use crate::api::{
    AlertRoute, ApiKeyLocation, Credential, CredentialType, HmacScheme as ApiHmacScheme,
    Integration, SecretRole,
};
use crate::render::secret_value;
use switchboard_worker::credentials::hmac::{HmacScheme, signing_key};

/// Name of the ConfigMaps holding default routes.
pub const DEFAULT_ROUTES_CONFIGMAP: &str = "switchboard-alert-routes";
/// Key of the route list inside those ConfigMaps.
pub const DEFAULT_ROUTES_KEY: &str = "routes.yaml";

/// The kinds of alert route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// Prometheus Alertmanager API v2.
    Alertmanager,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// Slack incoming webhook.
    Slack,
    /// Microsoft Teams (Workflows) incoming webhook.
    Teams,
    /// Email over SMTP.
    Email,
    /// Generic webhook, signed with Standard Webhooks.
    Webhook,
}

impl RouteKind {
    /// The name as written in YAML and in the `route_kind` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Alertmanager => "alertmanager",
            RouteKind::Pagerduty => "pagerduty",
            RouteKind::Slack => "slack",
            RouteKind::Teams => "teams",
            RouteKind::Email => "email",
            RouteKind::Webhook => "webhook",
        }
    }
}

/// Where a route was declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `spec.alerting.routes` of the integration.
    Integration,
    /// The ConfigMap in the integration's namespace.
    NamespaceDefault,
    /// The ConfigMap in the operator's namespace.
    ClusterDefault,
}

/// A declared route, with where its credentials live.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSpec {
    /// Where it was declared.
    pub origin: Origin,
    /// Namespace of its Credentials.
    pub namespace: String,
    /// The declaration.
    pub route: AlertRoute,
}

impl RouteSpec {
    /// The route's name in `failedRoutes`, Events and logs.
    pub fn id(&self) -> String {
        match self.origin {
            Origin::Integration => self.route.name.clone(),
            Origin::NamespaceDefault => format!("namespace-default/{}", self.route.name),
            Origin::ClusterDefault => format!("cluster-default/{}", self.route.name),
        }
    }

    /// The kind of the route (`None` when it declares none or several).
    pub fn kind(&self) -> Option<RouteKind> {
        route_kind(&self.route)
    }
}

/// The kind of a route declaration, when it declares exactly one.
pub fn route_kind(route: &AlertRoute) -> Option<RouteKind> {
    let kinds: Vec<RouteKind> = [
        (route.alertmanager.is_some(), RouteKind::Alertmanager),
        (route.pagerduty.is_some(), RouteKind::Pagerduty),
        (route.slack.is_some(), RouteKind::Slack),
        (route.teams.is_some(), RouteKind::Teams),
        (route.email.is_some(), RouteKind::Email),
        (route.webhook.is_some(), RouteKind::Webhook),
    ]
    .into_iter()
    .filter_map(|(set, kind)| set.then_some(kind))
    .collect();
    match kinds.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

/// Why a route cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The declaration is invalid (default routes are not checked by the API server).
    #[error("route {route} is invalid: {reason}")]
    Invalid {
        /// Route id.
        route: String,
        /// What is wrong.
        reason: String,
    },
    /// A default-routes ConfigMap cannot be read.
    #[error("ConfigMap {namespace}/{DEFAULT_ROUTES_CONFIGMAP}: {reason}")]
    DefaultRoutes {
        /// Its namespace.
        namespace: String,
        /// What is wrong.
        reason: String,
    },
    /// The route's Credential cannot be used.
    #[error("route {route}: Credential {namespace}/{credential}: {reason}")]
    Credential {
        /// Route id.
        route: String,
        /// Namespace of the Credential.
        namespace: String,
        /// Credential name.
        credential: String,
        /// What is wrong (never a value).
        reason: String,
    },
    /// The API server could not be asked.
    #[error("route {route}: reading its Credential failed: {reason}")]
    Api {
        /// Route id.
        route: String,
        /// The API error.
        reason: String,
    },
}

impl RouteError {
    /// Short category for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            RouteError::Invalid { .. } => "invalid-route",
            RouteError::DefaultRoutes { .. } => "invalid-default-routes",
            RouteError::Credential { .. } => "credential",
            RouteError::Api { .. } => "api",
        }
    }
}

/// Check a declaration as the API server's rules would (default routes come from ConfigMaps,
/// which nothing validates).
pub fn check_route(id: &str, route: &AlertRoute) -> Result<RouteKind, RouteError> {
    let invalid = |reason: &str| RouteError::Invalid { route: id.into(), reason: reason.into() };
    let kind = route_kind(route).ok_or_else(|| {
        invalid("it needs exactly one of alertmanager, pagerduty, slack, teams, email or webhook")
    })?;
    if let Some(http) = http_route(route) {
        let url = url::Url::parse(&http.url).map_err(|_| invalid("url is not a URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if http.insecure_allow_http => {}
            _ => return Err(invalid("url must be https:// (http:// only with insecureAllowHttp)")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("url must not carry user info; use credentialRef"));
        }
        let needs_credential =
            matches!(kind, RouteKind::Pagerduty | RouteKind::Slack | RouteKind::Teams);
        if needs_credential && http.credential_ref.is_none() {
            return Err(invalid("this kind of route needs credentialRef"));
        }
    }
    if let Some(email) = &route.email {
        let url =
            url::Url::parse(&email.smtp.server).map_err(|_| invalid("smtp.server is not a URL"))?;
        if !matches!(url.scheme(), "smtp" | "smtps") || url.host_str().is_none() {
            return Err(invalid("smtp.server must be smtps://host:465 or smtp://host:587"));
        }
        if email.to.is_empty() {
            return Err(invalid("email needs at least one recipient"));
        }
    }
    Ok(kind)
}

fn http_route(route: &AlertRoute) -> Option<&crate::api::HttpRoute> {
    route
        .alertmanager
        .as_ref()
        .or(route.pagerduty.as_ref())
        .or(route.slack.as_ref())
        .or(route.teams.as_ref())
        .or(route.webhook.as_ref())
}

/// Parse the routes of a default-routes ConfigMap (absent key: no routes).
pub fn parse_default_routes(configmap: &ConfigMap) -> Result<Vec<AlertRoute>, RouteError> {
    let namespace = configmap.namespace().unwrap_or_default();
    let Some(text) = configmap.data.as_ref().and_then(|d| d.get(DEFAULT_ROUTES_KEY)) else {
        return Ok(Vec::new());
    };
    let routes: Vec<AlertRoute> =
        yaml_serde::from_str(text).map_err(|e| RouteError::DefaultRoutes {
            namespace: namespace.clone(),
            reason: format!("key {DEFAULT_ROUTES_KEY} is not a list of alert routes: {e}"),
        })?;
    if routes.len() > 16 {
        return Err(RouteError::DefaultRoutes {
            namespace,
            reason: "at most 16 default routes".into(),
        });
    }
    Ok(routes)
}

/// Every route of an integration, in order: its own, then the namespace default, then the
/// cluster default (the defaults only with `useDefaultRoutes`).
pub fn routes_for(
    integration: &Integration,
    namespace_defaults: &[AlertRoute],
    cluster_defaults: &[AlertRoute],
    operator_namespace: &str,
) -> Vec<RouteSpec> {
    let namespace = integration.namespace().unwrap_or_default();
    let alerting = integration.spec.alerting.as_ref();
    let own = alerting.and_then(|a| a.routes.clone()).unwrap_or_default();
    let use_defaults = alerting.is_none_or(|a| a.use_default_routes);
    let mut specs: Vec<RouteSpec> = own
        .into_iter()
        .map(|route| RouteSpec { origin: Origin::Integration, namespace: namespace.clone(), route })
        .collect();
    if use_defaults {
        specs.extend(namespace_defaults.iter().cloned().map(|route| RouteSpec {
            origin: Origin::NamespaceDefault,
            namespace: namespace.clone(),
            route,
        }));
        specs.extend(cluster_defaults.iter().cloned().map(|route| RouteSpec {
            origin: Origin::ClusterDefault,
            namespace: operator_namespace.to_string(),
            route,
        }));
    }
    specs
}

/// Authentication of an HTTP route's notifications.
pub enum HttpAuth {
    /// None.
    None,
    /// HTTP basic.
    Basic {
        /// User name.
        username: SecretString,
        /// Password.
        password: SecretString,
    },
    /// `Authorization: Bearer`.
    Bearer(SecretString),
    /// An API key in a header, the query, the JSON body or the URL path.
    ApiKey {
        /// Where.
        location: ApiKeyLocation,
        /// Header, parameter or field name (not used for `path`).
        name: Option<String>,
        /// The key.
        key: SecretString,
    },
    /// A signature over the body.
    Hmac {
        /// Scheme.
        scheme: HmacScheme,
        /// Signing key.
        key: SecretSlice<u8>,
    },
}

impl fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpAuth::None => "None",
            HttpAuth::Basic { .. } => "Basic([REDACTED])",
            HttpAuth::Bearer(_) => "Bearer([REDACTED])",
            HttpAuth::ApiKey { .. } => "ApiKey([REDACTED])",
            HttpAuth::Hmac { .. } => "Hmac([REDACTED])",
        })
    }
}

/// An HTTP route, ready to send to.
#[derive(Debug)]
pub struct HttpTarget {
    /// The declared URL (without the secret part of an incoming webhook).
    pub url: url::Url,
    /// Whether http:// and loopback addresses are allowed.
    pub insecure_allow_http: bool,
    /// How notifications authenticate.
    pub auth: HttpAuth,
}

/// An email route, ready to send to.
pub struct EmailTarget {
    /// `smtps://host:465` or `smtp://host:587`.
    pub server: url::Url,
    /// Allow plaintext SMTP (and loopback) for local development.
    pub insecure_allow_plaintext: bool,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// SMTP AUTH user and password.
    pub credentials: Option<(SecretString, SecretString)>,
}

impl fmt::Debug for EmailTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailTarget")
            .field("server", &self.server.as_str())
            .field("from", &self.from)
            .field("to", &self.to)
            .field("credentials", &self.credentials.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// Where a resolved route sends to.
#[derive(Debug)]
pub enum Target {
    /// An HTTP endpoint.
    Http(HttpTarget),
    /// An SMTP server.
    Email(EmailTarget),
}

/// A route with its credentials read.
#[derive(Debug)]
pub struct ResolvedRoute {
    /// Route id.
    pub id: String,
    /// Kind.
    pub kind: RouteKind,
    /// Where it sends to.
    pub target: Target,
}

impl ResolvedRoute {
    /// Every secret text of this route, for redaction of anything that leaves the router.
    pub fn secret_texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.target {
            Target::Http(http) => match &http.auth {
                HttpAuth::None | HttpAuth::Hmac { .. } => {}
                HttpAuth::Basic { password, .. } => out.push(password.expose_secret().to_string()),
                HttpAuth::Bearer(token) => out.push(token.expose_secret().to_string()),
                HttpAuth::ApiKey { key, .. } => {
                    let key = key.expose_secret();
                    out.push(key.to_string());
                    out.push(key.trim_start_matches('/').to_string());
                }
            },
            Target::Email(email) => {
                if let Some((_, password)) = &email.credentials {
                    out.push(password.expose_secret().to_string());
                }
            }
        }
        out.retain(|s| s.len() >= 4);
        out
    }
}

/// Values read from a Credential's Secret.
struct CredentialValues {
    credential: Credential,
    secret: Secret,
}

impl CredentialValues {
    fn text(&self, role: SecretRole) -> Option<SecretString> {
        let bytes = self.bytes(role)?;
        let text = String::from_utf8(bytes).ok()?;
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        (!text.is_empty()).then(|| SecretString::from(text))
    }

    fn bytes(&self, role: SecretRole) -> Option<Vec<u8>> {
        let key = self
            .credential
            .spec
            .secret_keys()
            .into_iter()
            .find(|(r, _, _)| *r == role)
            .map(|(_, key, _)| key)?;
        secret_value(&self.secret, &key)
    }
}

/// Resolve a route: check it, and read its Credential and Secret through the API.
pub async fn resolve(client: &Client, spec: &RouteSpec) -> Result<ResolvedRoute, RouteError> {
    let id = spec.id();
    let kind = check_route(&id, &spec.route)?;
    let credential_name = match (&spec.route.email, http_route(&spec.route)) {
        (Some(email), _) => email.smtp.credential_ref.as_ref().map(|c| c.name.clone()),
        (None, Some(http)) => http.credential_ref.as_ref().map(|c| c.name.clone()),
        (None, None) => None,
    };
    let values = match &credential_name {
        Some(name) => Some(read_credential(client, &spec.namespace, name, &id).await?),
        None => None,
    };
    let problem = |reason: String| RouteError::Credential {
        route: id.clone(),
        namespace: spec.namespace.clone(),
        credential: credential_name.clone().unwrap_or_default(),
        reason,
    };
    let target = if let Some(email) = &spec.route.email {
        let credentials = match &values {
            None => None,
            Some(v) if v.credential.spec.type_ == CredentialType::Basic => {
                let user = v.text(SecretRole::Username);
                let password = v.text(SecretRole::Password);
                match (user, password) {
                    (Some(user), Some(password)) => Some((user, password)),
                    _ => return Err(problem("its Secret lacks the username or password".into())),
                }
            }
            Some(v) => {
                return Err(problem(format!(
                    "an email route needs a basic Credential, not {}",
                    v.credential.spec.type_.as_str()
                )));
            }
        };
        Target::Email(EmailTarget {
            server: url::Url::parse(&email.smtp.server).map_err(|_| RouteError::Invalid {
                route: id.clone(),
                reason: "smtp.server is not a URL".into(),
            })?,
            insecure_allow_plaintext: email.smtp.insecure_allow_plaintext,
            from: email.from.clone(),
            to: email.to.clone(),
            credentials,
        })
    } else {
        let http = http_route(&spec.route).expect("checked: an HTTP route");
        let auth = match &values {
            None => HttpAuth::None,
            Some(v) => http_auth(kind, v).map_err(problem)?,
        };
        Target::Http(HttpTarget {
            url: url::Url::parse(&http.url).map_err(|_| RouteError::Invalid {
                route: id.clone(),
                reason: "url is not a URL".into(),
            })?,
            insecure_allow_http: http.insecure_allow_http,
            auth,
        })
    };
    Ok(ResolvedRoute { id, kind, target })
}

fn http_auth(kind: RouteKind, values: &CredentialValues) -> Result<HttpAuth, String> {
    let type_ = values.credential.spec.type_;
    let missing = |role: &str| format!("its Secret has no (or an empty) {role}");
    let auth = match type_ {
        CredentialType::Basic => HttpAuth::Basic {
            username: values.text(SecretRole::Username).ok_or_else(|| missing("username"))?,
            password: values.text(SecretRole::Password).ok_or_else(|| missing("password"))?,
        },
        CredentialType::Bearer => {
            HttpAuth::Bearer(values.text(SecretRole::Token).ok_or_else(|| missing("token"))?)
        }
        CredentialType::ApiKey => {
            let settings = values
                .credential
                .spec
                .api_key
                .as_ref()
                .ok_or("an apiKey Credential needs its apiKey block")?;
            HttpAuth::ApiKey {
                location: settings.in_,
                name: settings.name.clone(),
                key: values.text(SecretRole::ApiKey).ok_or_else(|| missing("apiKey"))?,
            }
        }
        CredentialType::Hmac => {
            let settings = values.credential.spec.hmac.as_ref();
            let declared = settings.map_or(ApiHmacScheme::StandardWebhooks, |s| s.scheme);
            let header = settings.and_then(|s| s.header.as_deref());
            let scheme = match declared {
                ApiHmacScheme::StandardWebhooks => HmacScheme::StandardWebhooks,
                ApiHmacScheme::Github => HmacScheme::Github,
                ApiHmacScheme::Stripe => HmacScheme::Stripe,
                ApiHmacScheme::Custom => HmacScheme::from_config("custom", header)?,
            };
            let secret = values.bytes(SecretRole::Secret).ok_or_else(|| missing("secret"))?;
            let key = signing_key(&scheme, &secret)
                .map_err(|why| format!("its signing secret is unusable: {why}"))?;
            HttpAuth::Hmac { scheme, key }
        }
        other => {
            return Err(format!(
                "a {} route cannot use a {} Credential",
                kind.as_str(),
                other.as_str()
            ));
        }
    };
    let fits = match (kind, &auth) {
        (RouteKind::Alertmanager, HttpAuth::Basic { .. } | HttpAuth::Bearer(_)) => true,
        (RouteKind::Pagerduty, HttpAuth::ApiKey { location: ApiKeyLocation::Body, .. }) => true,
        (RouteKind::Slack | RouteKind::Teams, HttpAuth::ApiKey { location, .. }) => {
            matches!(location, ApiKeyLocation::Path | ApiKeyLocation::Query)
        }
        (RouteKind::Webhook, _) => true,
        _ => false,
    };
    if !fits {
        return Err(match kind {
            RouteKind::Alertmanager => "an alertmanager route takes a basic or bearer Credential",
            RouteKind::Pagerduty => {
                "a pagerduty route takes an apiKey Credential with in: body, name: routing_key"
            }
            RouteKind::Slack | RouteKind::Teams => {
                "an incoming-webhook route takes an apiKey Credential with in: path or in: query"
            }
            _ => "this Credential does not fit the route",
        }
        .into());
    }
    Ok(auth)
}

async fn read_credential(
    client: &Client,
    namespace: &str,
    name: &str,
    route: &str,
) -> Result<CredentialValues, RouteError> {
    let api_error =
        |e: kube::Error| RouteError::Api { route: route.into(), reason: api_reason(&e) };
    let problem = |reason: String| RouteError::Credential {
        route: route.into(),
        namespace: namespace.into(),
        credential: name.into(),
        reason,
    };
    let credentials: Api<Credential> = Api::namespaced(client.clone(), namespace);
    let credential = credentials
        .get_opt(name)
        .await
        .map_err(api_error)?
        .ok_or_else(|| problem("not found".into()))?;
    let secret_name = credential.spec.secret_ref.name.clone();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(&secret_name)
        .await
        .map_err(api_error)?
        .ok_or_else(|| problem(format!("its Secret {secret_name:?} is not found")))?;
    Ok(CredentialValues { credential, secret })
}

/// A short description of an API error (status code and reason, never a body).
pub fn api_reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("HTTP {} {}", status.code, status.reason),
        _ => "the API server could not be reached".into(),
    }
}

/// Read the default routes of `namespace` (no ConfigMap: none).
pub async fn default_routes(
    client: &Client,
    namespace: &str,
) -> Result<Vec<AlertRoute>, RouteError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(DEFAULT_ROUTES_CONFIGMAP).await {
        Ok(Some(configmap)) => parse_default_routes(&configmap),
        Ok(None) => Ok(Vec::new()),
        Err(error) => Err(RouteError::DefaultRoutes {
            namespace: namespace.into(),
            reason: format!("cannot be read: {}", api_reason(&error)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integration(alerting: &str) -> Integration {
        yaml_serde::from_str(&format!(
            r#"
apiVersion: switchboard.dev/v1alpha1
kind: Integration
metadata: {{name: orders, namespace: shop}}
spec:
  owner: {{team: sre, contact: sre@example.com}}
  dataFlow: {{sourceSystem: A, targetSystem: B, classification: internal}}
  source: {{webhook: {{auth: {{type: none}}}}}}
  targets: [{{name: t, outboundMessage: {{name: m, method: post}}}}]
{alerting}
"#
        ))
        .unwrap()
    }

    fn route(yaml: &str) -> AlertRoute {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn own_routes_come_first_then_namespace_then_cluster_defaults() {
        let defaults = vec![route(
            "{name: team-slack, slack: {url: 'https://hooks.slack.com', credentialRef: {name: s}}}",
        )];
        let cluster = vec![route(
            "{name: catch-all, alertmanager: {url: 'http://am:9093', insecureAllowHttp: true}}",
        )];
        let with_own = integration(
            "  alerting: {routes: [{name: pager, pagerduty: {url: 'https://events.pagerduty.com/v2/enqueue', credentialRef: {name: pd}}}]}",
        );
        let specs = routes_for(&with_own, &defaults, &cluster, "switchboard-system");
        let ids: Vec<String> = specs.iter().map(RouteSpec::id).collect();
        assert_eq!(ids, ["pager", "namespace-default/team-slack", "cluster-default/catch-all"]);
        assert_eq!(specs[1].namespace, "shop");
        assert_eq!(specs[2].namespace, "switchboard-system", "cluster credentials stay home");

        let no_defaults = integration("  alerting: {useDefaultRoutes: false}");
        assert!(routes_for(&no_defaults, &defaults, &cluster, "x").is_empty());
        let no_alerting = integration("");
        assert_eq!(routes_for(&no_alerting, &defaults, &cluster, "x").len(), 2);
    }

    #[test]
    fn default_routes_are_checked_like_the_api_server_would() {
        let bad = [
            ("{name: a}", "exactly one"),
            ("{name: a, slack: {url: 'https://x'}, webhook: {url: 'https://y'}}", "exactly one"),
            ("{name: a, webhook: {url: 'http://plain.example.com'}}", "https://"),
            ("{name: a, webhook: {url: 'https://u:p@x.example.com'}}", "user info"),
            ("{name: a, pagerduty: {url: 'https://events.pagerduty.com'}}", "credentialRef"),
            ("{name: a, email: {smtp: {server: 'imap://x'}, from: a@b.c, to: [x@y.z]}}", "smtp"),
        ];
        for (yaml, expected) in bad {
            let error = check_route("a", &route(yaml)).unwrap_err();
            assert!(error.to_string().contains(expected), "{yaml}: {error}");
            assert_eq!(error.category(), "invalid-route");
        }
        assert_eq!(
            check_route(
                "a",
                &route("{name: a, webhook: {url: 'http://127.0.0.1:9', insecureAllowHttp: true}}")
            ),
            Ok(RouteKind::Webhook)
        );
    }

    #[test]
    fn default_route_configmaps_parse_or_say_why() {
        let mut configmap = ConfigMap::default();
        configmap.metadata.namespace = Some("shop".into());
        assert_eq!(parse_default_routes(&configmap), Ok(Vec::new()));
        configmap.data = Some(
            [(
                DEFAULT_ROUTES_KEY.to_string(),
                "- {name: a, webhook: {url: 'https://x.example.com'}}".to_string(),
            )]
            .into(),
        );
        assert_eq!(parse_default_routes(&configmap).unwrap().len(), 1);
        configmap.data =
            Some([(DEFAULT_ROUTES_KEY.to_string(), "routes: nope".to_string())].into());
        let error = parse_default_routes(&configmap).unwrap_err();
        assert_eq!(error.category(), "invalid-default-routes");
        assert!(error.to_string().contains("shop/switchboard-alert-routes"), "{error}");
    }
}
