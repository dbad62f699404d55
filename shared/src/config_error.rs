//! Errors of the TOML files that hold secrets (sites file, access file), told without their
//! content: an error is logged, and the offending line may be an ingest key, an HMAC secret or
//! a read token.

/// Line and column (1-based) of `error` in `text`, and its reason with every quoted part (where
/// the parser repeats a value or a piece of the line) replaced by `…`.
pub fn describe(text: &str, error: &toml::de::Error) -> (usize, usize, String) {
    let at = error.span().map_or(0, |s| s.start.min(text.len()));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column, redact(error.message()))
}

/// `text` with everything between a pair of `"` or of `` ` `` replaced by `…`.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open: Option<char> = None;
    for c in text.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' => {
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_parts_are_redacted() {
        assert_eq!(
            redact(r#"invalid type: string "s3cret", expected u32"#),
            r#"invalid type: string "…", expected u32"#
        );
        assert_eq!(
            redact("unknown field `s3cret`, expected one of `id`"),
            "unknown field `…`, expected one of `…`"
        );
        assert_eq!(redact("unterminated \"s3cret"), "unterminated \"…");
    }
}
