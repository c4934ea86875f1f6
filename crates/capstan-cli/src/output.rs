//! How results are printed: tables for people (fitted to the terminal's width), JSON and
//! YAML for scripts, names for pipes.

use std::io::IsTerminal;

use clap::ValueEnum;
use serde_json::Value;

use crate::error::{CliError, CliResult};

/// `-o`/`--output`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table (the default).
    #[default]
    Table,
    /// A table with more columns.
    Wide,
    /// JSON, the API's objects as they are.
    Json,
    /// YAML, the API's objects as they are.
    Yaml,
    /// Names only, one per line.
    Name,
}

/// Prints `value` as JSON or YAML (other formats are the caller's job).
pub fn print_document(value: &Value, format: Format) -> CliResult<()> {
    let text = match format {
        Format::Yaml => capstan_model::to_yaml(value)
            .map_err(|e| CliError::other(format!("cannot write YAML: {e}")))?,
        _ => format!(
            "{}\n",
            serde_json::to_string_pretty(value).map_err(CliError::from)?
        ),
    };
    print!("{text}");
    Ok(())
}

/// Prints a list the way `-o` asks: JSON or YAML as the API sent it, `name` one per line,
/// else a table of `headers` with a `row` per item.
pub fn print_list(
    items: &[Value],
    format: Format,
    name: impl Fn(&Value) -> String,
    headers: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> CliResult<()> {
    match format {
        Format::Json | Format::Yaml => print_document(&Value::Array(items.to_vec()), format),
        Format::Name => {
            for item in items {
                println!("{}", clean(&name(item)));
            }
            Ok(())
        }
        Format::Table | Format::Wide => {
            let mut table = Table::new(headers);
            for item in items {
                table.row(row(item));
            }
            table.print();
            Ok(())
        }
    }
}

/// A table: headers and rows of cells.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are empty); cells are [`clean`]ed.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.iter().map(|c| clean(c)).collect());
    }

    /// The table as text; with `width`, the widest columns are cut (with `…`) until each line
    /// fits.
    pub fn render(&self, width: Option<usize>) -> String {
        let columns = self.headers.len();
        let cell = |row: &Vec<String>, i: usize| row.get(i).cloned().unwrap_or_default();
        let mut widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| cell(r, i).chars().count())
                    .chain([self.headers[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        if let Some(width) = width {
            let gaps = 2 * columns.saturating_sub(1);
            // Shrink the widest column one character at a time; never below its header or 8.
            while widths.iter().sum::<usize>() + gaps > width {
                let Some((i, _)) = widths
                    .iter()
                    .enumerate()
                    .filter(|(i, w)| **w > self.headers[*i].chars().count().max(8))
                    .max_by_key(|(_, w)| **w)
                else {
                    break;
                };
                widths[i] -= 1;
            }
        }
        let mut out = String::new();
        let mut line = |cells: Vec<String>| {
            let mut text = String::new();
            for (i, value) in cells.iter().enumerate() {
                let fitted = fit(value, widths[i]);
                if i + 1 == columns {
                    text.push_str(&fitted);
                } else {
                    let pad = widths[i] - fitted.chars().count();
                    text.push_str(&fitted);
                    text.push_str(&" ".repeat(pad + 2));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(self.headers.clone());
        for row in &self.rows {
            line((0..columns).map(|i| cell(row, i)).collect());
        }
        out
    }

    /// Prints the table, fitted to the terminal when stdout is one.
    pub fn print(&self) {
        print!("{}", self.render(terminal_width()));
    }
}

/// Text from the server or a cluster made safe to print: control characters (escape
/// sequences that could rewrite the terminal, newlines that would break a table) are shown
/// as `\u{..}` escapes; tabs become spaces.
pub fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| match c {
            '\t' => " ".to_owned(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// [`clean`] line by line: newlines stay.
pub fn clean_lines(text: &str) -> String {
    text.lines().map(clean).collect::<Vec<_>>().join("\n")
}

fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The terminal's width when stdout is a terminal.
pub fn terminal_width() -> Option<usize> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    // A terminal that reports no width (a pty nobody sized) is treated as unknown.
    terminal_size::terminal_size()
        .map(|(w, _)| usize::from(w.0))
        .filter(|w| *w >= 20)
}

/// Whether to colour stdout: a terminal, and `NO_COLOR` unset.
pub fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `value`, or `default` when it is empty (a status not reported yet, a default project).
pub fn or(value: String, default: &str) -> String {
    if value.is_empty() {
        default.to_owned()
    } else {
        value
    }
}

/// The string at a JSON pointer, or "".
pub fn text(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Key-value lines (`Name:   value`), aligned, for `get` summaries.
pub fn fields(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (key, value) in rows {
        out.push_str(&format!("{:<width$} {}\n", format!("{key}:"), clean(value)));
    }
    out
}

/// Seconds of an `--expires-in` flag for the API: 0 when absent ("never expires").
pub fn expiry_seconds(expires_in: Option<humantime::Duration>) -> i64 {
    expires_in.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_fit_the_width() {
        let mut table = Table::new(&["NAME", "SYNC", "REPO"]);
        table.row(vec![
            "guestbook".into(),
            "Synced".into(),
            "https://git.example/very/long/repository/path.git".into(),
        ]);
        table.row(vec!["api".into(), "OutOfSync".into(), "https://g/x".into()]);
        assert_eq!(
            table.render(None),
            "NAME       SYNC       REPO\n\
             guestbook  Synced     https://git.example/very/long/repository/path.git\n\
             api        OutOfSync  https://g/x\n"
        );
        let fitted = table.render(Some(40));
        assert!(fitted.lines().all(|l| l.chars().count() <= 40), "{fitted}");
        assert!(
            fitted.contains("guestbook  Synced     https://git.exam"),
            "{fitted}"
        );
        assert!(
            fitted.lines().nth(1).is_some_and(|l| l.ends_with('…')),
            "{fitted}"
        );
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(clean("plain text"), "plain text");
        assert_eq!(
            clean("a\u{1b}]0;pwned\u{7}b\nc\td"),
            "a\\u{1b}]0;pwned\\u{7}b\\u{a}c d"
        );
        let mut table = Table::new(&["MESSAGE"]);
        table.row(vec!["x\u{1b}[2J".into()]);
        assert!(!table.render(None).contains('\u{1b}'));
    }

    #[test]
    fn fields_align_their_values() {
        assert_eq!(
            fields(&[("Name", "a".into()), ("Project", "b".into())]),
            "Name:    a\nProject: b\n"
        );
    }
}
