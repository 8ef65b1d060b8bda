//! The report as CSV: one table per document (`--table`), every column, RFC 4180 quoting by the
//! `csv` crate.
//!
//! Spreadsheets execute a cell that starts with `=`, `+`, `-` or `@` as a formula (and some
//! treat a leading tab or carriage return the same way), so a hostile integration name such as
//! `=HYPERLINK(...)` could run in an auditor's spreadsheet. Such cells are neutralised by a
//! leading apostrophe, which spreadsheets show as text (RELIABILITY.md B4).

use super::tables::Table;

/// A cell made safe to open in a spreadsheet.
pub fn neutralise(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

/// A table as CSV, with a header row.
pub fn csv(table: &Table) -> String {
    let mut writer =
        ::csv::WriterBuilder::new().terminator(::csv::Terminator::CRLF).from_writer(Vec::new());
    let header: Vec<&str> = table.columns.iter().map(|c| c.title).collect();
    let mut write = |record: Vec<String>| {
        writer.write_record(&record).expect("writing CSV into memory does not fail");
    };
    write(header.into_iter().map(neutralise).collect());
    for row in &table.rows {
        write(row.iter().map(|cell| neutralise(cell)).collect());
    }
    let bytes = writer.into_inner().expect("writing CSV into memory does not fail");
    String::from_utf8(bytes).expect("CSV of UTF-8 cells is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::report::tables::Column;

    #[test]
    fn formula_cells_are_neutralised_and_others_kept() {
        for bad in ["=HYPERLINK(\"http://x\")", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise(bad), format!("'{bad}"));
        }
        for fine in ["plain", "a=b", " =x", ""] {
            assert_eq!(neutralise(fine), fine);
        }
    }

    #[test]
    fn cells_with_commas_quotes_and_newlines_are_quoted() {
        let table = Table {
            id: "t",
            title: "T",
            columns: vec![
                Column { title: "A", compact: true },
                Column { title: "B", compact: true },
            ],
            rows: vec![vec!["x, \"y\"".into(), "=1+1".into()]],
        };
        assert_eq!(csv(&table), "A,B\r\n\"x, \"\"y\"\"\",'=1+1\r\n");
    }
}
