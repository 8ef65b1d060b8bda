//! API errors and their rendering as a Kubernetes `Status`.
//!
//! Every failure a client can see is an [`ApiError`]; [`ApiError::status`] turns it into the
//! `Status` object (reason, code, message and `details`) that a real API server sends, so that
//! `kubectl`, `kube::Client` and tests can match on the same fields they would in a cluster.

use serde_json::{Value, json};

use crate::schema::Cause;

/// Identifies the resource an error is about, as `Status.details` names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// API group (empty for core).
    pub group: String,
    /// Resource (plural) name, e.g. `deployments`.
    pub resource: String,
    /// Kind, e.g. `Deployment` (used by Invalid errors).
    pub kind: String,
    /// Object name, if any.
    pub name: String,
}

impl Subject {
    /// `deployments.apps` or `pods`: how messages name a resource.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// `Deployment.apps` or `Pod`: how Invalid messages name a kind.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// An error returned to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404 NotFound for an object.
    #[error("{} {:?} not found", .0.qualified_resource(), .0.name)]
    NotFound(Subject),
    /// 404 for an unknown URL or resource type.
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// 409 AlreadyExists.
    #[error("{} {:?} already exists", .0.qualified_resource(), .0.name)]
    AlreadyExists(Subject),
    /// 409 Conflict, with the detail after the colon.
    #[error("Operation cannot be fulfilled on {} {:?}: {detail}", .subject.qualified_resource(), .subject.name)]
    Conflict {
        /// What the conflict is about.
        subject: Subject,
        /// Why it conflicts.
        detail: String,
    },
    /// 409 from server-side apply, with one cause per conflicting field.
    #[error("{message}")]
    ApplyConflict {
        /// The object.
        subject: Box<Subject>,
        /// Full message (`Apply failed with N conflicts: ...`).
        message: String,
        /// `(manager message, field)` pairs.
        conflicts: Vec<(String, String)>,
    },
    /// 422 Invalid with field causes.
    #[error("{} {:?} is invalid: {}", .subject.qualified_kind(), .subject.name, causes_text(.causes))]
    Invalid {
        /// The object.
        subject: Subject,
        /// What is wrong with it.
        causes: Vec<Cause>,
    },
    /// 400 BadRequest.
    #[error("{0}")]
    BadRequest(String),
    /// 403 Forbidden.
    #[error("{} is forbidden: {detail}", forbidden_subject(.subject))]
    Forbidden {
        /// What was asked for.
        subject: Subject,
        /// Why it is refused.
        detail: String,
    },
    /// 401 Unauthorized.
    #[error("Unauthorized")]
    Unauthorized,
    /// 405 MethodNotAllowed.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 410 Gone / Expired.
    #[error("{0}")]
    Gone(String),
    /// 415 UnsupportedMediaType.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 406 NotAcceptable.
    #[error("{0}")]
    NotAcceptable(String),
    /// 500 InternalError.
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// 503 ServiceUnavailable (a proxied backend cannot be reached).
    #[error("{0}")]
    ServiceUnavailable(String),
}

fn forbidden_subject(s: &Subject) -> String {
    if s.name.is_empty() {
        s.qualified_resource()
    } else {
        format!("{} {:?}", s.qualified_resource(), s.name)
    }
}

fn causes_text(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes.iter().map(ToString::to_string).collect();
    if parts.len() == 1 { parts[0].clone() } else { format!("[{}]", parts.join(", ")) }
}

impl ApiError {
    /// HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound(_) | ApiError::NoRoute => 404,
            ApiError::AlreadyExists(_)
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Forbidden { .. } => 403,
            ApiError::Unauthorized => 401,
            ApiError::MethodNotAllowed => 405,
            ApiError::Gone(_) => 410,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::NotAcceptable(_) => 406,
            ApiError::Internal(_) => 500,
            ApiError::ServiceUnavailable(_) => 503,
        }
    }

    /// The `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::Gone(_) => "Expired",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::Internal(_) => "InternalError",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
        }
    }

    /// The complete `Status` object.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound(s)
            | ApiError::AlreadyExists(s)
            | ApiError::Conflict { subject: s, .. } => Some(details(s, &s.resource, Vec::new())),
            ApiError::Forbidden { subject, .. } => {
                Some(details(subject, &subject.resource, Vec::new()))
            }
            ApiError::Invalid { subject, causes } => {
                let causes = causes
                    .iter()
                    .map(|c| json!({"reason": c.reason(), "message": c.message, "field": c.field}))
                    .collect();
                Some(details(subject, &subject.kind, causes))
            }
            ApiError::ApplyConflict { subject, conflicts, .. } => {
                let causes = conflicts
                    .iter()
                    .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": m, "field": f}))
                    .collect();
                Some(details(subject, &subject.resource, causes))
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }

    /// Builds a 422 for `subject` from schema causes.
    pub fn invalid(subject: Subject, causes: Vec<Cause>) -> Self {
        ApiError::Invalid { subject, causes }
    }
}

fn details(s: &Subject, kind: &str, causes: Vec<Value>) -> Value {
    let mut d = serde_json::Map::new();
    if !s.name.is_empty() {
        d.insert("name".into(), json!(s.name));
    }
    if !s.group.is_empty() {
        d.insert("group".into(), json!(s.group));
    }
    d.insert("kind".into(), json!(kind));
    if !causes.is_empty() {
        d.insert("causes".into(), Value::Array(causes));
    }
    Value::Object(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CauseType;

    #[test]
    fn not_found_matches_api_server_shape() {
        let s = Subject {
            group: "apps".into(),
            resource: "deployments".into(),
            kind: "Deployment".into(),
            name: "web".into(),
        };
        let st = ApiError::NotFound(s).status();
        assert_eq!(st["message"], r#"deployments.apps "web" not found"#);
        assert_eq!(st["details"], json!({"name": "web", "group": "apps", "kind": "deployments"}));
        assert_eq!(st["code"], 404);
    }

    #[test]
    fn invalid_lists_causes() {
        let s = Subject {
            group: "".into(),
            resource: "configmaps".into(),
            kind: "ConfigMap".into(),
            name: "c".into(),
        };
        let causes = vec![
            Cause {
                field: "a".into(),
                kind: CauseType::Required,
                message: "Required value".into(),
            },
            Cause {
                field: "b".into(),
                kind: CauseType::Invalid,
                message: "Invalid value: 1: bad".into(),
            },
        ];
        let st = ApiError::invalid(s, causes).status();
        assert_eq!(
            st["message"],
            r#"ConfigMap "c" is invalid: [a: Required value, b: Invalid value: 1: bad]"#
        );
        assert_eq!(
            st["details"]["causes"][0],
            json!({"reason": "FieldValueRequired", "message": "Required value", "field": "a"})
        );
    }
}
