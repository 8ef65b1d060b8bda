//! The diagram as inline SVG, laid out here so that the HTML page needs no script library and
//! no network to show it.
//!
//! ```text
//!   column:   credentials      sources        integrations       targets
//!             (optional)   ┌──────────┐     ┌─────────────┐    ┌──────────┐
//!                          │ Workday  │────▶│ hr-import   │───▶│ Directory│
//!                          └──────────┘     └─────────────┘    └──────────┘
//! ```
//!
//! A layered layout: each node kind has a column; a system that is both a source and a target
//! appears in both columns, so every data edge runs left to right. Rows are ordered by the mean
//! row of the nodes they connect to (one barycentre pass), which keeps most edges short. Every
//! piece of text is escaped; colours are presentation attributes (no inline CSS), so the page's
//! Content-Security-Policy can forbid inline styles.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::diagram::{EdgeKind, Graph, NodeKind};
use super::model::HealthState;

/// Fill of system nodes (tests look for this colour in screenshots).
pub const SYSTEM_FILL: &str = "#dbeafe";
const INTEGRATION_FILLS: [(HealthState, &str); 3] = [
    (HealthState::Healthy, "#dcfce7"),
    (HealthState::Unhealthy, "#fee2e2"),
    (HealthState::Unknown, "#f3f4f6"),
];
const CREDENTIAL_FILL: &str = "#fef9c3";
const NODE_HEIGHT: f64 = 44.0;
const ROW_GAP: f64 = 18.0;
const COLUMN_GAP: f64 = 150.0;
const MARGIN: f64 = 20.0;
/// Width of a character of the bold 12px label font, generously.
const CHAR_WIDTH: f64 = 7.8;

/// Escape text for XML content and attribute values.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The point at `t` of a cubic Bézier curve.
fn bezier(p0: (f64, f64), p1: (f64, f64), p2: (f64, f64), p3: (f64, f64), t: f64) -> (f64, f64) {
    let u = 1.0 - t;
    let at = |a: f64, b: f64, c: f64, d: f64| {
        u * u * u * a + 3.0 * u * u * t * b + 3.0 * u * t * t * c + t * t * t * d
    };
    (at(p0.0, p1.0, p2.0, p3.0), at(p0.1, p1.1, p2.1, p3.1))
}

/// A placed box.
#[derive(Clone, Debug)]
struct Placed {
    x: f64,
    y: f64,
    width: f64,
}

/// Which column a node (in a role) goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Column {
    Credentials,
    Sources,
    Integrations,
    Targets,
}

/// The diagram as an `<svg>` element.
pub fn svg(graph: &Graph) -> String {
    // Boxes: (column, node id). A system gets a box in each column it plays a role in.
    let mut columns: BTreeMap<Column, Vec<String>> = BTreeMap::new();
    for node in &graph.nodes {
        match node.kind {
            NodeKind::Integration => {
                columns.entry(Column::Integrations).or_default().push(node.id.clone())
            }
            NodeKind::Credential => {
                columns.entry(Column::Credentials).or_default().push(node.id.clone())
            }
            NodeKind::System => {
                let data = |e: &&super::diagram::Edge| e.kind == EdgeKind::Data;
                if graph.edges.iter().filter(data).any(|e| e.from == node.id) {
                    columns.entry(Column::Sources).or_default().push(node.id.clone());
                }
                if graph.edges.iter().filter(data).any(|e| e.to == node.id) {
                    columns.entry(Column::Targets).or_default().push(node.id.clone());
                }
            }
        }
    }
    // Order: sources by name (their node order), then each later column by the mean row of its
    // neighbours in the columns placed before it.
    let mut rows: BTreeMap<(Column, String), f64> = BTreeMap::new();
    if let Some(sources) = columns.get(&Column::Sources) {
        for (row, id) in sources.iter().enumerate() {
            rows.insert((Column::Sources, id.clone()), row as f64);
        }
    }
    let neighbour_mean = |id: &str, column: Column, rows: &BTreeMap<(Column, String), f64>| {
        let positions: Vec<f64> = graph
            .edges
            .iter()
            .filter_map(|e| match column {
                Column::Integrations if e.to == id && e.kind == EdgeKind::Data => {
                    rows.get(&(Column::Sources, e.from.clone())).copied()
                }
                Column::Targets if e.to == id => {
                    rows.get(&(Column::Integrations, e.from.clone())).copied()
                }
                Column::Credentials if e.from == id => {
                    rows.get(&(Column::Integrations, e.to.clone())).copied()
                }
                _ => None,
            })
            .collect();
        if positions.is_empty() {
            f64::MAX
        } else {
            positions.iter().sum::<f64>() / positions.len() as f64
        }
    };
    for column in [Column::Integrations, Column::Targets, Column::Credentials] {
        if let Some(ids) = columns.get_mut(&column) {
            let mut keyed: Vec<(f64, usize, String)> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| (neighbour_mean(id, column, &rows), i, id.clone()))
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            *ids = keyed.into_iter().map(|(_, _, id)| id).collect();
            for (row, id) in ids.iter().enumerate() {
                rows.insert((column, id.clone()), row as f64);
            }
        }
    }
    // Geometry.
    let text_width = |id: &str| {
        graph.node(id).map_or(0, |n| {
            n.label.chars().count().max(n.detail.as_deref().map_or(0, |d| d.chars().count()))
        }) as f64
            * CHAR_WIDTH
    };
    let tallest = columns.values().map(Vec::len).max().unwrap_or(0) as f64;
    let height = (tallest * (NODE_HEIGHT + ROW_GAP) - ROW_GAP).max(NODE_HEIGHT) + 2.0 * MARGIN;
    let mut placed: BTreeMap<(Column, String), Placed> = BTreeMap::new();
    let mut x = MARGIN;
    for (column, ids) in &columns {
        let width = ids.iter().map(|id| text_width(id)).fold(96.0, f64::max) + 24.0;
        let column_height = ids.len() as f64 * (NODE_HEIGHT + ROW_GAP) - ROW_GAP;
        let top = (height - column_height) / 2.0;
        for (row, id) in ids.iter().enumerate() {
            let y = top + row as f64 * (NODE_HEIGHT + ROW_GAP);
            placed.insert((*column, id.clone()), Placed { x, y, width });
        }
        x += width + COLUMN_GAP;
    }
    let width = (x - COLUMN_GAP + MARGIN).max(200.0);

    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"diagram\" viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\" role=\"img\" aria-labelledby=\"diagram-title\"><title id=\"diagram-title\">Data flow: systems, integrations and the classification of the data between them</title>"
    );
    out.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#4b5563\"/></marker></defs>");
    // Edges first, so boxes sit on top of their ends.
    out.push_str("<g class=\"edges\">");
    for edge in &graph.edges {
        let (from_column, to_column) = match edge.kind {
            EdgeKind::Credential => (Column::Credentials, Column::Integrations),
            EdgeKind::Data
                if graph.node(&edge.from).is_some_and(|n| n.kind == NodeKind::System) =>
            {
                (Column::Sources, Column::Integrations)
            }
            EdgeKind::Data => (Column::Integrations, Column::Targets),
        };
        let (Some(from), Some(to)) = (
            placed.get(&(from_column, edge.from.clone())),
            placed.get(&(to_column, edge.to.clone())),
        ) else {
            continue;
        };
        let (x1, y1) = (from.x + from.width, from.y + NODE_HEIGHT / 2.0);
        let (x2, y2) = (to.x, to.y + NODE_HEIGHT / 2.0);
        let bend = (x2 - x1) / 2.0;
        let sensitive = edge.classification.is_some_and(crate::api::Classification::is_sensitive);
        let stroke = if sensitive { "#b91c1c" } else { "#4b5563" };
        let dash = if edge.kind == EdgeKind::Credential { " stroke-dasharray=\"5 4\"" } else { "" };
        let start = if edge.bidirectional { " marker-start=\"url(#arrow)\"" } else { "" };
        let _ = write!(
            out,
            "<path class=\"edge\" d=\"M {x1:.1} {y1:.1} C {:.1} {y1:.1}, {:.1} {y2:.1}, {x2:.1} {y2:.1}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"1.5\"{dash}{start} marker-end=\"url(#arrow)\"/>",
            x1 + bend,
            x2 - bend
        );
        // Every integration has one edge in and one out, so a label near the integration's end
        // of its edge never overlaps another; credential edges are explained by the tables.
        if edge.kind == EdgeKind::Data {
            let t = if to_column == Column::Integrations { 0.75 } else { 0.25 };
            let (lx, ly) = bezier((x1, y1), (x1 + bend, y1), (x2 - bend, y2), (x2, y2), t);
            let _ = write!(
                out,
                "<text class=\"edge-label\" x=\"{lx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"{stroke}\">{}</text>",
                ly - 5.0,
                xml_escape(&edge.label)
            );
        }
    }
    out.push_str("</g><g class=\"nodes\">");
    for ((column, id), place) in &placed {
        let Some(node) = graph.node(id) else { continue };
        let (class, fill, stroke) = match (node.kind, node.health) {
            (NodeKind::System, _) => ("system", SYSTEM_FILL, "#1d4ed8"),
            (NodeKind::Credential, _) => ("credential", CREDENTIAL_FILL, "#a16207"),
            (NodeKind::Integration, health) => {
                let health = health.unwrap_or(HealthState::Unknown);
                let fill = INTEGRATION_FILLS
                    .iter()
                    .find(|(h, _)| *h == health)
                    .map_or("#f3f4f6", |(_, f)| f);
                ("integration", fill, "#374151")
            }
        };
        let role = match column {
            Column::Sources => " source",
            Column::Targets => " target",
            _ => "",
        };
        let health =
            node.health.map(|h| format!(" data-health=\"{}\"", h.as_str())).unwrap_or_default();
        let _ = write!(
            out,
            "<g class=\"node {class}{role}\" data-node=\"{}\"{health}><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{NODE_HEIGHT:.0}\" rx=\"8\" fill=\"{fill}\" stroke=\"{stroke}\"/>",
            xml_escape(&node.id),
            place.x,
            place.y,
            place.width
        );
        let center = place.x + place.width / 2.0;
        match &node.detail {
            Some(detail) => {
                let _ = write!(
                    out,
                    "<text x=\"{center:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" font-weight=\"600\" fill=\"#111827\">{}</text><text x=\"{center:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#4b5563\">{}</text>",
                    place.y + 19.0,
                    xml_escape(&node.label),
                    place.y + 34.0,
                    xml_escape(detail)
                );
            }
            None => {
                let _ = write!(
                    out,
                    "<text x=\"{center:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" font-weight=\"600\" fill=\"#111827\">{}</text>",
                    place.y + 26.0,
                    xml_escape(&node.label)
                );
            }
        }
        out.push_str("</g>");
    }
    out.push_str("</g></svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::report::diagram::{Edge, Node};

    fn node(id: &str, kind: NodeKind, label: &str) -> Node {
        Node { id: id.into(), kind, label: label.into(), detail: None, health: None }
    }

    fn data(from: &str, to: &str) -> Edge {
        Edge {
            from: from.into(),
            to: to.into(),
            kind: EdgeKind::Data,
            label: "internal".into(),
            bidirectional: false,
            classification: None,
        }
    }

    #[test]
    fn a_system_that_is_source_and_target_gets_a_box_in_each_column() {
        let graph = Graph {
            nodes: vec![
                node("s1", NodeKind::System, "ServiceNow"),
                node("s2", NodeKind::System, "Slack"),
                node("i1", NodeKind::Integration, "a"),
                node("i2", NodeKind::Integration, "b"),
            ],
            edges: vec![data("s1", "i1"), data("i1", "s2"), data("s2", "i2"), data("i2", "s1")],
        };
        let svg = svg(&graph);
        assert_eq!(svg.matches("class=\"node system source\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("class=\"node system target\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("<path class=\"edge\"").count(), 4, "{svg}");
    }

    #[test]
    fn labels_are_escaped() {
        let graph = Graph {
            nodes: vec![
                node("s1", NodeKind::System, "<script>alert(1)</script>"),
                node("i1", NodeKind::Integration, "a"),
            ],
            edges: vec![data("s1", "i1")],
        };
        let svg = svg(&graph);
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{svg}");
        assert!(!svg.contains("<script>"), "{svg}");
        assert_eq!(xml_escape("a&\"b'<"), "a&amp;&quot;b&#39;&lt;");
    }
}
