//! Quoting for SQL the engine writes itself: identifiers and string literals.

/// An identifier, always double-quoted, so any name (mixed case, a keyword, a quote in it)
/// means itself.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal. An `E''` literal means the same whatever `standard_conforming_strings`
/// says; a NUL byte, which PostgreSQL cannot store in text, is dropped.
pub fn literal(text: &str) -> String {
    let escaped = text
        .replace('\0', "")
        .replace('\\', "\\\\")
        .replace('\'', "''");
    format!("E'{escaped}'")
}

#[cfg(test)]
mod tests {
    use super::{ident, literal};

    #[test]
    fn identifiers_and_literals() {
        let cases: &[(&str, &str, &str)] = &[
            // input, as an identifier, as a literal
            ("plain", "\"plain\"", "E'plain'"),
            ("MixedCase", "\"MixedCase\"", "E'MixedCase'"),
            ("o'brien", "\"o'brien\"", "E'o''brien'"),
            ("say \"hi\"", "\"say \"\"hi\"\"\"", "E'say \"hi\"'"),
            (r"C:\temp\'x", r#""C:\temp\'x""#, r"E'C:\\temp\\''x'"),
            ("nul\0byte", "\"nul\0byte\"", "E'nulbyte'"),
            (
                "-- not a comment",
                "\"-- not a comment\"",
                "E'-- not a comment'",
            ),
        ];
        for (input, as_ident, as_literal) in cases {
            assert_eq!(ident(input), *as_ident, "ident({input:?})");
            assert_eq!(literal(input), *as_literal, "literal({input:?})");
        }
    }
}
