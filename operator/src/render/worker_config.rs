//! Integration (+ references) → [`WorkerConfig`], the operator/worker contract, plus the
//! volume mounts the config's credential directories need.
//!
//! Every reference is resolved here: OutboundMessage methods are copied in full, Credentials
//! become a directory where their Secret's keys are mounted under role file names, durations
//! become milliseconds. The worker therefore never reads the API to do its job, and the config
//! holds no secret value.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use switchboard_worker::config::{
    self as contract, ApiConfig, ApiKeyConfig, ApiRouteConfig, CircuitBreakerConfig,
    CredentialConfig, DataFlowInfo, DatabaseConnectionConfig, DatabasePullConfig,
    DatabaseTargetConfig, DeliveryConfig, EgressConfig, EmailActionConfig, EmailTargetConfig,
    EndpointConfig, FileImportConfig, HealthChecksConfig, HmacConfig, ImapConfig,
    InboundAuthConfig, MethodConfig, OAuth2Config, OutboundCall, OwnerInfo, PaginationConfig,
    ProbeConfig, RestPullConfig, RetryConfig, RowRuleConfig, ServerConfig, SmtpConfig,
    SourceConfig, Subject, TargetConfig, TargetKind, TransformConfig, VariableConfig,
    WatermarkConfig, WebhookConfig, WorkerConfig,
};

use switchboard_worker::outbound::template::{Encoding, Template, TemplateError};

use crate::api::OutboundMessageSpec;

use super::{Problems, References, RenderErrorReason, RenderErrors, child_name};
use crate::api::{
    ApiKeyLocation, CredentialType, DatabaseConnection, DatabaseTls, InboundAuth, InboundAuthType,
    Integration, Method, Owner, RetryPolicy, SmtpServer,
};

/// A Credential's Secret as mounted into worker pods.
#[derive(Clone, Debug, PartialEq)]
pub struct CredentialMount {
    /// Name of the Secret.
    pub secret: String,
    /// Secret key → file name (the role's file name).
    pub items: Vec<(String, String)>,
    /// Directory of the files.
    pub directory: String,
    /// Name of the pod volume.
    pub volume: String,
}

/// A CA bundle from an OutboundMessage's `tls.caSecretRef`, mounted as one file.
#[derive(Clone, Debug, PartialEq)]
pub struct CaMount {
    /// Name of the Secret.
    pub secret: String,
    /// Key of the bundle.
    pub key: String,
    /// Directory holding `ca.crt`.
    pub directory: String,
    /// Name of the pod volume.
    pub volume: String,
}

/// The volumes a worker config needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerMounts {
    /// Credential mounts by Credential name.
    pub credentials: BTreeMap<String, CredentialMount>,
    /// CA mounts by OutboundMessage name.
    pub certificate_authorities: BTreeMap<String, CaMount>,
}

/// Directory of a CA bundle mount.
const CA_MOUNT_PATH: &str = "/var/run/switchboard/ca";

/// Resolves references within one namespace, recording what is missing or wrong.
pub(crate) struct Resolver<'a> {
    refs: &'a References,
    pub(crate) problems: Problems,
    credentials: BTreeMap<String, CredentialConfig>,
    pub(crate) mounts: WorkerMounts,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(refs: &'a References, problems: Problems) -> Self {
        Resolver { refs, problems, credentials: BTreeMap::new(), mounts: WorkerMounts::default() }
    }

    pub(crate) fn into_parts(self) -> (Problems, BTreeMap<String, CredentialConfig>, WorkerMounts) {
        (self.problems, self.credentials, self.mounts)
    }

    /// Resolve a Credential for a use that accepts `allowed` types; mount it; return its name.
    pub(crate) fn credential(
        &mut self,
        field: &str,
        name: &str,
        allowed: &[CredentialType],
        purpose: &str,
    ) -> Option<String> {
        let Some(credential) = self.refs.credentials.get(name) else {
            self.problems.add(
                RenderErrorReason::MissingReference,
                field,
                format!("Credential {name:?} not found in the namespace"),
            );
            return None;
        };
        let spec = &credential.spec;
        if !allowed.contains(&spec.type_) {
            let expected: Vec<&str> = allowed.iter().map(|t| t.as_str()).collect();
            self.problems.add(
                RenderErrorReason::WrongCredentialType,
                field,
                format!(
                    "Credential {name:?} has type {}, but {purpose} needs {}",
                    spec.type_.as_str(),
                    expected.join(" or ")
                ),
            );
            return None;
        }
        if !self.credentials.contains_key(name) {
            let directory = format!("{}/{name}", contract::CREDENTIALS_MOUNT_PATH);
            let items = spec
                .secret_keys()
                .into_iter()
                .map(|(role, key, _)| (key, role.file_name().to_string()))
                .collect();
            self.mounts.credentials.insert(
                name.to_string(),
                CredentialMount {
                    secret: spec.secret_ref.name.clone(),
                    items,
                    directory: directory.clone(),
                    volume: child_name(&format!("cred-{name}"), "", 63),
                },
            );
            self.credentials.insert(
                name.to_string(),
                CredentialConfig {
                    type_: spec.type_.as_str().into(),
                    directory,
                    api_key: spec.api_key.as_ref().map(|k| ApiKeyConfig {
                        in_: api_key_location(k.in_).into(),
                        name: k.name.clone(),
                    }),
                    oauth2: spec.oauth2.as_ref().map(|o| OAuth2Config {
                        token_url: o.token_url.clone(),
                        scopes: o.scopes.clone(),
                        audience: o.audience.clone(),
                        auth_style: match o.auth_style {
                            crate::api::OAuth2AuthStyle::Basic => "basic".into(),
                            crate::api::OAuth2AuthStyle::Body => "body".into(),
                        },
                        refresh_skew_seconds: o.refresh_skew_seconds,
                    }),
                    hmac: (spec.type_ == CredentialType::Hmac).then(|| {
                        let settings = spec.hmac.clone();
                        HmacConfig {
                            scheme: settings
                                .as_ref()
                                .map(|h| hmac_scheme(h.scheme))
                                .unwrap_or("standardWebhooks")
                                .into(),
                            header: settings.and_then(|h| h.header),
                        }
                    }),
                },
            );
        }
        Some(name.to_string())
    }

    /// Resolve one method call of an OutboundMessage, with its credentials and CA.
    pub(crate) fn call(
        &mut self,
        field: &str,
        message: &str,
        method: &str,
        variables: Option<&BTreeMap<String, String>>,
    ) -> Option<OutboundCall> {
        let Some(outbound) = self.refs.outbound_messages.get(message) else {
            self.problems.add(
                RenderErrorReason::MissingReference,
                field,
                format!("OutboundMessage {message:?} not found in the namespace"),
            );
            return None;
        };
        let spec = &outbound.spec;
        let Some(found) = spec.methods.iter().find(|m| m.name == method) else {
            let names: Vec<&str> = spec.methods.iter().map(|m| m.name.as_str()).collect();
            self.problems.add(
                RenderErrorReason::MissingReference,
                field,
                format!(
                    "OutboundMessage {message:?} has no method {method:?} (it has: {})",
                    names.join(", ")
                ),
            );
            return None;
        };
        let om_field = format!("OutboundMessage {message}");
        if let Some(problem) = method_problem(message, spec, found) {
            self.problems.add(
                RenderErrorReason::InvalidTemplate,
                field,
                format!("{om_field}: {problem}"),
            );
        }
        let credential = spec.credential_ref.as_ref().and_then(|c| {
            self.credential(
                &format!("{om_field}: spec.credentialRef"),
                &c.name,
                &[
                    CredentialType::Basic,
                    CredentialType::Bearer,
                    CredentialType::ApiKey,
                    CredentialType::OAuth2ClientCredentials,
                    CredentialType::Mtls,
                    CredentialType::Hmac,
                ],
                "an OutboundMessage",
            )
        });
        let tls = spec.tls.as_ref();
        let client_certificate =
            tls.and_then(|t| t.client_certificate_ref.as_ref()).and_then(|c| {
                self.credential(
                    &format!("{om_field}: spec.tls.clientCertificateRef"),
                    &c.name,
                    &[CredentialType::Mtls],
                    "a client certificate",
                )
            });
        let ca_file = tls.and_then(|t| t.ca_secret_ref.as_ref()).map(|ca| {
            let directory = format!("{CA_MOUNT_PATH}/{message}");
            self.mounts.certificate_authorities.insert(
                message.to_string(),
                CaMount {
                    secret: ca.name.clone(),
                    key: ca.key.clone(),
                    directory: directory.clone(),
                    volume: child_name(&format!("ca-{message}"), "", 63),
                },
            );
            format!("{directory}/ca.crt")
        });
        let timeout_ms =
            self.problems.duration_ms(&format!("{om_field}: spec.timeout"), &spec.timeout);
        let retry = self.retry(&format!("{om_field}: spec.retry"), &spec.retry);
        let open_for_ms = self.problems.duration_ms(
            &format!("{om_field}: spec.circuitBreaker.openFor"),
            &spec.circuit_breaker.open_for,
        );
        Some(OutboundCall {
            endpoint: EndpointConfig {
                name: message.to_string(),
                url: spec.endpoint.clone(),
                protocol: spec.protocol.as_str().into(),
                soap_version: spec.soap.as_ref().map(|s| match s.version {
                    crate::api::SoapVersion::V1_1 => "1.1".into(),
                    crate::api::SoapVersion::V1_2 => "1.2".into(),
                }),
                credential,
                client_certificate,
                ca_file,
                server_name: tls.and_then(|t| t.server_name.clone()),
                timeout_ms,
                retry,
                circuit_breaker: CircuitBreakerConfig {
                    failure_threshold: spec.circuit_breaker.failure_threshold,
                    open_for_ms,
                },
            },
            method: method_config(found),
            variables: variables.cloned().unwrap_or_default(),
        })
    }

    pub(crate) fn retry(&mut self, field: &str, retry: &RetryPolicy) -> RetryConfig {
        RetryConfig {
            max_attempts: retry.max_attempts,
            initial_backoff_ms: self
                .problems
                .duration_ms(&format!("{field}.initialBackoff"), &retry.initial_backoff),
            max_backoff_ms: self
                .problems
                .duration_ms(&format!("{field}.maxBackoff"), &retry.max_backoff),
        }
    }

    fn inbound_auth(&mut self, field: &str, auth: &InboundAuth) -> InboundAuthConfig {
        let allowed: &[CredentialType] = match auth.type_ {
            InboundAuthType::Signature => &[CredentialType::Hmac],
            InboundAuthType::Bearer => &[CredentialType::Bearer],
            InboundAuthType::Basic => &[CredentialType::Basic],
            InboundAuthType::Mtls => &[CredentialType::Mtls],
            InboundAuthType::None => &[],
        };
        let credential = auth.credential_ref.as_ref().and_then(|c| {
            self.credential(
                &format!("{field}.credentialRef"),
                &c.name,
                allowed,
                &format!("inbound auth type {}", auth.type_.as_str()),
            )
        });
        InboundAuthConfig {
            type_: auth.type_.as_str().into(),
            credential,
            tolerance_seconds: auth.tolerance_seconds,
        }
    }

    fn database(
        &mut self,
        field: &str,
        connection: &DatabaseConnection,
    ) -> DatabaseConnectionConfig {
        let credential = self
            .credential(
                &format!("{field}.credentialRef"),
                &connection.credential_ref.name,
                &[CredentialType::Basic],
                "a database connection",
            )
            .unwrap_or_default();
        let ca_file = connection.ca_secret_ref.as_ref().map(|ca| {
            // One mount per Secret and key: a source and a target may share a CA.
            let key = format!("db-{}-{}", ca.name, ca.key);
            let directory = format!("{CA_MOUNT_PATH}/{key}");
            self.mounts.certificate_authorities.insert(
                key.clone(),
                CaMount {
                    secret: ca.name.clone(),
                    key: ca.key.clone(),
                    directory: directory.clone(),
                    volume: child_name(&format!("ca-{key}"), "", 63),
                },
            );
            format!("{directory}/ca.crt")
        });
        DatabaseConnectionConfig {
            driver: connection.driver.as_str().into(),
            endpoint: connection.endpoint.clone(),
            credential,
            tls: match connection.tls {
                DatabaseTls::Disable => "disable".into(),
                DatabaseTls::Require => "require".into(),
                DatabaseTls::VerifyFull => "verifyFull".into(),
            },
            ca_file,
        }
    }

    fn smtp(&mut self, field: &str, smtp: &SmtpServer) -> SmtpConfig {
        let credential = smtp.credential_ref.as_ref().and_then(|c| {
            self.credential(
                &format!("{field}.credentialRef"),
                &c.name,
                &[CredentialType::Basic],
                "an SMTP server",
            )
        });
        SmtpConfig {
            server: smtp.server.clone(),
            credential,
            insecure_allow_plaintext: smtp.insecure_allow_plaintext,
            ca_file: None,
        }
    }
}

fn api_key_location(location: ApiKeyLocation) -> &'static str {
    match location {
        ApiKeyLocation::Header => "header",
        ApiKeyLocation::Query => "query",
        ApiKeyLocation::Body => "body",
        ApiKeyLocation::Path => "path",
    }
}

fn hmac_scheme(scheme: crate::api::HmacScheme) -> &'static str {
    match scheme {
        crate::api::HmacScheme::StandardWebhooks => "standardWebhooks",
        crate::api::HmacScheme::Github => "github",
        crate::api::HmacScheme::Stripe => "stripe",
        crate::api::HmacScheme::Custom => "custom",
    }
}

/// What a worker would refuse about one method: its templates (syntax, undeclared variables,
/// placement in the body) and URL, judged by the worker's own request builder so that render,
/// lint and the OutboundMessage status agree with the runtime.
pub fn method_problem(
    message: &str,
    spec: &OutboundMessageSpec,
    method: &Method,
) -> Option<String> {
    let call = OutboundCall {
        endpoint: EndpointConfig {
            name: message.to_string(),
            url: spec.endpoint.clone(),
            protocol: spec.protocol.as_str().into(),
            soap_version: spec.soap.as_ref().map(|s| match s.version {
                crate::api::SoapVersion::V1_1 => "1.1".into(),
                crate::api::SoapVersion::V1_2 => "1.2".into(),
            }),
            credential: None,
            client_certificate: None,
            ca_file: None,
            server_name: None,
            timeout_ms: 1000,
            retry: RetryConfig { max_attempts: 1, initial_backoff_ms: 0, max_backoff_ms: 0 },
            circuit_breaker: CircuitBreakerConfig { failure_threshold: 1, open_for_ms: 0 },
        },
        method: method_config(method),
        variables: BTreeMap::new(),
    };
    switchboard_worker::outbound::request::check_call(&call).err().map(|e| e.to_string())
}

/// A method as the worker sees it.
pub(crate) fn method_config(method: &Method) -> MethodConfig {
    MethodConfig {
        name: method.name.clone(),
        http_method: method.http_method.as_str().into(),
        path: method.path.clone(),
        query: method.query.clone().unwrap_or_default(),
        headers: method.headers.clone().unwrap_or_default(),
        body: method.body.clone(),
        content_type: method.content_type.clone(),
        soap_action: method.soap_action.clone(),
        variables: method
            .variables()
            .iter()
            .map(|v| VariableConfig {
                name: v.name.clone(),
                default: v.default.clone(),
                max_length: v.max_length,
            })
            .collect(),
        expected_statuses: method.expected_statuses.clone().unwrap_or_default(),
        capture: method.capture.clone().unwrap_or_default(),
    }
}

pub(crate) fn owner_info(owner: &Owner) -> OwnerInfo {
    OwnerInfo {
        team: owner.team.clone(),
        contact: owner.contact.clone(),
        on_call: owner.on_call.clone(),
    }
}

/// Render an Integration's worker config and the mounts it needs.
pub fn render_worker_config(
    integration: &Integration,
    refs: &References,
) -> Result<(WorkerConfig, WorkerMounts), RenderErrors> {
    let namespace = integration.namespace().unwrap_or_else(|| "default".into());
    let name = integration.name_any();
    let spec = &integration.spec;
    let mut r = Resolver::new(refs, Problems::new("Integration", &namespace, &name));

    let source = render_source(&mut r, integration);
    let mut targets = Vec::new();
    for (i, target) in spec.targets.iter().enumerate() {
        let field = format!("spec.targets[{i}]");
        let kind = if let Some(om) = &target.outbound_message {
            r.call(&format!("{field}.outboundMessage"), &om.name, &om.method, om.variables.as_ref())
                .map(TargetKind::OutboundMessage)
        } else if let Some(db) = &target.database {
            Some(TargetKind::Database(DatabaseTargetConfig {
                connection: r.database(&format!("{field}.database.connection"), &db.connection),
                table: db.table.clone(),
            }))
        } else if let Some(email) = &target.email {
            Some(TargetKind::Email(EmailTargetConfig {
                smtp: r.smtp(&format!("{field}.email.smtp"), &email.smtp),
                from: email.from.clone(),
                to: email.to.clone(),
                subject: email.subject.clone(),
                body: email.body.clone(),
            }))
        } else {
            r.problems.add(
                RenderErrorReason::InvalidValue,
                field.as_str(),
                "a target needs outboundMessage, database or email",
            );
            None
        };
        if let Some(kind) = kind {
            check_target_variables(&mut r, integration, i, &kind);
            targets.push(TargetConfig {
                name: target.name.clone(),
                when: target.when.clone(),
                kind,
            });
        }
    }

    let transform = spec
        .transform
        .as_ref()
        .map(|t| TransformConfig {
            filter: t.filter.clone(),
            field_map: t.field_map.clone().unwrap_or_default(),
            coalesce_keys: t.coalesce_keys.clone().unwrap_or_default(),
            row_rules: t
                .row_rules
                .iter()
                .flatten()
                .map(|rule| RowRuleConfig {
                    rule: rule.rule.clone(),
                    message: rule.message.clone(),
                })
                .collect(),
        })
        .unwrap_or_default();

    let delivery = &spec.delivery;
    let retry = r.retry("spec.delivery.retry", &delivery.retry);
    let retention_ms = r
        .problems
        .duration_ms("spec.delivery.deadLetter.retention", &delivery.dead_letter.retention);
    let delivery = DeliveryConfig {
        mode: match delivery.mode {
            crate::api::DeliveryMode::Durable => "durable".into(),
            crate::api::DeliveryMode::Synchronous => "synchronous".into(),
        },
        retry,
        dead_letter_retention_seconds: retention_ms / 1000,
        dead_letter_max_entries: delivery.dead_letter.max_entries,
        concurrency: delivery.concurrency,
    };

    let health_checks = spec.health_checks.as_ref().map(|checks| {
        let mut probes = Vec::new();
        for (i, probe) in checks.probes.iter().flatten().enumerate() {
            let field = format!("spec.healthChecks.probes[{i}].call");
            if let Some(call) =
                r.call(&field, &probe.call.name, &probe.call.method, probe.variables.as_ref())
            {
                probes.push(ProbeConfig { name: probe.name.clone(), call });
            }
        }
        HealthChecksConfig {
            interval_ms: r.problems.duration_ms("spec.healthChecks.interval", &checks.interval),
            timeout_ms: r.problems.duration_ms("spec.healthChecks.timeout", &checks.timeout),
            targets: checks.targets,
            credentials: checks.credentials,
            certificate_expiry_warning_seconds: r.problems.duration_ms(
                "spec.healthChecks.certificateExpiryWarning",
                &checks.certificate_expiry_warning,
            ) / 1000,
            probes,
        }
    });

    let (problems, credentials, mounts) = r.into_parts();
    let config = WorkerConfig {
        api_version: contract::CONFIG_API_VERSION.into(),
        kind: contract::CONFIG_KIND.into(),
        subject: Subject { kind: "Integration".into(), namespace, name },
        owner: owner_info(&spec.owner),
        data_flow: Some(DataFlowInfo {
            source_system: spec.data_flow.source_system.clone(),
            target_system: spec.data_flow.target_system.clone(),
            classification: spec.data_flow.classification.as_str().into(),
            fields: spec.data_flow.fields.clone(),
        }),
        source,
        transform,
        targets,
        delivery,
        credentials,
        egress: EgressConfig {
            allow_cidrs: spec
                .egress
                .as_ref()
                .and_then(|e| e.allow_cidrs.clone())
                .unwrap_or_default(),
        },
        health_checks,
        run: None,
        lineage: None,
        server: ServerConfig {
            log_level: spec.workers.log_level.clone(),
            ..ServerConfig::default()
        },
    };
    problems.finish((config, mounts))
}

fn render_source(r: &mut Resolver<'_>, integration: &Integration) -> Option<SourceConfig> {
    let source = &integration.spec.source;
    if let Some(webhook) = &source.webhook {
        return Some(SourceConfig::Webhook(WebhookConfig {
            path: webhook.path.clone(),
            auth: r.inbound_auth("spec.source.webhook.auth", &webhook.auth),
            max_body_bytes: webhook.max_body_bytes,
            id_header: webhook.id_header.clone(),
        }));
    }
    if let Some(api) = &source.api {
        let routes = api
            .routes
            .iter()
            .enumerate()
            .map(|(i, route)| ApiRouteConfig {
                name: route.name.clone(),
                version: route.version.clone(),
                method: route.method.clone(),
                path: route.path.clone(),
                auth: r.inbound_auth(&format!("spec.source.api.routes[{i}].auth"), &route.auth),
                targets: route.targets.clone().unwrap_or_default(),
            })
            .collect();
        return Some(SourceConfig::Api(ApiConfig { routes, max_body_bytes: api.max_body_bytes }));
    }
    if let Some(rest) = &source.rest {
        let request = r.call(
            "spec.source.rest.request",
            &rest.request.name,
            &rest.request.method,
            rest.variables.as_ref(),
        )?;
        check_call_variables(r, "spec.source.rest.request", &request, &BTreeSet::new());
        let p = &rest.pagination;
        return Some(SourceConfig::Rest(RestPullConfig {
            request,
            records_pointer: rest.records_pointer.clone(),
            pagination: PaginationConfig {
                type_: serde_json::to_value(p.type_).ok()?.as_str()?.to_string(),
                param: p.param.clone(),
                size_param: p.size_param.clone(),
                page_size: p.page_size,
                cursor_pointer: p.cursor_pointer.clone(),
                max_pages: p.max_pages,
            },
        }));
    }
    if let Some(db) = &source.database {
        return Some(SourceConfig::Database(DatabasePullConfig {
            connection: r.database("spec.source.database.connection", &db.connection),
            query: db.query.clone(),
            watermark: db
                .watermark
                .as_ref()
                .map(|w| WatermarkConfig { column: w.column.clone(), initial: w.initial.clone() }),
            batch_size: db.batch_size,
        }));
    }
    if let Some(file) = &source.file {
        let fetch = r.call("spec.source.file.fetch", &file.fetch.name, &file.fetch.method, None)?;
        check_call_variables(r, "spec.source.file.fetch", &fetch, &BTreeSet::new());
        return Some(SourceConfig::File(FileImportConfig {
            fetch,
            format: serde_json::to_value(file.format).ok()?.as_str()?.to_string(),
            csv_delimiter: file.csv.as_ref().map(|c| c.delimiter.clone()),
            csv_header: file.csv.as_ref().map(|c| c.header),
            records_pointer: file.records_pointer.clone(),
            record_element: file.record_element.clone(),
            max_bytes: file.max_bytes,
            max_rejected_percent: file.max_rejected_percent,
        }));
    }
    if let Some(imap) = &source.imap {
        let credential = r
            .credential(
                "spec.source.imap.credentialRef",
                &imap.credential_ref.name,
                &[CredentialType::Basic],
                "an IMAP mailbox",
            )
            .unwrap_or_default();
        return Some(SourceConfig::Imap(ImapConfig {
            server: imap.server.clone(),
            credential,
            mailbox: imap.mailbox.clone(),
            actions: imap
                .actions
                .iter()
                .flatten()
                .map(|a| EmailActionConfig {
                    name: a.name.clone(),
                    when: a.when.clone(),
                    variables: a.variables.clone().unwrap_or_default(),
                    targets: a.targets.clone().unwrap_or_default(),
                })
                .collect(),
            after_processing: serde_json::to_value(imap.after_processing)
                .ok()?
                .as_str()?
                .to_string(),
            move_to: imap.move_to.clone(),
            max_messages: imap.max_messages,
            ca_file: None,
        }));
    }
    r.problems.add(RenderErrorReason::InvalidValue, "spec.source", "source needs exactly one kind");
    None
}

/// Variables the transform provides to every target.
fn mapped_variables(integration: &Integration) -> BTreeSet<String> {
    let spec = &integration.spec;
    let mut provided: BTreeSet<String> = spec
        .transform
        .as_ref()
        .and_then(|t| t.field_map.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    if let Some(actions) = spec.source.imap.as_ref().and_then(|i| i.actions.as_ref()) {
        provided.extend(
            actions.iter().flat_map(|a| a.variables.iter().flatten().map(|(k, _)| k.clone())),
        );
    }
    provided
}

/// Check that every variable a target needs (without a default) is provided.
fn check_target_variables(
    r: &mut Resolver<'_>,
    integration: &Integration,
    index: usize,
    kind: &TargetKind,
) {
    let provided = mapped_variables(integration);
    let field = format!("spec.targets[{index}]");
    match kind {
        TargetKind::OutboundMessage(call) => {
            check_call_variables(r, &format!("{field}.outboundMessage"), call, &provided)
        }
        TargetKind::Email(email) => {
            let declared: Vec<VariableConfig> = provided
                .iter()
                .map(|name| VariableConfig {
                    name: name.clone(),
                    default: None,
                    max_length: u32::MAX,
                })
                .collect();
            for (part, template) in [("subject", &email.subject), ("body", &email.body)] {
                if let Err(error) = Template::parse(template, Encoding::Text, &declared) {
                    let reason = match error {
                        TemplateError::Undeclared { .. } => RenderErrorReason::MissingVariable,
                        _ => RenderErrorReason::InvalidTemplate,
                    };
                    r.problems.add(
                        reason,
                        format!("{field}.email.{part}"),
                        format!("{error} (variables come from transform.fieldMap)"),
                    );
                }
            }
        }
        TargetKind::Database(_) => {}
    }
}

/// Check that each required variable of a call is provided by the mapping or fixed values.
fn check_call_variables(
    r: &mut Resolver<'_>,
    field: &str,
    call: &OutboundCall,
    provided: &BTreeSet<String>,
) {
    for variable in &call.method.variables {
        let given =
            provided.contains(&variable.name) || call.variables.contains_key(&variable.name);
        if variable.default.is_none() && !given {
            r.problems.add(
                RenderErrorReason::MissingVariable,
                field,
                format!(
                    "method {:?} of OutboundMessage {:?} requires variable {:?}, which neither transform.fieldMap nor the fixed variables provide",
                    call.method.name, call.endpoint.name, variable.name
                ),
            );
        }
    }
    let declared: BTreeSet<&str> = call.method.variables.iter().map(|v| v.name.as_str()).collect();
    for name in call.variables.keys() {
        if !declared.contains(name.as_str()) {
            r.problems.add(
                RenderErrorReason::MissingVariable,
                field,
                format!(
                    "variable {name:?} is not declared by method {:?} of OutboundMessage {:?}",
                    call.method.name, call.endpoint.name
                ),
            );
        }
    }
}
