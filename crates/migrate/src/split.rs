//! The SQL lexer: splits a PostgreSQL script into statements and a statement into tokens.
//!
//! The engine sends every script one statement at a time, so a failure names its statement
//! and the observer sees each one; a non-transactional script must be split anyway, because
//! a script sent as one simple query runs in an implicit transaction block, where
//! `CREATE INDEX CONCURRENTLY` fails. The statement classifier (`classify.rs`) reads the
//! tokens, so comments and strings never fool it.
//!
//! This is a hand-written lexer rather than `pg_query` (PostgreSQL's own scanner and
//! parser) or `sqlparser`: it needs no C toolchain or libclang at build time for the
//! deploy binary, it follows PostgreSQL's lexical rules exactly for the one thing we
//! need here (where statements end), and `sqlparser` only approximates PostgreSQL. The
//! migration lint can bring in `pg_query` later for real parsing.
//!
//! The rules followed, from PostgreSQL's `scan.l` and psql's `psqlscan.l`:
//!
//! - `'...'` strings with `''` escapes; a backslash is an ordinary character, as with
//!   `standard_conforming_strings = on` (the default since PostgreSQL 9.1). `B'...'`,
//!   `X'...'`, `N'...'` and `U&'...'` strings follow the same rule.
//! - `E'...'` strings, where a backslash escapes the next character (`E'\''`) and `''`
//!   also works. A string continued after a newline (`E'a'` newline `'b'`) keeps its kind.
//! - Dollar-quoted strings `$$...$$` and `$tag$...$tag$`, where a tag is an identifier
//!   without `$` that does not start with a digit, and only the opening tag closes it.
//!   `$1` is a parameter. A `$` inside an identifier (`a$$b`) starts nothing.
//! - `"..."` and `U&"..."` identifiers with `""` escapes.
//! - `--` comments to the end of the line, and `/* ... */` comments, which nest.
//! - A `;` ends a statement only at the top level. As in psql, that excludes
//!   parentheses (`CREATE RULE ... DO (INSERT ...; INSERT ...)`) and the
//!   `BEGIN ATOMIC ... END` body of `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, so a
//!   script splits where psql would split it. The one difference: psql reads line by
//!   line and never sees a string continued on the next line, so it can split
//!   `E'a'` newline `'\';'` inside the string; here it follows the server.
//!
//! Offsets are byte offsets into the script; PostgreSQL reports error positions in
//! characters.

/// One statement of a script, with where it starts (1-based line) and its byte range in the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The statement from its first token to its last: no terminating semicolon, and no
    /// whitespace or comments before or after it (comments inside it stay).
    pub sql: &'a str,
    /// The 1-based line of the script on which the statement starts.
    pub line: usize,
    /// The byte offset in the script of the statement's first byte.
    pub start: usize,
    /// The byte offset in the script just past the statement's last byte.
    pub end: usize,
}

/// A quote, dollar quote, block comment or quoted identifier that the script never closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unterminated {what} starting on line {line}")]
pub struct SplitError {
    /// The 1-based line on which the unterminated construct starts.
    pub line: usize,
    /// What is unterminated: `quoted string`, `dollar-quoted string`, `block comment` or `quoted identifier`.
    pub what: &'static str,
}

/// Splits `script` into statements; statements that are only whitespace/comments are dropped; the text of each excludes the terminating semicolon and surrounding whitespace (and the comments around it).
pub fn statements(script: &str) -> Result<Vec<Statement<'_>>, SplitError> {
    let mut lexer = Lexer {
        src: script.as_bytes(),
        pos: 0,
    };
    let mut lines = LineCounter::new(script);
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    let mut nesting = Nesting::default();
    let mut statement = |(start, end): (usize, usize)| Statement {
        sql: &script[start..end],
        line: lines.line_at(start),
        start,
        end,
    };
    loop {
        let token = lexer.next_token().map_err(|unterminated| SplitError {
            line: LineCounter::new(script).line_at(unterminated.start),
            what: unterminated.what,
        })?;
        let Some(token) = token else { break };
        if token.kind == Kind::Semicolon && nesting.at_top_level() {
            out.extend(current.take().map(&mut statement));
            nesting = Nesting::default();
            continue;
        }
        nesting.track(token.kind, &script[token.start..token.end]);
        current = Some((current.map_or(token.start, |(start, _)| start), token.end));
    }
    out.extend(current.map(statement));
    Ok(out)
}

/// The tokens of `sql`, in order; whitespace and comments are not tokens.
pub fn tokens(sql: &str) -> Result<Vec<Token<'_>>, SplitError> {
    let mut lexer = Lexer {
        src: sql.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        let span = lexer.next_token().map_err(|unterminated| SplitError {
            line: LineCounter::new(sql).line_at(unterminated.start),
            what: unterminated.what,
        })?;
        let Some(span) = span else {
            return Ok(out);
        };
        out.push(Token {
            kind: span.kind,
            text: &sql[span.start..span.end],
            start: span.start,
        });
    }
}

/// One token of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// What it is.
    pub kind: Kind,
    /// Its text as written (a string or quoted identifier with its quotes).
    pub text: &'a str,
    /// Its byte offset in the text that was lexed.
    pub start: usize,
}

impl Token<'_> {
    /// True for an unquoted word that is `keyword`, in any case.
    pub fn is_word(&self, keyword: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(keyword)
    }
}

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `;`.
    Semicolon,
    /// `(`.
    OpenParen,
    /// `)`.
    CloseParen,
    /// An unquoted identifier or keyword.
    Word,
    /// A `"quoted"` or `U&"quoted"` identifier.
    QuotedIdentifier,
    /// A string: `'...'`, `E'...'`, `B'...'`, `X'...'`, `N'...'`, `U&'...'` or dollar-quoted.
    String,
    /// Anything else: numbers, parameters, operators, `.` and `,`.
    Other,
}

/// Where a token is, before it is borrowed from the text.
#[derive(Debug, Clone, Copy)]
struct Span {
    kind: Kind,
    start: usize,
    end: usize,
}

/// A construct the script never closes, by its starting byte offset.
struct Unterminated {
    start: usize,
    what: &'static str,
}

/// How a quoted string treats backslashes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backslash {
    Literal,
    Escapes,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn at(&self, offset: usize) -> Option<u8> {
        self.src.get(offset).copied()
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.at(self.pos + ahead)
    }

    /// The next token after any whitespace and comments, or `None` at the end.
    fn next_token(&mut self) -> Result<Option<Span>, Unterminated> {
        self.skip_whitespace_and_comments()?;
        let start = self.pos;
        let Some(first) = self.peek(0) else {
            return Ok(None);
        };
        let kind = match first {
            b';' => {
                self.pos += 1;
                Kind::Semicolon
            }
            b'(' => {
                self.pos += 1;
                Kind::OpenParen
            }
            b')' => {
                self.pos += 1;
                Kind::CloseParen
            }
            b'\'' => {
                self.quoted_string(start, Backslash::Literal)?;
                Kind::String
            }
            b'"' => {
                self.quoted_identifier(start)?;
                Kind::QuotedIdentifier
            }
            b'$' => self.dollar(start)?,
            b'0'..=b'9' => {
                // A number ends at its digits: what follows starts a new token, as
                // in PostgreSQL 15, where `1e'x'` is `1` followed by `e'x'`.
                while self.peek(0).is_some_and(|b| b.is_ascii_digit()) {
                    self.pos += 1;
                }
                Kind::Other
            }
            b if is_ident_start(b) => self.word(start)?,
            _ => {
                // Non-ASCII bytes are identifier characters, so this is one ASCII byte.
                self.pos += 1;
                Kind::Other
            }
        };
        Ok(Some(Span {
            kind,
            start,
            end: self.pos,
        }))
    }

    /// An identifier, or a string with a prefix (`E'`, `B'`, `X'`, `N'`, `U&'`, `U&"`).
    fn word(&mut self, start: usize) -> Result<Kind, Unterminated> {
        match (
            self.peek(0).map(|b| b.to_ascii_lowercase()),
            self.peek(1),
            self.peek(2),
        ) {
            (Some(b'e'), Some(b'\''), _) => {
                self.pos += 1;
                self.quoted_string(start, Backslash::Escapes)?;
            }
            (Some(b'b' | b'x' | b'n'), Some(b'\''), _) => {
                self.pos += 1;
                self.quoted_string(start, Backslash::Literal)?;
            }
            (Some(b'u'), Some(b'&'), Some(b'\'')) => {
                self.pos += 2;
                self.quoted_string(start, Backslash::Literal)?;
            }
            (Some(b'u'), Some(b'&'), Some(b'"')) => {
                self.pos += 2;
                self.quoted_identifier(start)?;
                return Ok(Kind::QuotedIdentifier);
            }
            _ => {
                while self.peek(0).is_some_and(is_ident_cont) {
                    self.pos += 1;
                }
                return Ok(Kind::Word);
            }
        }
        Ok(Kind::String)
    }

    fn skip_whitespace_and_comments(&mut self) -> Result<(), Unterminated> {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(b), _) if is_space(b) => self.pos += 1,
                (Some(b'-'), Some(b'-')) => self.line_comment(),
                (Some(b'/'), Some(b'*')) => self.block_comment()?,
                _ => return Ok(()),
            }
        }
    }

    /// Skips a `--` comment up to (not including) the end of its line.
    fn line_comment(&mut self) {
        while self.peek(0).is_some_and(|b| b != b'\n' && b != b'\r') {
            self.pos += 1;
        }
    }

    /// Skips a `/* */` comment, nested ones included.
    fn block_comment(&mut self) -> Result<(), Unterminated> {
        let start = self.pos;
        let mut depth = 0usize;
        loop {
            match (self.peek(0), self.peek(1)) {
                (None, _) => {
                    return Err(Unterminated {
                        start,
                        what: "block comment",
                    })
                }
                (Some(b'/'), Some(b'*')) => {
                    depth += 1;
                    self.pos += 2;
                }
                (Some(b'*'), Some(b'/')) => {
                    depth -= 1;
                    self.pos += 2;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => self.pos += 1,
            }
        }
    }

    /// Skips a quoted string from its opening quote at `self.pos`; `start` is where its
    /// prefix (if any) starts.
    fn quoted_string(&mut self, start: usize, backslash: Backslash) -> Result<(), Unterminated> {
        self.pos += 1;
        loop {
            match self.peek(0) {
                None => {
                    return Err(Unterminated {
                        start,
                        what: "quoted string",
                    })
                }
                Some(b'\\') if backslash == Backslash::Escapes => {
                    self.pos = (self.pos + 2).min(self.src.len());
                }
                Some(b'\'') if self.peek(1) == Some(b'\'') => self.pos += 2,
                Some(b'\'') => {
                    self.pos += 1;
                    match self.continuation() {
                        Some(quote) => self.pos = quote + 1,
                        None => return Ok(()),
                    }
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Where a string continues after its closing quote: whitespace and `--` comments
    /// holding at least one newline, then a quote (the offset returned).
    fn continuation(&self) -> Option<usize> {
        let mut at = self.pos;
        let mut newline = false;
        loop {
            match (self.at(at), self.at(at + 1)) {
                (Some(b'\n' | b'\r'), _) => {
                    newline = true;
                    at += 1;
                }
                (Some(b), _) if is_space(b) => at += 1,
                (Some(b'-'), Some(b'-')) => {
                    while self.at(at).is_some_and(|b| b != b'\n' && b != b'\r') {
                        at += 1;
                    }
                }
                (Some(b'\''), _) if newline => return Some(at),
                _ => return None,
            }
        }
    }

    /// Skips a quoted identifier from its opening double quote at `self.pos`.
    fn quoted_identifier(&mut self, start: usize) -> Result<(), Unterminated> {
        self.pos += 1;
        loop {
            match (self.peek(0), self.peek(1)) {
                (None, _) => {
                    return Err(Unterminated {
                        start,
                        what: "quoted identifier",
                    })
                }
                (Some(b'"'), Some(b'"')) => self.pos += 2,
                (Some(b'"'), _) => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => self.pos += 1,
            }
        }
    }

    /// Skips what starts with `$`: a dollar-quoted string, a parameter (`$1`), or a lone `$`.
    fn dollar(&mut self, start: usize) -> Result<Kind, Unterminated> {
        let mut at = self.pos + 1;
        match self.at(at) {
            Some(b) if b.is_ascii_digit() => {
                while self.at(at).is_some_and(|b| b.is_ascii_digit()) {
                    at += 1;
                }
                self.pos = at;
                return Ok(Kind::Other);
            }
            Some(b) if is_ident_start(b) => {
                while self.at(at).is_some_and(is_tag_cont) {
                    at += 1;
                }
            }
            _ => {}
        }
        if self.at(at) != Some(b'$') {
            // `$abc` without a closing `$`: PostgreSQL returns the `$` alone and
            // lexes `abc` afresh.
            self.pos += 1;
            return Ok(Kind::Other);
        }
        let delimiter = &self.src[self.pos..=at];
        let body = at + 1;
        match self.src[body..]
            .windows(delimiter.len())
            .position(|window| window == delimiter)
        {
            Some(found) => {
                self.pos = body + found + delimiter.len();
                Ok(Kind::String)
            }
            None => Err(Unterminated {
                start,
                what: "dollar-quoted string",
            }),
        }
    }
}

/// psql's nesting state within one statement: parentheses, and `BEGIN ... END` blocks
/// in the body of `CREATE [OR REPLACE] FUNCTION|PROCEDURE`.
#[derive(Default)]
struct Nesting {
    parens: usize,
    begins: usize,
    identifiers: usize,
    /// The first letter of each of the first four identifiers when it is one of
    /// `create`, `or`, `replace`, `function`, `procedure`; zero otherwise.
    leading: [u8; 4],
}

impl Nesting {
    fn at_top_level(&self) -> bool {
        self.parens == 0 && self.begins == 0
    }

    fn track(&mut self, kind: Kind, text: &str) {
        match kind {
            Kind::OpenParen => self.parens += 1,
            Kind::CloseParen => self.parens = self.parens.saturating_sub(1),
            Kind::Word => self.identifier(text),
            Kind::Semicolon | Kind::QuotedIdentifier | Kind::String | Kind::Other => {}
        }
    }

    fn identifier(&mut self, word: &str) {
        let is = |keyword: &str| word.eq_ignore_ascii_case(keyword);
        if self.identifiers < self.leading.len()
            && ["create", "or", "replace", "function", "procedure"]
                .into_iter()
                .any(is)
        {
            self.leading[self.identifiers] = word.as_bytes()[0].to_ascii_lowercase();
        }
        self.identifiers += 1;
        let [first, second, third, fourth] = self.leading;
        let routine = first == b'c'
            && (matches!(second, b'f' | b'p')
                || (second == b'o' && third == b'r' && matches!(fourth, b'f' | b'p')));
        if !routine || self.parens > 0 {
            return;
        }
        if is("begin") {
            self.begins += 1;
        } else if is("case") {
            // CASE also ends with END; it only matters inside a BEGIN.
            if self.begins > 0 {
                self.begins += 1;
            }
        } else if is("end") {
            self.begins = self.begins.saturating_sub(1);
        }
    }
}

/// Turns increasing byte offsets into 1-based line numbers; a line ends at `\n`, `\r\n` or a lone `\r`.
struct LineCounter<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(script: &'a str) -> Self {
        LineCounter {
            src: script.as_bytes(),
            pos: 0,
            line: 1,
        }
    }

    fn line_at(&mut self, offset: usize) -> usize {
        while self.pos < offset {
            match self.src[self.pos] {
                b'\n' => self.line += 1,
                b'\r' if self.src.get(self.pos + 1) != Some(&b'\n') => self.line += 1,
                _ => {}
            }
            self.pos += 1;
        }
        self.line
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_tag_cont(b) || b == b'$'
}

fn is_tag_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders the split of `script` as one `L<line> <sql>` line per statement (with
    /// `\r` and `\n` inside statements written as such), or `error: <message>`.
    fn render(script: &str) -> String {
        match statements(script) {
            Err(error) => format!("error: {error}"),
            Ok(found) => {
                for statement in &found {
                    assert_eq!(&script[statement.start..statement.end], statement.sql);
                    assert_eq!(statement.sql.trim(), statement.sql);
                    let before = &script[..statement.start];
                    let breaks = before.matches('\n').count() + before.matches('\r').count()
                        - before.matches("\r\n").count();
                    assert_eq!(statement.line, breaks + 1, "line of {:?}", statement.sql);
                }
                found
                    .iter()
                    .map(|s| {
                        let sql = s.sql.replace('\r', r"\r").replace('\n', r"\n");
                        format!("L{} {sql}\n", s.line)
                    })
                    .collect()
            }
        }
    }

    #[track_caller]
    fn check(script: &str, expected: &str) {
        let got = render(script);
        assert_eq!(
            got.trim_end(),
            expected.trim_end(),
            "\nscript:   {script:?}\nexpected:\n{expected}\ngot:\n{got}"
        );
    }

    #[test]
    fn empty_and_comment_only_scripts_have_no_statements() {
        check("", "");
        check("   \n\t \r\n", "");
        check("-- only a comment", "");
        check("-- only a comment; really\n", "");
        check("/* block; */ -- and line\n", "");
        check("/* a /* nested; */ one; */", "");
        check(";;; ;\n;", "");
        check("-- a\n;\n/* b */;", "");
    }

    #[test]
    fn semicolons_end_statements() {
        check("SELECT 1", "L1 SELECT 1");
        check("SELECT 1;", "L1 SELECT 1");
        check("  SELECT 1  ;  ", "L1 SELECT 1");
        check(
            "SELECT 1; SELECT 2;\nSELECT 3",
            "L1 SELECT 1\nL1 SELECT 2\nL2 SELECT 3",
        );
        check("SELECT 1;;;SELECT 2", "L1 SELECT 1\nL1 SELECT 2");
        check("\n\n  SELECT\n  1;\n", r"L3 SELECT\n  1");
        check(
            "SELECT 'é;' AS café; SELECT 2",
            "L1 SELECT 'é;' AS café\nL1 SELECT 2",
        );
    }

    #[test]
    fn comments_around_a_statement_are_left_out_and_inside_stay() {
        check(
            "-- header\n\nCREATE TABLE t (a int);\n-- trailing\n",
            "L3 CREATE TABLE t (a int)",
        );
        check("/* c */ SELECT 1", "L1 SELECT 1");
        check("SELECT 1 -- one; not two\n;", "L1 SELECT 1");
        check("SELECT 1 -- no semicolon at the end", "L1 SELECT 1");
        check(
            "SELECT /* ; */ 1; SELECT 2",
            "L1 SELECT /* ; */ 1\nL1 SELECT 2",
        );
        check(
            "SELECT 1, -- first; \n 2; SELECT 3",
            "L1 SELECT 1, -- first; \\n 2\nL2 SELECT 3",
        );
    }

    #[test]
    fn block_comments_nest() {
        check(
            "SELECT /* a /* b; */ c; */ 1; SELECT 2",
            "L1 SELECT /* a /* b; */ c; */ 1\nL1 SELECT 2",
        );
        check("/**/SELECT 1;/*/ ; */SELECT 2", "L1 SELECT 1\nL1 SELECT 2");
        check("SELECT 1 /*** ; **/; SELECT 2", "L1 SELECT 1\nL1 SELECT 2");
        // Comments start even in the middle of an operator.
        check(
            "SELECT 2 */* c; */ 3; SELECT 4",
            "L1 SELECT 2 */* c; */ 3\nL1 SELECT 4",
        );
        check(
            "SELECT 1--2; SELECT 3\n; SELECT 4",
            "L1 SELECT 1\nL2 SELECT 4",
        );
    }

    #[test]
    fn standard_strings() {
        check("SELECT 'a;b'; SELECT 2", "L1 SELECT 'a;b'\nL1 SELECT 2");
        check(
            "SELECT 'it''s; fine'; SELECT 2",
            "L1 SELECT 'it''s; fine'\nL1 SELECT 2",
        );
        check("SELECT ''';'''; SELECT 2", "L1 SELECT ''';'''\nL1 SELECT 2");
        // A backslash does not escape anything in a standard string.
        check(r"SELECT 'C:\'; SELECT 2", "L1 SELECT 'C:\\'\nL1 SELECT 2");
        check(
            "SELECT 'a\n;b'; SELECT 2",
            "L1 SELECT 'a\\n;b'\nL2 SELECT 2",
        );
        check(
            "SELECT B'1;0', X'1F;', N'x;y', b'1', x'2', n'3'; SELECT 2",
            "L1 SELECT B'1;0', X'1F;', N'x;y', b'1', x'2', n'3'\nL1 SELECT 2",
        );
    }

    #[test]
    fn escape_strings() {
        check(r"SELECT E'\';'; SELECT 2", "L1 SELECT E'\\';'\nL1 SELECT 2");
        check(r"SELECT e'\\'; SELECT 2", "L1 SELECT e'\\\\'\nL1 SELECT 2");
        check(
            r"SELECT E'a''b;c'; SELECT 2",
            "L1 SELECT E'a''b;c'\nL1 SELECT 2",
        );
        check(
            r"SELECT E'\\\';'; SELECT 2",
            "L1 SELECT E'\\\\\\';'\nL1 SELECT 2",
        );
        // `E` only prefixes a string at the start of a token: here `some` is an
        // identifier and `'\'` a standard string.
        check(
            r"SELECT 1 AS some'\'; SELECT 2",
            "L1 SELECT 1 AS some'\\'\nL1 SELECT 2",
        );
        // After a number it is a new token (PostgreSQL 15 lexes `1` then `e'\''`).
        check(r"SELECT 1e'\''; SELECT 2", "L1 SELECT 1e'\\''\nL1 SELECT 2");
    }

    #[test]
    fn strings_continued_on_the_next_line_keep_their_kind() {
        check(
            "SELECT E'a'\n'\\';'; SELECT 2",
            "L1 SELECT E'a'\\n'\\';'\nL2 SELECT 2",
        );
        check(
            "SELECT E'a' -- c;\n  '\\';'; SELECT 2",
            "L1 SELECT E'a' -- c;\\n  '\\';'\nL2 SELECT 2",
        );
        // Without a newline in between, the second string is a new standard one.
        check(
            r"SELECT E'a' '\'; SELECT 2",
            "L1 SELECT E'a' '\\'\nL1 SELECT 2",
        );
    }

    #[test]
    fn unicode_strings_and_identifiers() {
        check(
            r"SELECT U&'d\0061t\+000061;'; SELECT 2",
            "L1 SELECT U&'d\\0061t\\+000061;'\nL1 SELECT 2",
        );
        // A backslash does not escape a quote in a U& string either.
        check(r"SELECT U&'\'; SELECT 2", "L1 SELECT U&'\\'\nL1 SELECT 2");
        check(
            r#"SELECT u&"a;b""c" FROM t; SELECT 2"#,
            "L1 SELECT u&\"a;b\"\"c\" FROM t\nL1 SELECT 2",
        );
    }

    #[test]
    fn quoted_identifiers() {
        check(
            r#"SELECT "a;b" FROM "t""x;"; SELECT 2"#,
            "L1 SELECT \"a;b\" FROM \"t\"\"x;\"\nL1 SELECT 2",
        );
        check(
            r#"SELECT "it's"; SELECT 2"#,
            "L1 SELECT \"it's\"\nL1 SELECT 2",
        );
        check(
            r#"SELECT "--;"; SELECT 2"#,
            "L1 SELECT \"--;\"\nL1 SELECT 2",
        );
    }

    #[test]
    fn dollar_quotes() {
        check("SELECT $$a;b$$; SELECT 2", "L1 SELECT $$a;b$$\nL1 SELECT 2");
        check(
            "SELECT $$it's; -- /*$$; SELECT 2",
            "L1 SELECT $$it's; -- /*$$\nL1 SELECT 2",
        );
        check(
            "CREATE FUNCTION f() RETURNS int AS $body$ SELECT $$;$$; $body$ LANGUAGE sql; SELECT 2",
            "L1 CREATE FUNCTION f() RETURNS int AS $body$ SELECT $$;$$; $body$ LANGUAGE sql\nL1 SELECT 2",
        );
        check(
            "SELECT $a$ $b$ ; $b$ $a$; SELECT 2",
            "L1 SELECT $a$ $b$ ; $b$ $a$\nL1 SELECT 2",
        );
        check(
            "SELECT $a$ $ab$ ; $b$a$; SELECT 2",
            "L1 SELECT $a$ $ab$ ; $b$a$\nL1 SELECT 2",
        );
        check(
            "SELECT $_x1$;$_x1$; SELECT 2",
            "L1 SELECT $_x1$;$_x1$\nL1 SELECT 2",
        );
        check("SELECT $é$;$é$; SELECT 2", "L1 SELECT $é$;$é$\nL1 SELECT 2");
        check(
            "SELECT $TAG$;$tag$;$TAG$; SELECT 2",
            "L1 SELECT $TAG$;$tag$;$TAG$\nL1 SELECT 2",
        );
        check(
            "DO $$BEGIN PERFORM 1; END$$; SELECT 2",
            "L1 DO $$BEGIN PERFORM 1; END$$\nL1 SELECT 2",
        );
        // A number ends before a `$`, which may then open a quote.
        check("SELECT 1$$;$$; SELECT 2", "L1 SELECT 1$$;$$\nL1 SELECT 2");
    }

    #[test]
    fn dollars_that_are_not_quotes() {
        check(
            "PREPARE p AS SELECT $1; EXECUTE p(1)",
            "L1 PREPARE p AS SELECT $1\nL1 EXECUTE p(1)",
        );
        check("SELECT $1, $23; SELECT 2", "L1 SELECT $1, $23\nL1 SELECT 2");
        // `$1` is a parameter, then `$$` opens a quote.
        check("SELECT $1$$;$$; SELECT 2", "L1 SELECT $1$$;$$\nL1 SELECT 2");
        // A tag cannot start with a digit: `$1` then the identifier `abc$`.
        check("SELECT $1abc$ ; SELECT 2", "L1 SELECT $1abc$\nL1 SELECT 2");
        // A `$` inside an identifier opens nothing.
        check("SELECT a$$b; SELECT 2", "L1 SELECT a$$b\nL1 SELECT 2");
        check(
            "SELECT a$b$c, b$b$; SELECT 2",
            "L1 SELECT a$b$c, b$b$\nL1 SELECT 2",
        );
        check(
            "SELECT $; SELECT $abc; SELECT 2",
            "L1 SELECT $\nL1 SELECT $abc\nL1 SELECT 2",
        );
        check("SELECT $a-b$; SELECT 2", "L1 SELECT $a-b$\nL1 SELECT 2");
    }

    #[test]
    fn parentheses_hold_semicolons_as_in_psql() {
        check(
            "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)); SELECT 2",
            "L1 CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))\nL1 SELECT 2",
        );
        check(
            "SELECT (';' || ')'); SELECT 2",
            "L1 SELECT (';' || ')')\nL1 SELECT 2",
        );
        // A stray closing parenthesis does not go below the top level.
        check("SELECT 1); SELECT 2", "L1 SELECT 1)\nL1 SELECT 2");
    }

    #[test]
    fn begin_atomic_bodies_hold_semicolons_as_in_psql() {
        check(
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT CASE WHEN true THEN 2 END;\nEND;\nSELECT 3",
            "L1 CREATE FUNCTION f() RETURNS int LANGUAGE sql\\nBEGIN ATOMIC\\n  SELECT 1;\\n  SELECT CASE WHEN true THEN 2 END;\\nEND\nL6 SELECT 3",
        );
        check(
            "create or replace procedure p() begin atomic insert into t values (1); end; call p()",
            "L1 create or replace procedure p() begin atomic insert into t values (1); end\nL1 call p()",
        );
        // Transaction control and other statements are not routine bodies.
        check("BEGIN; SELECT 1; END;", "L1 BEGIN\nL1 SELECT 1\nL1 END");
        check(
            "CREATE TABLE begin_log (id int); BEGIN; SELECT 1",
            "L1 CREATE TABLE begin_log (id int)\nL1 BEGIN\nL1 SELECT 1",
        );
        check(
            "CREATE FUNCTION f() RETURNS int AS 'SELECT 1; SELECT 2' LANGUAGE sql; SELECT 2",
            "L1 CREATE FUNCTION f() RETURNS int AS 'SELECT 1; SELECT 2' LANGUAGE sql\nL1 SELECT 2",
        );
        // CASE ... END outside a BEGIN body changes nothing.
        check(
            "CREATE FUNCTION f(int) RETURNS int LANGUAGE sql RETURN CASE WHEN $1 > 0 THEN 1 END; SELECT 2",
            "L1 CREATE FUNCTION f(int) RETURNS int LANGUAGE sql RETURN CASE WHEN $1 > 0 THEN 1 END\nL1 SELECT 2",
        );
    }

    #[test]
    fn crlf_and_lone_cr_line_endings() {
        check(
            "SELECT 1;\r\nSELECT\r\n  2;\r\n-- c\r\nSELECT 3\r\n",
            "L1 SELECT 1\nL2 SELECT\\r\\n  2\nL5 SELECT 3",
        );
        check("SELECT 1;\rSELECT 2", "L1 SELECT 1\nL2 SELECT 2");
        check("SELECT 1 -- x\r; SELECT 2", "L1 SELECT 1\nL2 SELECT 2");
        check(
            "SELECT 1;\r\n\r\nSELECT 'x",
            "error: unterminated quoted string starting on line 3",
        );
    }

    #[test]
    fn unterminated_constructs_name_their_first_line() {
        check(
            "SELECT 1;\nSELECT 'abc",
            "error: unterminated quoted string starting on line 2",
        );
        check(
            "SELECT 'it''s",
            "error: unterminated quoted string starting on line 1",
        );
        check(
            r"SELECT E'abc\'",
            "error: unterminated quoted string starting on line 1",
        );
        check(
            r"SELECT 1;  U&'abc",
            "error: unterminated quoted string starting on line 1",
        );
        check(
            "SELECT 1;\n\nSELECT $tag$ abc\n $tog$ $$ $tag",
            "error: unterminated dollar-quoted string starting on line 3",
        );
        check(
            "SELECT $$",
            "error: unterminated dollar-quoted string starting on line 1",
        );
        check(
            "SELECT 1;\n/* a /* b */\n SELECT 2;",
            "error: unterminated block comment starting on line 2",
        );
        check(
            "SELECT /*/",
            "error: unterminated block comment starting on line 1",
        );
        check(
            "SELECT \"abc",
            "error: unterminated quoted identifier starting on line 1",
        );
        check(
            "SELECT\n\n U&\"a\"\"",
            "error: unterminated quoted identifier starting on line 3",
        );
        check(
            "SELECT E'a'\n'b",
            "error: unterminated quoted string starting on line 1",
        );
    }

    #[test]
    fn errors_expose_line_and_what() {
        let error = statements("SELECT 1;\nSELECT $x$").unwrap_err();
        assert_eq!(
            error,
            SplitError {
                line: 2,
                what: "dollar-quoted string"
            }
        );
        assert_eq!(
            error.to_string(),
            "unterminated dollar-quoted string starting on line 2"
        );
    }

    /// Every migration splits into the statements it was written with, and so do
    /// their concatenations.
    #[test]
    fn migrations_split_into_their_statements() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let expected = [
            ("V1__baseline.sql", 20, "CREATE "),
            ("V1__baseline.down.sql", 8, "DROP TABLE "),
            (
                "V2__performance_indexes.sql",
                3,
                "CREATE INDEX CONCURRENTLY ",
            ),
            (
                "V2__performance_indexes.down.sql",
                3,
                "DROP INDEX CONCURRENTLY ",
            ),
            ("V3__user_credentials.sql", 1, "ALTER TABLE users"),
            ("V3__user_credentials.down.sql", 1, "ALTER TABLE users"),
            ("V4__api_keys_and_refresh_tokens.sql", 6, "CREATE "),
            ("V4__api_keys_and_refresh_tokens.down.sql", 2, "DROP TABLE "),
        ];
        let (mut ups, mut downs) = (String::new(), String::new());
        for (file, count, prefix) in expected {
            let script = std::fs::read_to_string(dir.join(file)).unwrap();
            let found = statements(&script).unwrap();
            assert_eq!(found.len(), count, "{file}");
            for statement in &found {
                assert!(
                    statement.sql.starts_with(prefix),
                    "{file}: {}",
                    statement.sql
                );
                assert!(!statement.sql.contains(';'), "{file}: {}", statement.sql);
            }
            let all = if file.ends_with(".down.sql") {
                &mut downs
            } else {
                &mut ups
            };
            all.push_str(&script);
        }
        assert_eq!(statements(&ups).unwrap().len(), 20 + 3 + 1 + 6);
        assert_eq!(statements(&downs).unwrap().len(), 8 + 3 + 1 + 2);
    }

    /// Scripts built at random from tricky pieces split back into the statements they
    /// were built from.
    #[test]
    fn generated_scripts_split_back_into_their_statements() {
        const TOKENS: &[&str] = &[
            "SELECT",
            "x",
            "1",
            "'a;b'",
            "'it''s;'",
            r"N'\'",
            r"E'\';'",
            r"e'\\'",
            "E'a'\n';'",
            "$$;$$",
            "$t$ $$; $t$",
            "$t$$t$",
            "\"x;y\"",
            "\"a\"\"b\"",
            r"U&'\0041;'",
            "U&\"x;\"",
            "B'1;'",
            "(1; 2)",
            "(\n;\n)",
            "$1",
            "a$$b",
            "*/",
            "-",
            "é",
        ];
        const GAPS: &[&str] = &[
            " ",
            "\n",
            "\r\n",
            " /* ; */ ",
            " -- ;\n",
            "/* /* ; */ */",
            "\t",
        ];
        const ENDS: &[&str] = &[
            ";",
            ";\n",
            "; -- c;\n",
            ";/* ; */",
            ";;",
            "\r\n;\r\n",
            "\n-- x\n;",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % n as u64).unwrap()
        };
        for _ in 0..500 {
            let mut script = String::new();
            let mut expected = Vec::new();
            for _ in 0..1 + next(4) {
                if next(5) == 0 {
                    script.push_str(GAPS[next(GAPS.len())]);
                    script.push(';');
                }
                let mut statement = String::new();
                for i in 0..1 + next(5) {
                    if i > 0 {
                        statement.push_str(GAPS[next(GAPS.len())]);
                    }
                    statement.push_str(TOKENS[next(TOKENS.len())]);
                }
                script.push_str(&statement);
                script.push_str(ENDS[next(ENDS.len())]);
                expected.push(statement);
            }
            let found: Vec<_> = statements(&script)
                .unwrap_or_else(|e| panic!("{e} in {script:?}"))
                .iter()
                .map(|s| s.sql.to_owned())
                .collect();
            assert_eq!(found, expected, "script: {script:?}");
        }
    }
}
