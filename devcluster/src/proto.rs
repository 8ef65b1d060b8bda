//! Decoding of the Kubernetes protobuf request bodies that kubectl's typed clients send.
//!
//! `kubectl create configmap|secret|namespace|serviceaccount`, `kubectl auth can-i` and
//! `kubectl create token` post `application/vnd.kubernetes.protobuf`. A body is the magic
//! `k8s\0` followed by a `runtime.Unknown` envelope whose `raw` field holds the object. This
//! module reads the protobuf wire format and maps the field numbers of those few kinds to
//! JSON; other kinds are answered with 415 (devcluster responds in JSON, which every client
//! accepts).

use serde_json::{Map, Value, json};

/// Protobuf decoding failures.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// Not a Kubernetes protobuf envelope.
    #[error("not a Kubernetes protobuf body")]
    NotEnvelope,
    /// Malformed wire data.
    #[error("malformed protobuf")]
    Malformed,
    /// A kind this server cannot decode from protobuf.
    #[error("protobuf bodies are not supported for {0}; send JSON")]
    Unsupported(String),
}

/// Decodes one nested message.
type Decoder = fn(&[u8]) -> Result<Value, ProtoError>;

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ProtoError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or(ProtoError::Malformed)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(ProtoError::Malformed)
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, ProtoError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (num, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len =
                    usize::try_from(varint(buf, &mut pos)?).map_err(|_| ProtoError::Malformed)?;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or(ProtoError::Malformed)?;
                out.push((num, Field::Bytes(&buf[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return Err(ProtoError::Malformed),
        }
    }
    Ok(out)
}

fn text(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

fn map_entry(b: &[u8], bytes_value: bool) -> Result<(String, Value), ProtoError> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (n, f) in fields(b)? {
        if let Field::Bytes(v) = f {
            match n {
                1 => key = String::from_utf8_lossy(v).into_owned(),
                2 if bytes_value => {
                    use base64::Engine as _;
                    value = Value::String(base64::engine::general_purpose::STANDARD.encode(v));
                }
                2 => value = text(v),
                _ => {}
            }
        }
    }
    Ok((key, value))
}

/// Decodes a message whose string fields are listed by number; `maps` lists map fields
/// (with whether their values are bytes), `messages` nested messages with their decoder.
struct Shape<'s> {
    strings: &'s [(u64, &'static str)],
    repeated: &'s [(u64, &'static str)],
    maps: &'s [(u64, &'static str, bool)],
    bools: &'s [(u64, &'static str)],
    messages: &'s [(u64, &'static str, Decoder)],
}

fn decode(buf: &[u8], shape: &Shape<'_>) -> Result<Value, ProtoError> {
    let mut m = Map::new();
    for (n, f) in fields(buf)? {
        match f {
            Field::Bytes(b) => {
                if let Some((_, name)) = shape.strings.iter().find(|(k, _)| *k == n) {
                    if !b.is_empty() {
                        m.insert((*name).into(), text(b));
                    }
                } else if let Some((_, name)) = shape.repeated.iter().find(|(k, _)| *k == n) {
                    let entry = m.entry(*name).or_insert_with(|| json!([]));
                    if let Some(a) = entry.as_array_mut() {
                        a.push(text(b));
                    }
                } else if let Some((_, name, bytes)) = shape.maps.iter().find(|(k, _, _)| *k == n) {
                    let (k, v) = map_entry(b, *bytes)?;
                    let entry = m.entry(*name).or_insert_with(|| json!({}));
                    if let Some(o) = entry.as_object_mut() {
                        o.insert(k, v);
                    }
                } else if let Some((_, name, f)) = shape.messages.iter().find(|(k, _, _)| *k == n) {
                    m.insert((*name).into(), f(b)?);
                }
            }
            Field::Varint(v) => {
                if let Some((_, name)) = shape.bools.iter().find(|(k, _)| *k == n) {
                    m.insert((*name).into(), Value::Bool(v != 0));
                }
            }
        }
    }
    Ok(Value::Object(m))
}

const NONE: &[(u64, &str)] = &[];

fn object_meta(b: &[u8]) -> Result<Value, ProtoError> {
    decode(
        b,
        &Shape {
            strings: &[(1, "name"), (2, "generateName"), (3, "namespace"), (6, "resourceVersion")],
            repeated: &[(14, "finalizers")],
            maps: &[(11, "labels", false), (12, "annotations", false)],
            bools: NONE,
            messages: &[],
        },
    )
}

fn resource_attributes(b: &[u8]) -> Result<Value, ProtoError> {
    decode(
        b,
        &Shape {
            strings: &[
                (1, "namespace"),
                (2, "verb"),
                (3, "group"),
                (4, "version"),
                (5, "resource"),
                (6, "subresource"),
                (7, "name"),
            ],
            repeated: NONE,
            maps: &[],
            bools: NONE,
            messages: &[],
        },
    )
}

fn non_resource_attributes(b: &[u8]) -> Result<Value, ProtoError> {
    decode(
        b,
        &Shape {
            strings: &[(1, "path"), (2, "verb")],
            repeated: NONE,
            maps: &[],
            bools: NONE,
            messages: &[],
        },
    )
}

fn review_spec(b: &[u8]) -> Result<Value, ProtoError> {
    decode(
        b,
        &Shape {
            strings: &[(3, "user"), (6, "uid")],
            repeated: &[(4, "groups")],
            maps: &[],
            bools: NONE,
            messages: &[
                (1, "resourceAttributes", resource_attributes),
                (2, "nonResourceAttributes", non_resource_attributes),
            ],
        },
    )
}

fn local_object_reference(b: &[u8]) -> Result<Value, ProtoError> {
    decode(
        b,
        &Shape { strings: &[(1, "name")], repeated: NONE, maps: &[], bools: NONE, messages: &[] },
    )
}

fn policy_rule(b: &[u8]) -> Result<Value, ProtoError> {
    decode(
        b,
        &Shape {
            strings: NONE,
            repeated: &[
                (1, "verbs"),
                (2, "apiGroups"),
                (3, "resources"),
                (4, "resourceNames"),
                (5, "nonResourceURLs"),
            ],
            maps: &[],
            bools: NONE,
            messages: &[],
        },
    )
}

fn subject(b: &[u8]) -> Result<Value, ProtoError> {
    decode(
        b,
        &Shape {
            strings: &[(1, "kind"), (2, "apiGroup"), (3, "name"), (4, "namespace")],
            repeated: NONE,
            maps: &[],
            bools: NONE,
            messages: &[],
        },
    )
}

fn role_ref(b: &[u8]) -> Result<Value, ProtoError> {
    decode(
        b,
        &Shape {
            strings: &[(1, "apiGroup"), (2, "kind"), (3, "name")],
            repeated: NONE,
            maps: &[],
            bools: NONE,
            messages: &[],
        },
    )
}

/// Collects a repeated message field.
fn repeated(
    raw: &[u8],
    number: u64,
    f: fn(&[u8]) -> Result<Value, ProtoError>,
) -> Result<Vec<Value>, ProtoError> {
    fields(raw)?
        .into_iter()
        .filter_map(|(n, field)| match field {
            Field::Bytes(b) if n == number => Some(f(b)),
            _ => None,
        })
        .collect()
}

/// Decodes a protobuf request body of a supported kind into JSON.
pub fn decode_body(body: &[u8]) -> Result<Value, ProtoError> {
    let raw_env = body.strip_prefix(b"k8s\0").ok_or(ProtoError::NotEnvelope)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(raw_env)? {
        if let Field::Bytes(b) = f {
            match n {
                1 => {
                    for (tn, tf) in fields(b)? {
                        if let Field::Bytes(t) = tf {
                            match tn {
                                1 => api_version = String::from_utf8_lossy(t).into_owned(),
                                2 => kind = String::from_utf8_lossy(t).into_owned(),
                                _ => {}
                            }
                        }
                    }
                }
                2 => raw = b,
                _ => {}
            }
        }
    }
    let meta = |n: u64| -> (u64, &'static str, Decoder) { (n, "metadata", object_meta) };
    let mut obj = match kind.as_str() {
        "SelfSubjectAccessReview" | "SubjectAccessReview" => decode(
            raw,
            &Shape {
                strings: NONE,
                repeated: NONE,
                maps: &[],
                bools: NONE,
                messages: &[meta(1), (2, "spec", review_spec)],
            },
        )?,
        "TokenRequest" | "SelfSubjectReview" => decode(
            raw,
            &Shape { strings: NONE, repeated: NONE, maps: &[], bools: NONE, messages: &[meta(1)] },
        )?,
        "ConfigMap" => decode(
            raw,
            &Shape {
                strings: NONE,
                repeated: NONE,
                maps: &[(2, "data", false), (3, "binaryData", true)],
                bools: &[(4, "immutable")],
                messages: &[meta(1)],
            },
        )?,
        "Secret" => decode(
            raw,
            &Shape {
                strings: &[(3, "type")],
                repeated: NONE,
                maps: &[(2, "data", true), (4, "stringData", false)],
                bools: &[(5, "immutable")],
                messages: &[meta(1)],
            },
        )?,
        "Namespace" => decode(
            raw,
            &Shape { strings: NONE, repeated: NONE, maps: &[], bools: NONE, messages: &[meta(1)] },
        )?,
        "ServiceAccount" => {
            let mut v = decode(
                raw,
                &Shape {
                    strings: NONE,
                    repeated: NONE,
                    maps: &[],
                    bools: &[(4, "automountServiceAccountToken")],
                    messages: &[meta(1)],
                },
            )?;
            let refs: Vec<Value> = fields(raw)?
                .into_iter()
                .filter_map(|(n, f)| match f {
                    Field::Bytes(b) if n == 3 => local_object_reference(b).ok(),
                    _ => None,
                })
                .collect();
            if !refs.is_empty() {
                v["imagePullSecrets"] = Value::Array(refs);
            }
            v
        }
        "Role" | "ClusterRole" => {
            let mut v = decode(
                raw,
                &Shape {
                    strings: NONE,
                    repeated: NONE,
                    maps: &[],
                    bools: NONE,
                    messages: &[meta(1)],
                },
            )?;
            v["rules"] = Value::Array(repeated(raw, 2, policy_rule)?);
            v
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let mut v = decode(
                raw,
                &Shape {
                    strings: NONE,
                    repeated: NONE,
                    maps: &[],
                    bools: NONE,
                    messages: &[meta(1), (3, "roleRef", role_ref)],
                },
            )?;
            let subjects = repeated(raw, 2, subject)?;
            if !subjects.is_empty() {
                v["subjects"] = Value::Array(subjects);
            }
            v
        }
        other => return Err(ProtoError::Unsupported(other.to_string())),
    };
    obj["apiVersion"] = Value::String(api_version);
    obj["kind"] = Value::String(kind);
    Ok(obj)
}
