//! The report as Markdown: a summary, the diagram as a Mermaid block (rendered by GitHub,
//! GitLab and most wikis), and the compact columns of every table.
//!
//! Text from the objects is escaped so that it cannot close a table cell, start a link or
//! inject HTML into the rendered page.

use std::fmt::Write as _;

use super::diagram::mermaid;
use super::model::{Mode, ReportModel};
use super::tables::{Table, tables};

/// Escape text for a Markdown table cell.
pub fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn table(out: &mut String, table: &Table) {
    let _ = writeln!(out, "## {}\n", table.title);
    if table.rows.is_empty() {
        out.push_str("None.\n\n");
        return;
    }
    let shown: Vec<usize> =
        table.columns.iter().enumerate().filter(|(_, c)| c.compact).map(|(i, _)| i).collect();
    let header: Vec<&str> = shown.iter().map(|&i| table.columns[i].title).collect();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(shown.len()));
    for row in &table.rows {
        let cells: Vec<String> = shown.iter().map(|&i| cell(&row[i])).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// The report as a Markdown document.
pub fn markdown(model: &ReportModel) -> String {
    let mut out = String::from("# Switchboard report\n\n");
    let source = &model.source;
    let origin = match source.mode {
        Mode::Offline => {
            let paths: Vec<String> =
                source.paths.iter().map(|p| format!("`{}`", cell(p))).collect();
            format!(
                "files {} (offline: health is unknown unless the files carry status)",
                paths.join(", ")
            )
        }
        Mode::Live => format!(
            "cluster context `{}`, {}",
            cell(source.context.as_deref().unwrap_or("(in-cluster)")),
            source
                .namespace
                .as_deref()
                .map_or("all namespaces".to_string(), |n| format!("namespace `{}`", cell(n)))
        ),
    };
    let _ = writeln!(out, "Generated {} from {origin}.\n", model.generated_at.as_str());
    let summary = &model.summary;
    let classes: Vec<String> =
        summary.classifications.iter().map(|(class, n)| format!("{class} {n}")).collect();
    let _ = writeln!(
        out,
        "- {} integration(s), {} credential(s), {} external endpoint(s), {} schedule(s)",
        summary.integrations, summary.credentials, summary.endpoints, summary.schedules
    );
    let _ =
        writeln!(out, "- Findings: {} error(s), {} warning(s)", summary.errors, summary.warnings);
    let _ = writeln!(out, "- Unhealthy integrations: {}", summary.unhealthy);
    if !classes.is_empty() {
        let _ = writeln!(out, "- Data classifications: {}", classes.join(", "));
    }
    out.push_str("\n## Data flow\n\n```mermaid\n");
    out.push_str(&mermaid(&model.diagram));
    out.push_str("```\n\n");
    for t in tables(model) {
        table(&mut out, &t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_cannot_break_the_table_or_inject_markup() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(cell("<img src=x>"), "&lt;img src=x&gt;");
        assert_eq!(cell("[click](javascript:x)"), "\\[click\\](javascript:x)");
    }
}
