//! Reading custom resources from files: directories, multi-document YAML and JSON.
//!
//! This is how `switchboard render`, `lint` and `report` read a GitOps directory. Every object
//! remembers where it came from, so a problem names the file, the document and the object, and
//! a field error names the field.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{API_VERSION, Credential, Integration, OutboundMessage, Schedule};

/// Where an object was read from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// Line of the document's first line in the file (1-based).
    pub line: usize,
    /// Position of the document in the file (1-based).
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} (document {})", self.file.display(), self.line, self.document)
    }
}

/// An object with its origin and its raw form (for schema validation).
#[derive(Clone, Debug)]
pub struct Located<T> {
    /// Where it came from.
    pub origin: Origin,
    /// The object, typed.
    pub object: T,
    /// The object as read, with the namespace filled in.
    pub raw: Value,
}

/// Everything read from a set of paths.
#[derive(Clone, Debug, Default)]
pub struct ObjectSet {
    /// Integrations.
    pub integrations: Vec<Located<Integration>>,
    /// Credentials.
    pub credentials: Vec<Located<Credential>>,
    /// OutboundMessages.
    pub outbound_messages: Vec<Located<OutboundMessage>>,
    /// Schedules.
    pub schedules: Vec<Located<Schedule>>,
    /// Secrets (used for credential hashes and rotation age, never printed).
    pub secrets: Vec<Located<Secret>>,
    /// Other Kubernetes objects that may sit beside the custom resources (Namespaces,
    /// ConfigMaps): kept, not interpreted.
    pub others: Vec<Located<Value>>,
}

/// Kinds read besides the four Switchboard kinds.
const OTHER_KINDS: &[(&str, &str)] = &[("v1", "Namespace"), ("v1", "ConfigMap")];

/// A file, document or object that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct LoadError {
    /// File and document, and the object when known.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

impl ObjectSet {
    /// Read every `.yaml`, `.yml` and `.json` file under the given paths (directories are
    /// walked recursively, in name order). Objects without a namespace get `namespace`.
    /// Whatever could be read is returned along with every error, so `lint` can report them
    /// all in one run.
    pub fn load(paths: &[PathBuf], namespace: &str) -> (ObjectSet, Vec<LoadError>) {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            collect_files(path, &mut files, &mut errors);
        }
        let mut set = ObjectSet::default();
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => set.add_text(&file, &text, namespace, &mut errors),
                Err(e) => errors.push(LoadError {
                    location: file.display().to_string(),
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        (set, errors)
    }

    /// Add the documents of one file's text.
    pub fn add_text(
        &mut self,
        file: &Path,
        text: &str,
        namespace: &str,
        errors: &mut Vec<LoadError>,
    ) {
        for (document, (line, chunk)) in split_documents(text).into_iter().enumerate() {
            let origin = Origin { file: file.to_path_buf(), line, document: document + 1 };
            let value: Value = match yaml_serde::from_str(chunk) {
                Ok(value) => value,
                Err(e) => {
                    // The parser counts lines from the document; say where it is in the file.
                    let at = e
                        .location()
                        .map(|l| format!(" at line {}, column {}", line + l.line() - 1, l.column()))
                        .unwrap_or_default();
                    let text = e.to_string();
                    let reason = text.split(" at line ").next().unwrap_or(&text);
                    errors.push(LoadError {
                        location: origin.to_string(),
                        message: format!("not valid YAML{at}: {reason}"),
                    });
                    continue;
                }
            };
            match value {
                Value::Null => {}
                Value::Object(_) => self.add_value(origin, value, namespace, errors),
                other => errors.push(LoadError {
                    location: origin.to_string(),
                    message: format!(
                        "expected a Kubernetes object (a mapping), found {}",
                        type_name(&other)
                    ),
                }),
            }
        }
    }

    fn add_value(
        &mut self,
        origin: Origin,
        mut value: Value,
        namespace: &str,
        errors: &mut Vec<LoadError>,
    ) {
        let api_version =
            value.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
        let name =
            value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        if kind == "List" && api_version == "v1" {
            if let Some(items) = value.get("items").and_then(Value::as_array).cloned() {
                for item in items {
                    self.add_value(origin.clone(), item, namespace, errors);
                }
            }
            return;
        }
        let location = format!("{origin}: {kind} {name:?}");
        if api_version.is_empty() || kind.is_empty() {
            errors.push(LoadError { location, message: "apiVersion and kind are required".into() });
            return;
        }
        if name.is_empty() {
            errors.push(LoadError { location, message: "metadata.name: Required value".into() });
            return;
        }
        let cluster_scoped = kind == "Namespace";
        if !cluster_scoped
            && value.pointer("/metadata/namespace").is_none()
            && let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.insert("namespace".into(), Value::String(namespace.into()));
        }
        let switchboard_kind =
            matches!(kind.as_str(), "Integration" | "Credential" | "OutboundMessage" | "Schedule");
        if switchboard_kind || api_version.starts_with("switchboard.dev/") {
            if api_version != API_VERSION {
                errors.push(LoadError {
                    location,
                    message: format!("apiVersion {api_version:?} is not served; use {API_VERSION}"),
                });
                return;
            }
            let result = match kind.as_str() {
                "Integration" => typed(&value).map(|o| {
                    self.integrations.push(Located { origin, object: o, raw: value.clone() })
                }),
                "Credential" => typed(&value).map(|o| {
                    self.credentials.push(Located { origin, object: o, raw: value.clone() })
                }),
                "OutboundMessage" => typed(&value).map(|o| {
                    self.outbound_messages.push(Located { origin, object: o, raw: value.clone() })
                }),
                "Schedule" => typed(&value).map(|o| {
                    self.schedules.push(Located { origin, object: o, raw: value.clone() })
                }),
                _ => Err(format!(
                    "unknown kind {kind:?} in {API_VERSION}; the kinds are Integration, Credential, OutboundMessage and Schedule"
                )),
            };
            if let Err(message) = result {
                errors.push(LoadError { location, message });
            }
            return;
        }
        if api_version == "v1" && kind == "Secret" {
            match typed::<Secret>(&value) {
                Ok(secret) => {
                    self.secrets.push(Located { origin, object: secret, raw: Value::Null })
                }
                Err(message) => errors.push(LoadError { location, message }),
            }
            return;
        }
        if OTHER_KINDS.contains(&(api_version.as_str(), kind.as_str())) {
            self.others.push(Located { origin, object: value.clone(), raw: value });
            return;
        }
        errors.push(LoadError {
            location,
            message: format!(
                "unknown kind {kind:?} (apiVersion {api_version}); expected Integration, Credential, OutboundMessage, Schedule ({API_VERSION}), Secret, ConfigMap or Namespace (v1)"
            ),
        });
    }

    /// Objects that share kind, namespace and name, with every origin.
    pub fn duplicates(&self) -> Vec<(String, Vec<Origin>)> {
        let mut seen: BTreeMap<String, Vec<Origin>> = BTreeMap::new();
        let mut note = |kind: &str, namespace: Option<String>, name: String, origin: &Origin| {
            let key = format!("{kind} {}/{name}", namespace.unwrap_or_default());
            seen.entry(key).or_default().push(origin.clone());
        };
        for o in &self.integrations {
            note("Integration", o.object.namespace(), o.object.name_any(), &o.origin);
        }
        for o in &self.credentials {
            note("Credential", o.object.namespace(), o.object.name_any(), &o.origin);
        }
        for o in &self.outbound_messages {
            note("OutboundMessage", o.object.namespace(), o.object.name_any(), &o.origin);
        }
        for o in &self.schedules {
            note("Schedule", o.object.namespace(), o.object.name_any(), &o.origin);
        }
        for o in &self.secrets {
            note("Secret", o.object.namespace(), o.object.name_any(), &o.origin);
        }
        seen.into_iter().filter(|(_, origins)| origins.len() > 1).collect()
    }

    /// The namespaces that hold custom resources, in order.
    pub fn namespaces(&self) -> Vec<String> {
        let mut namespaces: Vec<String> = self
            .integrations
            .iter()
            .filter_map(|o| o.object.namespace())
            .chain(self.credentials.iter().filter_map(|o| o.object.namespace()))
            .chain(self.outbound_messages.iter().filter_map(|o| o.object.namespace()))
            .chain(self.schedules.iter().filter_map(|o| o.object.namespace()))
            .collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }
}

/// Deserialize with the path of the failing field in the message.
fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." { inner } else { format!("{path}: {inner}") }
    })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Split a YAML stream at `---` lines, keeping each document's first line number.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            documents.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    documents.push((start_line, &text[start..]));
    documents
        .into_iter()
        .filter(|(_, chunk)| {
            chunk.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<LoadError>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) => {
                errors.push(LoadError {
                    location: path.display().to_string(),
                    message: format!("cannot read directory: {e}"),
                });
                return;
            }
        };
        entries.sort();
        for entry in entries {
            let hidden = entry.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            let manifest =
                entry.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
            if !hidden && (entry.is_dir() || manifest) {
                collect_files(&entry, files, errors);
            }
        }
    } else if path.exists() {
        files.push(path.to_path_buf());
    } else {
        errors.push(LoadError {
            location: path.display().to_string(),
            message: "no such file or directory".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_line_numbers() {
        let text = "a: 1\n---\n# comment only\n---\nb: 2\nc: 3\n--- \nd: 4\n";
        let docs = split_documents(text);
        assert_eq!(docs.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![1, 5, 8]);
    }
}

impl ObjectSet {
    /// The objects of one namespace that renders resolve references against, with the content
    /// hash of every Credential whose Secret is in the set.
    pub fn references(&self, namespace: &str) -> crate::render::References {
        let in_namespace = |ns: Option<String>| ns.as_deref() == Some(namespace);
        let mut refs = crate::render::References::default();
        for c in self.credentials.iter().filter(|c| in_namespace(c.object.namespace())) {
            refs.credentials.insert(c.object.name_any(), c.object.clone().into());
        }
        for o in self.outbound_messages.iter().filter(|o| in_namespace(o.object.namespace())) {
            refs.outbound_messages.insert(o.object.name_any(), o.object.clone().into());
        }
        for i in self.integrations.iter().filter(|i| in_namespace(i.object.namespace())) {
            refs.integrations.insert(i.object.name_any(), i.object.clone());
        }
        for (name, credential) in &refs.credentials {
            let secret = self.secrets.iter().find(|s| {
                in_namespace(s.object.namespace())
                    && s.object.name_any() == credential.spec.secret_ref.name
            });
            if let Some(hash) = secret
                .and_then(|s| crate::render::credential_content_hash(&credential.spec, &s.object))
            {
                refs.credential_hashes.insert(name.clone(), hash);
            }
        }
        refs
    }
}

/// An object that breaks a rule of its CRD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaViolation {
    /// Where the object came from.
    pub origin: Origin,
    /// `Kind namespace/name`.
    pub object: String,
    /// The field.
    pub field: String,
    /// The rule's message.
    pub message: String,
}

impl ObjectSet {
    /// Every object that the API server would refuse (unknown fields, CEL rules).
    pub fn schema_violations(&self) -> Vec<SchemaViolation> {
        fn id<K: kube::Resource<DynamicType = ()>>(o: &K) -> String {
            format!("{} {}/{}", K::kind(&()), o.namespace().unwrap_or_default(), o.name_any())
        }
        let objects = self
            .integrations
            .iter()
            .map(|o| (&o.origin, id(&o.object), &o.raw, "Integration"))
            .chain(
                self.credentials.iter().map(|o| (&o.origin, id(&o.object), &o.raw, "Credential")),
            )
            .chain(
                self.outbound_messages
                    .iter()
                    .map(|o| (&o.origin, id(&o.object), &o.raw, "OutboundMessage")),
            )
            .chain(self.schedules.iter().map(|o| (&o.origin, id(&o.object), &o.raw, "Schedule")));
        let mut found = Vec::new();
        for (origin, object, raw, kind) in objects {
            for violation in crate::api::validate_rules(kind, raw) {
                found.push(SchemaViolation {
                    origin: origin.clone(),
                    object: object.clone(),
                    field: violation.field,
                    message: violation.message,
                });
            }
        }
        found
    }
}
