//! The data-flow diagram: one graph model, written as Mermaid (`flowchart LR`) or Graphviz DOT,
//! and laid out as SVG by [`super::svg`].
//!
//! ```text
//!   source system ──classification──▶ integration ──classification──▶ target system
//!                                        ▲
//!   credential (optional) ─ ─ type ─ ─ ─ ┘
//! ```
//!
//! Systems are nodes named by the declared `dataFlow` (one node per distinct name, so a system
//! that many integrations touch is one hub). Node ids are generated (`s1`, `i1`, `c1`), never
//! taken from user text, so labels are the only place text from the objects appears, and each
//! writer escapes them for its language.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::Serialize;

use super::model::{HealthState, IntegrationEntry};
use crate::api::{Classification, Direction};

/// Kinds of nodes.
#[derive(Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub enum NodeKind {
    /// An external system, as named in `dataFlow`.
    System,
    /// An Integration.
    Integration,
    /// A Credential (only with `--diagram-credentials`).
    Credential,
}

/// Kinds of edges.
#[derive(Serialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum EdgeKind {
    /// Data flows along it.
    Data,
    /// A credential authenticates the integration.
    Credential,
}

/// A node of the diagram.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    /// Generated id (`s1`, `i1`, `c1`).
    pub id: String,
    /// System, integration or credential.
    pub kind: NodeKind,
    /// The name shown.
    pub label: String,
    /// A second line: namespace and team of an integration, type of a credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Health of an integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthState>,
}

/// An edge of the diagram.
#[derive(Serialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Edge {
    /// Id of the node it starts at.
    pub from: String,
    /// Id of the node it ends at.
    pub to: String,
    /// Data or credential.
    pub kind: EdgeKind,
    /// The classification of the data, or the type of the credential.
    pub label: String,
    /// Data flows both ways.
    pub bidirectional: bool,
    /// Classification of the data (data edges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<Classification>,
}

/// The diagram.
#[derive(Serialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Graph {
    /// Systems, then integrations, then credentials, each in name order.
    pub nodes: Vec<Node>,
    /// Flows: source system to integration, integration to target system.
    pub edges: Vec<Edge>,
}

impl Graph {
    /// The node of an id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

/// Build the diagram of an inventory (integrations in namespace and name order).
pub fn build_graph(integrations: &[IntegrationEntry], credentials: bool) -> Graph {
    let mut systems: BTreeMap<&str, String> = BTreeMap::new();
    for entry in integrations {
        systems.insert(&entry.data_flow.source_system, String::new());
        systems.insert(&entry.data_flow.target_system, String::new());
    }
    let mut nodes = Vec::new();
    for (index, (name, id)) in systems.iter_mut().enumerate() {
        *id = format!("s{}", index + 1);
        nodes.push(Node {
            id: id.clone(),
            kind: NodeKind::System,
            label: name.to_string(),
            detail: None,
            health: None,
        });
    }
    let mut credential_ids: BTreeMap<(String, String), String> = BTreeMap::new();
    if credentials {
        for entry in integrations {
            for credential in &entry.credentials {
                credential_ids
                    .entry((entry.namespace.clone(), credential.name.clone()))
                    .or_default();
            }
        }
    }
    let mut edges = Vec::new();
    for (index, entry) in integrations.iter().enumerate() {
        let id = format!("i{}", index + 1);
        nodes.push(Node {
            id: id.clone(),
            kind: NodeKind::Integration,
            label: entry.name.clone(),
            detail: Some(format!("{} · {}", entry.namespace, entry.owner.team)),
            health: Some(entry.health.state),
        });
        let flow = &entry.data_flow;
        let data_edge = |from: &str, to: &str| Edge {
            from: from.to_string(),
            to: to.to_string(),
            kind: EdgeKind::Data,
            label: flow.classification.as_str().to_string(),
            bidirectional: flow.direction == Direction::Bidirectional,
            classification: Some(flow.classification),
        };
        edges.push(data_edge(&systems[flow.source_system.as_str()], &id));
        edges.push(data_edge(&id, &systems[flow.target_system.as_str()]));
    }
    if credentials {
        let mut index = 0;
        for ((namespace, name), id) in credential_ids.iter_mut() {
            index += 1;
            *id = format!("c{index}");
            let type_ = integrations
                .iter()
                .filter(|e| &e.namespace == namespace)
                .flat_map(|e| e.credentials.iter())
                .find(|c| &c.name == name)
                .and_then(|c| c.type_)
                .map_or("unknown type", |t| t.as_str());
            nodes.push(Node {
                id: id.clone(),
                kind: NodeKind::Credential,
                label: name.clone(),
                detail: Some(format!("{namespace} · {type_}")),
                health: None,
            });
        }
        for (index, entry) in integrations.iter().enumerate() {
            for credential in &entry.credentials {
                edges.push(Edge {
                    from: credential_ids[&(entry.namespace.clone(), credential.name.clone())]
                        .clone(),
                    to: format!("i{}", index + 1),
                    kind: EdgeKind::Credential,
                    label: credential.used_for.join(", "),
                    bidirectional: false,
                    classification: None,
                });
            }
        }
    }
    Graph { nodes, edges }
}

/// Text for a quoted Mermaid label: everything but plain letters, digits, spaces and a few
/// safe punctuation marks becomes an entity code (`#34;`), so no label can end the quote, open
/// markup or start a directive.
fn mermaid_text(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || matches!(c, ' ' | '.' | ',' | '-' | '_' | ':' | '/' | '(' | ')') {
            out.push(c);
        } else if c.is_whitespace() {
            out.push(' ');
        } else {
            let _ = write!(out, "#{};", u32::from(c));
        }
    }
    out
}

/// The diagram as a Mermaid flowchart.
pub fn mermaid(graph: &Graph) -> String {
    let mut out = String::from("flowchart LR\n");
    for node in &graph.nodes {
        let label = match &node.detail {
            Some(detail) => format!("{}<br/>{}", mermaid_text(&node.label), mermaid_text(detail)),
            None => mermaid_text(&node.label),
        };
        let (open, close) = match node.kind {
            NodeKind::System => ("([", "])"),
            NodeKind::Integration => ("[", "]"),
            NodeKind::Credential => ("[/", "/]"),
        };
        let _ = writeln!(out, "  {}{open}\"{label}\"{close}", node.id);
    }
    for edge in &graph.edges {
        let arrow = match (edge.kind, edge.bidirectional) {
            (EdgeKind::Credential, _) => "-.->",
            (EdgeKind::Data, true) => "<-->",
            (EdgeKind::Data, false) => "-->",
        };
        let _ =
            writeln!(out, "  {} {arrow}|\"{}\"| {}", edge.from, mermaid_text(&edge.label), edge.to);
    }
    out.push_str("  classDef system fill:#dbeafe,stroke:#1d4ed8\n");
    out.push_str("  classDef healthy fill:#dcfce7,stroke:#15803d\n");
    out.push_str("  classDef unhealthy fill:#fee2e2,stroke:#b91c1c\n");
    out.push_str("  classDef unknown fill:#f3f4f6,stroke:#4b5563\n");
    out.push_str("  classDef credential fill:#fef9c3,stroke:#a16207\n");
    let mut classes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in &graph.nodes {
        let class = match (node.kind, node.health) {
            (NodeKind::System, _) => "system",
            (NodeKind::Credential, _) => "credential",
            (NodeKind::Integration, Some(HealthState::Healthy)) => "healthy",
            (NodeKind::Integration, Some(HealthState::Unhealthy)) => "unhealthy",
            (NodeKind::Integration, _) => "unknown",
        };
        classes.entry(class).or_default().push(&node.id);
    }
    for (class, ids) in classes {
        let _ = writeln!(out, "  class {} {class}", ids.join(","));
    }
    out
}

/// Text inside a double-quoted DOT string.
fn dot_text(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The diagram as a Graphviz DOT digraph.
pub fn dot(graph: &Graph) -> String {
    let mut out = String::from(
        "digraph dataflow {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=11];\n  edge [fontname=\"Helvetica\", fontsize=9];\n",
    );
    for node in &graph.nodes {
        let label = match &node.detail {
            Some(detail) => format!("{}\\n{}", dot_text(&node.label), dot_text(detail)),
            None => dot_text(&node.label),
        };
        let (shape, fill) = match (node.kind, node.health) {
            (NodeKind::System, _) => ("box", "#dbeafe"),
            (NodeKind::Credential, _) => ("note", "#fef9c3"),
            (NodeKind::Integration, Some(HealthState::Healthy)) => ("box", "#dcfce7"),
            (NodeKind::Integration, Some(HealthState::Unhealthy)) => ("box", "#fee2e2"),
            (NodeKind::Integration, _) => ("box", "#f3f4f6"),
        };
        let _ = writeln!(
            out,
            "  {} [label=\"{label}\", shape={shape}, fillcolor=\"{fill}\"];",
            node.id
        );
    }
    for edge in &graph.edges {
        let mut attributes = vec![format!("label=\"{}\"", dot_text(&edge.label))];
        if edge.bidirectional {
            attributes.push("dir=both".into());
        }
        if edge.kind == EdgeKind::Credential {
            attributes.push("style=dashed".into());
        }
        if edge.classification.is_some_and(Classification::is_sensitive) {
            attributes.push("color=\"#b91c1c\"".into());
        }
        let _ = writeln!(out, "  {} -> {} [{}];", edge.from, edge.to, attributes.join(", "));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mermaid_labels_cannot_break_out_of_their_quotes() {
        assert_eq!(mermaid_text("A \"B\" <C>"), "A #34;B#34; #60;C#62;");
        assert_eq!(
            mermaid_text("Corporate directory (PostgreSQL)"),
            "Corporate directory (PostgreSQL)"
        );
        assert_eq!(mermaid_text("a\nb;click"), "a b#59;click");
    }

    #[test]
    fn dot_strings_escape_quotes_and_backslashes() {
        assert_eq!(dot_text(r#"a "b" \ c"#), r#"a \"b\" \\ c"#);
        assert_eq!(dot_text("two\nlines"), "two lines");
    }
}
