//! CSV cells that spreadsheets read as data, never as formulas (CWE-1236).

/// One CSV cell: quoted when it holds a separator, quote or line break, and prefixed with `'`
/// when it starts with a character a spreadsheet would read as the start of a formula (`=`, `+`,
/// `-`, `@`, tab or carriage return). A key name is the user's text, so every text cell goes
/// through here.
pub fn cell(value: &str) -> String {
    let guarded = match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}"),
        _ => value.to_owned(),
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// A number cell: written as is (numbers are ours, never the user's text, and a negative
/// amount must stay a number).
pub fn number(value: &str) -> String {
    debug_assert!(value.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-'));
    value.to_owned()
}

/// One CSV line of cells, ended by CRLF (RFC 4180).
pub fn line(cells: &[String]) -> String {
    let mut out = cells.join(",");
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_neutralised() {
        assert_eq!(cell("=HYPERLINK(\"http://x\")"), "\"'=HYPERLINK(\"\"http://x\"\")\"");
        assert_eq!(cell("+1+1"), "'+1+1");
        assert_eq!(cell("-2+3"), "'-2+3");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tcmd"), "'\tcmd");
        assert_eq!(cell("\rcmd"), "\"'\rcmd\"");
    }

    #[test]
    fn plain_text_is_left_alone_and_separators_are_quoted() {
        assert_eq!(cell("prod key"), "prod key");
        assert_eq!(cell("a=b"), "a=b");
        assert_eq!(cell(""), "");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
    }

    #[test]
    fn numbers_stay_numbers_and_lines_end_in_crlf() {
        assert_eq!(number("-0.000123"), "-0.000123");
        assert_eq!(line(&[cell("a"), number("1.50")]), "a,1.50\r\n");
    }
}
