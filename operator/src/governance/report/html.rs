//! The report as one self-contained HTML page: the diagram as inline SVG, every table sortable
//! by a small vanilla script, all CSS inline. It loads nothing: a Content-Security-Policy with
//! `default-src 'none'` and hashes of the one style and the one script makes the browser refuse
//! any other resource, so the page works offline and text from the objects cannot run.
//!
//! Sorting: a click on a column header sorts by it (again for descending) and records the state
//! in the address as `#sort=TABLE:COLUMN:asc|desc`; opening such an address restores it.

use std::fmt::Write as _;

use k8s_openapi::ByteString;
use sha2::{Digest, Sha256};

use super::model::{HealthState, Mode, ReportModel};
use super::svg::{svg, xml_escape};
use super::tables::{Table, tables};

const STYLE: &str = r#"
:root { color-scheme: light; --border: #d1d5db; --muted: #4b5563; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; padding: 24px 32px; color: #111827; background: #ffffff; }
h1 { font-size: 1.6rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 32px 0 8px; }
.meta { color: var(--muted); margin: 0 0 16px; }
.summary { display: flex; flex-wrap: wrap; gap: 12px; margin: 0; padding: 0; }
.summary div { border: 1px solid var(--border); border-radius: 8px; padding: 8px 14px; min-width: 120px; }
.summary dt { color: var(--muted); font-size: 0.8rem; }
.summary dd { margin: 0; font-size: 1.3rem; font-weight: 600; }
.diagram-wrap, .table-wrap { overflow-x: auto; border: 1px solid var(--border); border-radius: 8px; }
.diagram-wrap { padding: 8px; }
.legend { color: var(--muted); font-size: 0.85rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.85rem; }
th, td { border-bottom: 1px solid var(--border); padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f9fafb; position: sticky; top: 0; white-space: nowrap; }
th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0; cursor: pointer; color: inherit; }
th[aria-sort="ascending"] button::after { content: " \25B2"; }
th[aria-sort="descending"] button::after { content: " \25BC"; }
tr.error td:first-child { color: #b91c1c; font-weight: 600; }
tr.warning td:first-child { color: #a16207; font-weight: 600; }
tr.unhealthy { background: #fef2f2; }
.empty { color: var(--muted); }
"#;

const SCRIPT: &str = r#"
(function () {
  'use strict';
  function cellText(row, index) {
    var cell = row.cells[index];
    return cell ? cell.textContent.trim() : '';
  }
  function compare(a, b) {
    var x = Number(a), y = Number(b);
    if (a !== '' && b !== '' && !isNaN(x) && !isNaN(y)) { return x - y; }
    if (a === '' || b === '') { return a === b ? 0 : (a === '' ? 1 : -1); }
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: 'base' });
  }
  function sortTable(table, index, direction) {
    var body = table.tBodies[0];
    if (!body || index >= table.tHead.rows[0].cells.length) { return; }
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (x, y) {
      var order = compare(cellText(x, index), cellText(y, index));
      return direction === 'desc' ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.setAttribute('aria-sort', i === index ? (direction === 'desc' ? 'descending' : 'ascending') : 'none');
    });
  }
  function applyAddress() {
    var match = /^#sort=([a-z]+):([0-9]+):(asc|desc)$/.exec(window.location.hash);
    if (!match) { return; }
    var table = document.getElementById(match[1]);
    if (table && table.classList.contains('sortable')) { sortTable(table, Number(match[2]), match[3]); }
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      var button = th.querySelector('button');
      if (!button) { return; }
      button.addEventListener('click', function () {
        var direction = th.getAttribute('aria-sort') === 'ascending' ? 'desc' : 'asc';
        sortTable(table, index, direction);
        try { window.history.replaceState(null, '', '#sort=' + table.id + ':' + index + ':' + direction); } catch (e) { /* file: pages may refuse; sorting still works */ }
      });
    });
  });
  applyAddress();
  window.addEventListener('hashchange', applyAddress);
})();
"#;

/// The CSP source of an inline element: `'sha256-<base64>'`.
fn csp_hash(text: &str) -> String {
    // k8s-openapi's ByteString serializes as standard base64, which is what CSP wants.
    let digest = ByteString(Sha256::digest(text.as_bytes()).to_vec());
    let encoded = serde_json::to_value(digest).expect("bytes serialize");
    format!("'sha256-{}'", encoded.as_str().expect("ByteString serializes as a string"))
}

fn table(out: &mut String, table: &Table, row_class: impl Fn(usize, &[String]) -> Option<String>) {
    let _ =
        write!(out, "<section><h2 id=\"{0}-title\">{1}</h2>", table.id, xml_escape(table.title));
    if table.rows.is_empty() {
        out.push_str("<p class=\"empty\">None.</p></section>");
        return;
    }
    let _ = write!(
        out,
        "<div class=\"table-wrap\"><table class=\"sortable\" id=\"{0}\" aria-labelledby=\"{0}-title\"><thead><tr>",
        table.id
    );
    for column in &table.columns {
        let _ = write!(
            out,
            "<th scope=\"col\" aria-sort=\"none\"><button type=\"button\">{}</button></th>",
            xml_escape(column.title)
        );
    }
    out.push_str("</tr></thead><tbody>");
    for (index, row) in table.rows.iter().enumerate() {
        match row_class(index, row) {
            Some(class) => {
                let _ = write!(out, "<tr class=\"{}\">", xml_escape(&class));
            }
            None => out.push_str("<tr>"),
        }
        for cell in row {
            let _ = write!(out, "<td>{}</td>", xml_escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>");
}

/// The report as a self-contained HTML page.
pub fn html(model: &ReportModel) -> String {
    let csp = format!(
        "default-src 'none'; style-src {}; script-src {}; img-src data:; base-uri 'none'; form-action 'none'",
        csp_hash(STYLE),
        csp_hash(SCRIPT)
    );
    let mut out = String::from("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(out, "<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">");
    out.push_str("<title>Switchboard report</title><style>");
    out.push_str(STYLE);
    out.push_str("</style></head><body><header><h1>Switchboard report</h1>");
    let source = &model.source;
    let origin = match source.mode {
        Mode::Offline => format!(
            "files {} (offline: health is unknown unless the files carry status)",
            source.paths.join(", ")
        ),
        Mode::Live => format!(
            "cluster context {}, {}",
            source.context.as_deref().unwrap_or("(in-cluster)"),
            source
                .namespace
                .as_deref()
                .map_or("all namespaces".to_string(), |n| format!("namespace {n}"))
        ),
    };
    let _ = write!(
        out,
        "<p class=\"meta\">Generated {} from {}.</p></header>",
        xml_escape(model.generated_at.as_str()),
        xml_escape(&origin)
    );
    let summary = &model.summary;
    out.push_str("<dl class=\"summary\">");
    for (label, value) in [
        ("Integrations", summary.integrations),
        ("Credentials", summary.credentials),
        ("External endpoints", summary.endpoints),
        ("Schedules", summary.schedules),
        ("Errors", summary.errors),
        ("Warnings", summary.warnings),
        ("Unhealthy", summary.unhealthy),
    ] {
        let _ = write!(out, "<div><dt>{label}</dt><dd>{value}</dd></div>");
    }
    out.push_str("</dl>");
    out.push_str("<section><h2>Data flow</h2><div class=\"diagram-wrap\">");
    out.push_str(&svg(&model.diagram));
    out.push_str("</div><p class=\"legend\">Blue: external systems (a system that is both a source and a target appears on both sides). Integrations: green healthy, red unhealthy, grey unknown. Edges carry the data classification; red edges carry restricted or pii data.</p></section>");
    for t in tables(model) {
        let integrations = &model.integrations;
        table(&mut out, &t, |index, row| match t.id {
            "findings" => row.first().cloned(),
            "inventory" => integrations
                .get(index)
                .filter(|i| i.health.state == HealthState::Unhealthy)
                .map(|_| "unhealthy".to_string()),
            _ => None,
        });
    }
    out.push_str("<script>");
    out.push_str(SCRIPT);
    out.push_str("</script></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_hashes_are_base64_sha256() {
        // sha256("") in base64.
        assert_eq!(csp_hash(""), "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='");
    }
}
