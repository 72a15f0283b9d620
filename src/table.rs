//! Text tables for people: `status`, `dlq list` and the closing summary. Columns stay
//! aligned whatever the cell lengths; on a terminal the table fits its width (long cells
//! wrap inside their column), elsewhere every row stays on one line so `grep` and `awk`
//! see whole rows. Scripts should prefer `--json`.

use std::io::IsTerminal;

use comfy_table::{Cell, CellAlignment, ContentArrangement, LineStyle, Table, TableStyle};

/// The style: no borders, one rule under the header, columns two spaces apart (a cell's
/// one space of padding on either side).
const STYLE: TableStyle = TableStyle::new().header_separator(LineStyle::none().fill('-'));

/// A column of a table: its header and how its cells align.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Header text.
    pub header: &'static str,
    /// Numbers align right, text left.
    pub numeric: bool,
}

impl Column {
    /// A left-aligned text column.
    pub const fn text(header: &'static str) -> Self {
        Column { header, numeric: false }
    }

    /// A right-aligned number column.
    pub const fn number(header: &'static str) -> Self {
        Column { header, numeric: true }
    }
}

/// Renders `rows` under `columns`. `width`: the terminal's width to fit, or `None` to
/// keep every row on one line.
pub fn render(columns: &[Column], rows: &[Vec<String>], width: Option<u16>) -> String {
    let mut table = Table::new();
    table.load_style(STYLE);
    match width {
        Some(width) => {
            table.set_content_arrangement(ContentArrangement::Dynamic);
            table.set_width(width);
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    table.set_header(columns.iter().map(|c| Cell::new(c.header).set_alignment(alignment(c))));
    for row in rows {
        table.add_row(
            row.iter()
                .zip(columns)
                .map(|(text, c)| Cell::new(text).set_alignment(alignment(c))),
        );
    }
    // The first column starts at the margin: no padding on its left.
    if let Some(first) = table.column_mut(0) {
        first.set_padding((0, 1));
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn alignment(column: &Column) -> CellAlignment {
    if column.numeric {
        CellAlignment::Right
    } else {
        CellAlignment::Left
    }
}

/// The width to fit when stdout is a terminal; `None` when it is a pipe or a file.
pub fn stdout_width() -> Option<u16> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    console::Term::stdout().size_checked().map(|(_rows, columns)| columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: [Column; 3] = [Column::text("batch"), Column::number("total"), Column::number("done")];

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec!["a".into(), "7".into(), "1234".into()],
            vec![
                "a-very-long-batch-name-from-a-spreadsheet-export".into(),
                "12345".into(),
                "0".into(),
            ],
        ]
    }

    #[test]
    fn columns_stay_aligned_with_long_names() {
        let out = render(&COLUMNS, &rows(), None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[1].chars().all(|c| c == '-' || c == ' '), "header rule: {out}");
        // Right-aligned numbers end in the same column on every row.
        let end_of = |line: &str, text: &str| line.find(text).unwrap() + text.len();
        assert_eq!(end_of(lines[0], "total"), end_of(lines[2], "7"), "{out}");
        assert_eq!(end_of(lines[2], "7"), end_of(lines[3], "12345"), "{out}");
        assert_eq!(end_of(lines[0], "done"), end_of(lines[3], " 0"), "{out}");
    }

    #[test]
    fn without_a_terminal_rows_never_wrap() {
        let out = render(&COLUMNS, &rows(), None);
        assert!(out
            .lines()
            .any(|l| l.contains("a-very-long-batch-name-from-a-spreadsheet-export")));
        assert_eq!(out.lines().count(), 4);
    }

    #[test]
    fn on_a_terminal_the_table_fits_its_width() {
        let out = render(&COLUMNS, &rows(), Some(30));
        assert!(out.lines().all(|l| l.chars().count() <= 30), "{out}");
        assert!(
            out.lines().count() > 4,
            "the long name wrapped inside its column: {out}"
        );
        let first = out.lines().nth(2).unwrap();
        assert!(first.contains("1234"), "{out}");
    }

    #[test]
    fn no_trailing_spaces() {
        let out = render(&COLUMNS, &rows(), None);
        assert!(out.lines().all(|l| !l.ends_with(' ')), "{out:?}");
    }
}
