//! Container logs: files in the CRI format, one per container run, and the
//! `pods/<name>/log` subresource (`kubectl logs`) served from them.
//!
//! ```text
//!  <pod dir>/logs/<container>/<restartCount>.log
//!  2026-11-29T10:00:00.123456789Z stdout F listening on 127.1.4.7:8080
//! ```
//!
//! `previous` reads the file of the run before the current one; `timestamps`, `tailLines`,
//! `sinceSeconds`/`sinceTime` and `limitBytes` shape the output; `follow` streams new lines
//! until the container ends, restarts or the Pod goes away.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::api::Core;
use crate::error::ApiError;

/// One log record, CRI style: `<RFC 3339 nano> <stream> F <text>\n`.
pub fn format_line(t: DateTime<Utc>, stream: &str, line: &[u8]) -> Vec<u8> {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let mut out = Vec::with_capacity(text.len() + 48);
    out.extend_from_slice(t.to_rfc3339_opts(SecondsFormat::Nanos, true).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.extend_from_slice(b" F ");
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

struct Record<'a> {
    time: Option<DateTime<Utc>>,
    stamp: &'a [u8],
    text: &'a [u8],
}

fn parse_record(line: &[u8]) -> Record<'_> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let stamp = parts.next().unwrap_or_default();
    let _stream = parts.next();
    let _tag = parts.next();
    let text = parts.next().unwrap_or_default();
    let time = std::str::from_utf8(stamp)
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    Record { time, stamp, text }
}

/// Query options of the log subresource.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// `container`.
    pub container: Option<String>,
    /// `follow`.
    pub follow: bool,
    /// `previous`.
    pub previous: bool,
    /// `timestamps`.
    pub timestamps: bool,
    /// `tailLines`.
    pub tail_lines: Option<usize>,
    /// `limitBytes`.
    pub limit_bytes: Option<usize>,
    /// `sinceSeconds` / `sinceTime`, resolved to a time.
    pub since: Option<DateTime<Utc>>,
}

/// Turns stored records into what `kubectl logs` prints.
pub fn render(content: &[u8], opts: &LogOptions) -> Vec<u8> {
    let lines: Vec<&[u8]> = content.split_inclusive(|b| *b == b'\n').collect();
    let start = opts.tail_lines.map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = Vec::new();
    for line in &lines[start..] {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let r = parse_record(line);
        if let (Some(since), Some(t)) = (opts.since, r.time)
            && t < since
        {
            continue;
        }
        if opts.timestamps {
            out.extend_from_slice(r.stamp);
            out.push(b' ');
        }
        out.extend_from_slice(r.text);
        out.push(b'\n');
    }
    if let Some(limit) = opts.limit_bytes {
        out.truncate(limit);
    }
    out
}

/// The directory of a Pod's files.
pub fn pod_dir(pods_root: &Path, ns: &str, name: &str, uid: &str) -> PathBuf {
    pods_root.join(format!("{ns}_{name}_{uid}"))
}

/// The log file of one run of a container.
pub fn log_file(pod_dir: &Path, container: &str, run: i64) -> PathBuf {
    pod_dir.join("logs").join(container).join(format!("{run}.log"))
}

/// Which container and run a request addresses, and the log file holding it.
fn locate(pod: &Value, pods_root: &Path, opts: &LogOptions) -> Result<(String, PathBuf), ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let names = |list: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let app = names("containers");
    let init = names("initContainers");
    let container = match &opts.container {
        Some(c) => c.clone(),
        None if app.len() == 1 => app[0].clone(),
        None => {
            let default = pod
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str);
            match default {
                Some(d) => d.to_string(),
                None => {
                    return Err(ApiError::BadRequest(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        app.join(" ")
                    )));
                }
            }
        }
    };
    let list =
        if init.contains(&container) { "initContainerStatuses" } else { "containerStatuses" };
    if !app.contains(&container) && !init.contains(&container) {
        return Err(ApiError::BadRequest(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let status = pod
        .pointer(&format!("/status/{list}"))
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|c| c["name"] == container.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    let restarts = status.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
    let run = if opts.previous {
        if restarts == 0 {
            return Err(ApiError::BadRequest(format!(
                "previous terminated container {container:?} in pod {name:?} not found"
            )));
        }
        restarts - 1
    } else {
        restarts
    };
    let file = log_file(&pod_dir(pods_root, ns, name, uid), &container, run);
    if !file.exists() {
        let reason = status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .unwrap_or("ContainerCreating");
        return Err(ApiError::BadRequest(format!(
            "container {container:?} in pod {name:?} is waiting to start: {reason}"
        )));
    }
    Ok((container, file))
}

/// Serves a log request: the whole (shaped) log, or a stream when following.
pub fn read(
    core: &std::sync::Arc<Core>,
    pods_root: &Path,
    pod: &Value,
    opts: LogOptions,
) -> Result<LogBody, ApiError> {
    let (container, file) = locate(pod, pods_root, &opts)?;
    let content =
        std::fs::read(&file).map_err(|e| ApiError::Internal(format!("reading the log: {e}")))?;
    let first = render(&content, &opts);
    if !opts.follow || opts.previous {
        return Ok(LogBody::Whole(Bytes::from(first)));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let core = core.clone();
    let pod = pod.clone();
    let offset = content.len();
    tokio::spawn(follow(core, pod, container, file, offset, first, opts, tx));
    Ok(LogBody::Stream(rx))
}

/// A log response.
pub enum LogBody {
    /// All of it.
    Whole(Bytes),
    /// Chunks as they are written.
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
}

#[allow(clippy::too_many_arguments)]
async fn follow(
    core: std::sync::Arc<Core>,
    pod: Value,
    container: String,
    file: PathBuf,
    mut offset: usize,
    first: Vec<u8>,
    opts: LogOptions,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    if !first.is_empty() && tx.send(Bytes::from(first)).await.is_err() {
        return;
    }
    let opts = LogOptions { tail_lines: None, limit_bytes: None, ..opts };
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let uid = pod.pointer("/metadata/uid").cloned();
    let key = crate::resources::ResourceKey::new("", "pods");
    let mut pending = Vec::new();
    loop {
        let ended = match core.store.get(&key, &ns, &name).map(|o| o.value()) {
            None => true,
            Some(now) if now.pointer("/metadata/uid").cloned() != uid => true,
            Some(now) => container_done(&now, &pod, &container),
        };
        if let Ok(content) = std::fs::read(&file)
            && content.len() > offset
        {
            pending.extend_from_slice(&content[offset..]);
            offset = content.len();
            // Only whole lines are rendered; a partial one waits for its end.
            if let Some(cut) = pending.iter().rposition(|b| *b == b'\n') {
                let whole: Vec<u8> = pending.drain(..=cut).collect();
                let out = render(&whole, &opts);
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    return;
                }
            }
        }
        if ended {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tx.closed() => return,
        }
    }
}

/// Whether a container has ended or moved on to a new run since `before`.
fn container_done(now: &Value, before: &Value, container: &str) -> bool {
    let find = |pod: &Value| -> Value {
        ["containerStatuses", "initContainerStatuses"]
            .iter()
            .filter_map(|l| pod.pointer(&format!("/status/{l}")).and_then(Value::as_array))
            .flatten()
            .find(|c| c["name"] == container)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let (a, b) = (find(before), find(now));
    a.get("restartCount") != b.get("restartCount") || b.pointer("/state/terminated").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut out = format_line(t("2026-11-29T10:00:00Z"), "stdout", b"one\n");
        out.extend(format_line(t("2026-11-29T10:00:01Z"), "stderr", b"two words\r\n"));
        out.extend(format_line(t("2026-11-29T10:00:02Z"), "stdout", b"three"));
        out
    }

    #[test]
    fn records_render_as_plain_lines() {
        assert_eq!(render(&sample(), &LogOptions::default()), b"one\ntwo words\nthree\n");
    }

    #[test]
    fn tail_since_timestamps_and_limit_shape_the_output() {
        let tail = LogOptions { tail_lines: Some(1), ..Default::default() };
        assert_eq!(render(&sample(), &tail), b"three\n");
        let since = LogOptions {
            since: Some(
                DateTime::parse_from_rfc3339("2026-11-29T10:00:01Z").unwrap().with_timezone(&Utc),
            ),
            ..Default::default()
        };
        assert_eq!(render(&sample(), &since), b"two words\nthree\n");
        let stamped = LogOptions { timestamps: true, tail_lines: Some(1), ..Default::default() };
        assert_eq!(render(&sample(), &stamped), b"2026-11-29T10:00:02.000000000Z three\n");
        let limited = LogOptions { limit_bytes: Some(5), ..Default::default() };
        assert_eq!(render(&sample(), &limited), b"one\nt");
    }
}
