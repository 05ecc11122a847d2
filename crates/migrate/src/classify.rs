//! What a statement is, read from the lexer's tokens: the one place that recognises statement
//! kinds. A leading comment, a string or a quoted identifier never fools it, because comments
//! are not tokens and strings are never words.

use std::borrow::Cow;

use crate::split::{self, Kind as TokenKind, Token};

/// The kind of a statement, from its leading keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    /// `BEGIN`, `START TRANSACTION`, `COMMIT`, `END`, `ROLLBACK` (also `ROLLBACK TO`), `ABORT`,
    /// `PREPARE TRANSACTION`.
    Transaction,
    /// `SAVEPOINT`, `RELEASE`.
    Savepoint,
    /// `SET ...`, `SET ROLE`, `SET SESSION AUTHORIZATION`, `SET LOCAL ...`.
    Set,
    /// `RESET ...`.
    Reset,
    /// `CREATE [temp|unlogged] TABLE`.
    CreateTable,
    /// `ALTER TABLE`.
    AlterTable,
    /// `DROP TABLE`.
    DropTable,
    /// `CREATE [UNIQUE] INDEX`.
    CreateIndex,
    /// `DROP INDEX`.
    DropIndex,
    /// `REINDEX`.
    Reindex,
    /// `INSERT`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `TRUNCATE`.
    Truncate,
    /// `SELECT`.
    Select,
    /// `DO`: an anonymous code block.
    Do,
    /// Anything else.
    Other,
}

/// What a statement is and what it may do to the session running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The statement's text.
    pub sql: &'a str,
    /// Its kind.
    pub kind: StatementKind,
    /// Its leading keywords as written (at most four words, up to the first token that is
    /// not a word): `CREATE UNIQUE INDEX CONCURRENTLY`.
    pub keywords: Vec<&'a str>,
    /// The relation it acts on, as written (`public."Users"`): the table of `CREATE TABLE`,
    /// `ALTER TABLE`, `DROP TABLE` (its first), `CREATE INDEX` (the table it indexes),
    /// `INSERT`, `UPDATE`, `DELETE`, `TRUNCATE` (its first), `REINDEX TABLE`; the index of
    /// `DROP INDEX` (its first) and `REINDEX INDEX`. `None` for other kinds.
    pub target: Option<&'a str>,
    /// True when it may change the session's settings or role: `SET`, `RESET` (with `LOCAL`,
    /// `ROLE`, `SESSION AUTHORIZATION`), a call of `set_config`, or a `DO` block that mentions
    /// any of them. A function that calls `set_config` inside its body is not seen.
    pub session_change: bool,
    /// True when it may change the search path: `SET [SESSION|LOCAL] search_path`,
    /// `RESET search_path`, `RESET ALL`, `set_config('search_path', ...)`, or a `DO` block
    /// that does one of those.
    pub search_path_change: bool,
    /// True when it releases the session's advisory locks, the migration lock among them:
    /// `DISCARD ALL`, or a call of `pg_advisory_unlock_all` (also in a `DO` block).
    pub releases_advisory_locks: bool,
    /// The byte range in `sql` of the `CONCURRENTLY` keyword, outside parentheses.
    concurrently: Option<(usize, usize)>,
}

impl Statement<'_> {
    /// True for a statement that begins, ends or prepares a transaction: in a migration it
    /// would commit part of the change apart from its history row.
    pub fn controls_transaction(&self) -> bool {
        self.kind == StatementKind::Transaction
    }

    /// True for `CREATE INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY` and
    /// `REINDEX ... CONCURRENTLY`.
    pub fn concurrent_index(&self) -> bool {
        self.concurrently.is_some()
            && matches!(
                self.kind,
                StatementKind::CreateIndex | StatementKind::DropIndex | StatementKind::Reindex
            )
    }

    /// True for a statement that waits for other transactions by design (any `CONCURRENTLY`:
    /// index builds, `REFRESH MATERIALIZED VIEW CONCURRENTLY`, `DETACH PARTITION ...
    /// CONCURRENTLY`): `lock_timeout` would cancel it, leaving an invalid index behind.
    pub fn waits_by_design(&self) -> bool {
        self.concurrently.is_some()
    }

    /// The statement without the `CONCURRENTLY` of a concurrent index operation: the same
    /// object, built inside a transaction. Other statements come back unchanged.
    pub fn without_concurrently(&self) -> Cow<'_, str> {
        match self.concurrently {
            Some((start, end)) if self.concurrent_index() => Cow::Owned(format!(
                "{}{}",
                &self.sql[..start],
                self.sql[end..].trim_start()
            )),
            _ => Cow::Borrowed(self.sql),
        }
    }
}

/// Classifies one statement (as [`split::statements`] returns it). Text that does not lex
/// (an unterminated string) is of kind `Other` and changes nothing.
pub fn classify(sql: &str) -> Statement<'_> {
    let tokens = split::tokens(sql).unwrap_or_default();
    let keywords: Vec<&str> = tokens
        .iter()
        .take_while(|t| t.kind == TokenKind::Word)
        .take(4)
        .map(|t| t.text)
        .collect();
    let kind = kind_of(&tokens);
    let body_tokens = if kind == StatementKind::Do {
        do_body(&tokens)
    } else {
        Vec::new()
    };
    let set_config = |tokens: &[Token<'_>]| tokens.iter().any(|t| t.is_word("set_config"));
    // DISCARD ALL (or TEMP, PLANS, SEQUENCES) is not a kind of its own, but DISCARD ALL resets
    // every setting like RESET ALL does.
    let session_change = matches!(kind, StatementKind::Set | StatementKind::Reset)
        || tokens.first().is_some_and(|t| t.is_word("discard"))
        || set_config(&tokens)
        || body_tokens
            .iter()
            .any(|t| t.is_word("set") || t.is_word("reset") || t.is_word("set_config"));
    let search_path_change = sets_search_path_at(&tokens, 0)
        || calls_set_config_on_search_path(&tokens)
        || (0..body_tokens.len()).any(|i| sets_search_path_at(&body_tokens, i))
        || calls_set_config_on_search_path(&body_tokens);
    let unlock_all =
        |tokens: &[Token<'_>]| tokens.iter().any(|t| t.is_word("pg_advisory_unlock_all"));
    let releases_advisory_locks = (word(&tokens, 0).as_deref() == Some("discard")
        && word(&tokens, 1).as_deref() == Some("all"))
        || unlock_all(&tokens)
        || unlock_all(&body_tokens);
    Statement {
        sql,
        kind,
        keywords,
        target: target(sql, kind, &tokens),
        session_change,
        search_path_change,
        releases_advisory_locks,
        concurrently: concurrently(&tokens),
    }
}

fn word(tokens: &[Token<'_>], at: usize) -> Option<String> {
    tokens
        .get(at)
        .filter(|t| t.kind == TokenKind::Word)
        .map(|t| t.text.to_ascii_lowercase())
}

fn kind_of(tokens: &[Token<'_>]) -> StatementKind {
    use StatementKind as K;
    let Some(first) = word(tokens, 0) else {
        return K::Other;
    };
    let second = word(tokens, 1);
    match first.as_str() {
        "begin" | "start" | "commit" | "end" | "rollback" | "abort" => K::Transaction,
        "prepare" if second.as_deref() == Some("transaction") => K::Transaction,
        "savepoint" | "release" => K::Savepoint,
        "set" => K::Set,
        "reset" => K::Reset,
        "create" => {
            let object = (1..tokens.len().min(6))
                .filter_map(|i| word(tokens, i))
                .find(|w| {
                    !matches!(
                        w.as_str(),
                        "or" | "replace"
                            | "unique"
                            | "global"
                            | "local"
                            | "temp"
                            | "temporary"
                            | "unlogged"
                    )
                });
            match object.as_deref() {
                Some("table") => K::CreateTable,
                Some("index") => K::CreateIndex,
                _ => K::Other,
            }
        }
        "alter" if second.as_deref() == Some("table") => K::AlterTable,
        "drop" => match second.as_deref() {
            Some("table") => K::DropTable,
            Some("index") => K::DropIndex,
            _ => K::Other,
        },
        "reindex" => K::Reindex,
        "insert" => K::Insert,
        "update" => K::Update,
        "delete" => K::Delete,
        "truncate" => K::Truncate,
        "select" => K::Select,
        "do" => K::Do,
        _ => K::Other,
    }
}

/// The `CONCURRENTLY` keyword outside parentheses. It is a reserved word, so an unquoted
/// `concurrently` can be nothing else.
fn concurrently(tokens: &[Token<'_>]) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    for t in tokens {
        match t.kind {
            TokenKind::OpenParen => depth += 1,
            TokenKind::CloseParen => depth = depth.saturating_sub(1),
            _ if depth == 0 && t.is_word("concurrently") => {
                return Some((t.start, t.start + t.text.len()))
            }
            _ => {}
        }
    }
    None
}

/// `SET [SESSION|LOCAL] search_path`, `RESET search_path` or `RESET ALL` starting at token `at`.
fn sets_search_path_at(tokens: &[Token<'_>], at: usize) -> bool {
    let Some(first) = tokens.get(at) else {
        return false;
    };
    if !(first.is_word("set") || first.is_word("reset")) {
        return false;
    }
    let mut next = at + 1;
    while tokens
        .get(next)
        .is_some_and(|t| t.is_word("session") || t.is_word("local"))
    {
        next += 1;
    }
    tokens.get(next).is_some_and(|t| {
        t.is_word("search_path")
            || t.text == "\"search_path\""
            || (first.is_word("reset") && t.is_word("all"))
    })
}

/// `set_config('search_path', ...)` anywhere in the tokens.
fn calls_set_config_on_search_path(tokens: &[Token<'_>]) -> bool {
    tokens.windows(3).any(|w| {
        w[0].is_word("set_config")
            && w[1].kind == TokenKind::OpenParen
            && w[2].kind == TokenKind::String
            && string_content(w[2].text).eq_ignore_ascii_case("search_path")
    })
}

/// The tokens of a `DO` block's body (its first string), or none when it has no body.
fn do_body<'a>(tokens: &[Token<'a>]) -> Vec<Token<'a>> {
    tokens
        .iter()
        .find(|t| t.kind == TokenKind::String)
        .and_then(|t| split::tokens(string_content(t.text)).ok())
        .unwrap_or_default()
}

/// A string token without its quotes (or dollar quotes); escapes are left as they are, which
/// is enough to compare with a plain word.
fn string_content(text: &str) -> &str {
    if let Some(rest) = text.strip_prefix('$') {
        let Some(tag_end) = rest.find('$') else {
            return text;
        };
        let delimiter = &text[..tag_end + 2];
        return text
            .strip_prefix(delimiter)
            .and_then(|t| t.strip_suffix(delimiter))
            .unwrap_or(text);
    }
    let from = text.find('\'').map_or(0, |i| i + 1);
    let to = text
        .rfind('\'')
        .filter(|&i| i >= from)
        .unwrap_or(text.len());
    &text[from..to]
}

/// The relation a statement acts on; see [`Statement::target`].
fn target<'a>(sql: &'a str, kind: StatementKind, tokens: &[Token<'a>]) -> Option<&'a str> {
    use StatementKind as K;
    let after = |keyword: &str| {
        let mut depth = 0usize;
        tokens.iter().position(|t| {
            match t.kind {
                TokenKind::OpenParen => depth += 1,
                TokenKind::CloseParen => depth = depth.saturating_sub(1),
                _ => {}
            }
            depth == 0 && t.is_word(keyword)
        })
    };
    let start = match kind {
        K::CreateTable | K::AlterTable | K::DropTable => after("table"),
        K::CreateIndex => after("on"),
        K::DropIndex => after("index"),
        K::Reindex => tokens
            .iter()
            .position(|t| t.is_word("index") || t.is_word("table")),
        K::Insert => after("into"),
        K::Update => Some(0),
        K::Delete => after("from"),
        K::Truncate => Some(0),
        _ => None,
    }?;
    let mut at = start + 1;
    const SKIPPED: [&str; 6] = ["if", "not", "exists", "only", "concurrently", "table"];
    while tokens
        .get(at)
        .is_some_and(|t| SKIPPED.iter().any(|w| t.is_word(w)))
    {
        at += 1;
    }
    qualified_name(sql, &tokens[at.min(tokens.len())..])
}

/// A name of one or more parts separated by `.`, at the start of `tokens`, as written.
fn qualified_name<'a>(sql: &'a str, tokens: &[Token<'a>]) -> Option<&'a str> {
    let is_name = |t: &Token<'_>| matches!(t.kind, TokenKind::Word | TokenKind::QuotedIdentifier);
    let first = tokens.first().filter(|t| is_name(t))?;
    let mut last = first;
    let mut at = 1;
    while let (Some(dot), Some(part)) = (tokens.get(at), tokens.get(at + 1)) {
        if dot.text != "." || !is_name(part) {
            break;
        }
        last = part;
        at += 2;
    }
    Some(&sql[first.start..last.start + last.text.len()])
}

#[cfg(test)]
mod tests {
    use super::{classify, StatementKind as K};

    /// One row: the statement, then what it must be classified as.
    struct Case {
        sql: &'static str,
        kind: K,
        target: Option<&'static str>,
        /// controls_transaction, session_change, search_path_change, concurrent_index,
        /// waits_by_design.
        flags: [bool; 5],
    }

    const NONE: [bool; 5] = [false; 5];
    const TRANSACTION: [bool; 5] = [true, false, false, false, false];
    const SESSION: [bool; 5] = [false, true, false, false, false];
    const SEARCH_PATH: [bool; 5] = [false, true, true, false, false];
    const CONCURRENT: [bool; 5] = [false, false, false, true, true];

    fn case(sql: &'static str, kind: K, target: Option<&'static str>, flags: [bool; 5]) -> Case {
        Case {
            sql,
            kind,
            target,
            flags,
        }
    }

    #[test]
    fn statements_are_classified_by_their_tokens() {
        let cases = [
            // Transaction control, in any case, after comments.
            case("BEGIN", K::Transaction, None, TRANSACTION),
            case("/* setup */ begin", K::Transaction, None, TRANSACTION),
            case("-- done\nCOMMIT", K::Transaction, None, TRANSACTION),
            case("start transaction", K::Transaction, None, TRANSACTION),
            case("END", K::Transaction, None, TRANSACTION),
            case("ROLLBACK TO SAVEPOINT s", K::Transaction, None, TRANSACTION),
            case("abort", K::Transaction, None, TRANSACTION),
            case("PREPARE TRANSACTION 'x'", K::Transaction, None, TRANSACTION),
            case("PREPARE q AS SELECT 1", K::Other, None, NONE),
            case("SAVEPOINT s", K::Savepoint, None, NONE),
            case("RELEASE SAVEPOINT s", K::Savepoint, None, NONE),
            // A word that only looks like a keyword is not one.
            case("SELECT 'BEGIN'", K::Select, None, NONE),
            case("SELECT \"commit\" FROM t", K::Select, None, NONE),
            case("/* BEGIN */ SELECT 1", K::Select, None, NONE),
            // Session changes.
            case("SET lock_timeout = 5", K::Set, None, SESSION),
            case("set local statement_timeout to 0", K::Set, None, SESSION),
            case("SET ROLE admin", K::Set, None, SESSION),
            case("SET SESSION AUTHORIZATION bob", K::Set, None, SESSION),
            case("RESET ROLE", K::Reset, None, SESSION),
            case("SELECT set_config('lock_timeout', '0', false)", K::Select, None, SESSION),
            case("SELECT pg_catalog.SET_CONFIG('a.b', 'c', true)", K::Select, None, SESSION),
            case("SELECT 'set_config(x)'", K::Select, None, NONE),
            case("SELECT 1 -- set_config\n", K::Select, None, NONE),
            case("UPDATE t SET x = 1", K::Update, Some("t"), NONE),
            case("DO $$BEGIN PERFORM set_config('a.b', 'c', false); END$$", K::Do, None, SESSION),
            case("DO $$BEGIN RAISE NOTICE 'x'; END$$", K::Do, None, NONE),
            // search_path changes.
            case("SET search_path = x", K::Set, None, SEARCH_PATH),
            case("set local SEARCH_PATH to x", K::Set, None, SEARCH_PATH),
            case("SET SESSION \"search_path\" TO x", K::Set, None, SEARCH_PATH),
            case("RESET search_path", K::Reset, None, SEARCH_PATH),
            case("RESET ALL", K::Reset, None, SEARCH_PATH),
            case("DISCARD ALL", K::Other, None, SESSION),
            case("SET /* search_path */ lock_timeout = 1", K::Set, None, SESSION),
            case("SET application_name = 'search_path'", K::Set, None, SESSION),
            case("SELECT set_config('search_path', 'x', true)", K::Select, None, SEARCH_PATH),
            case("DO $body$ BEGIN SET LOCAL search_path = x; END $body$", K::Do, None, SEARCH_PATH),
            case("CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = x AS 'SELECT 1'", K::Other, None, NONE),
            case("ALTER ROLE r SET search_path = x", K::Other, None, NONE),
            // Concurrent index operations.
            case("CREATE INDEX CONCURRENTLY i ON t (x)", K::CreateIndex, Some("t"), CONCURRENT),
            case("-- build it\ncreate unique index\n  concurrently if not exists i on only s.\"T\" (x)", K::CreateIndex, Some("s.\"T\""), CONCURRENT),
            case("DROP INDEX CONCURRENTLY IF EXISTS s.i", K::DropIndex, Some("s.i"), CONCURRENT),
            case("REINDEX (VERBOSE) INDEX CONCURRENTLY i", K::Reindex, Some("i"), CONCURRENT),
            case("REINDEX TABLE t", K::Reindex, Some("t"), NONE),
            case("CREATE INDEX i ON t (x)", K::CreateIndex, Some("t"), NONE),
            case("CREATE INDEX i ON t (x) WHERE note = 'CONCURRENTLY'", K::CreateIndex, Some("t"), NONE),
            case("CREATE INDEX /* CONCURRENTLY */ i ON t (x)", K::CreateIndex, Some("t"), NONE),
            case("REFRESH MATERIALIZED VIEW CONCURRENTLY v", K::Other, None, [false, false, false, false, true]),
            // Targets.
            case("CREATE TABLE IF NOT EXISTS public.api_keys (id int)", K::CreateTable, Some("public.api_keys"), NONE),
            case("create unlogged table t (x int)", K::CreateTable, Some("t"), NONE),
            case("ALTER TABLE ONLY \"Users\" ADD COLUMN x int", K::AlterTable, Some("\"Users\""), NONE),
            case("ALTER TABLE IF EXISTS t DROP x", K::AlterTable, Some("t"), NONE),
            case("DROP TABLE a, b", K::DropTable, Some("a"), NONE),
            case("INSERT INTO s.t (x) VALUES (1)", K::Insert, Some("s.t"), NONE),
            case("UPDATE ONLY t SET x = 1", K::Update, Some("t"), NONE),
            case("DELETE FROM t WHERE x IN (SELECT 1)", K::Delete, Some("t"), NONE),
            case("TRUNCATE TABLE t", K::Truncate, Some("t"), NONE),
            case("CREATE VIEW v AS SELECT 1", K::Other, None, NONE),
        ];
        for c in cases {
            let s = classify(c.sql);
            let got = [
                s.controls_transaction(),
                s.session_change,
                s.search_path_change,
                s.concurrent_index(),
                s.waits_by_design(),
            ];
            assert_eq!(
                (s.kind, s.target, got),
                (c.kind, c.target, c.flags),
                "{:?}",
                c.sql
            );
        }
    }

    #[test]
    fn leading_keywords_are_the_words_before_anything_else() {
        let check = |sql: &str, expected: &[&str]| assert_eq!(classify(sql).keywords, expected);
        check(
            "/* x */ CREATE UNIQUE INDEX CONCURRENTLY i ON t (x)",
            &["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY"],
        );
        check("SELECT 1", &["SELECT"]);
        check("drop table \"t\"", &["drop", "table"]);
        check("'x'", &[]);
    }

    #[test]
    fn concurrently_is_dropped_only_where_it_is_the_keyword() {
        let check = |sql: &str, expected: &str| {
            assert_eq!(classify(sql).without_concurrently(), expected, "{sql:?}")
        };
        check(
            "CREATE INDEX CONCURRENTLY i ON t (x)",
            "CREATE INDEX i ON t (x)",
        );
        check(
            "create unique index\n  concurrently i on t (x)",
            "create unique index\n  i on t (x)",
        );
        check("DROP INDEX CONCURRENTLY i", "DROP INDEX i");
        check("REINDEX INDEX CONCURRENTLY i", "REINDEX INDEX i");
        check("CREATE INDEX i ON t (x)", "CREATE INDEX i ON t (x)");
        check(
            "UPDATE t SET note = 'CONCURRENTLY'",
            "UPDATE t SET note = 'CONCURRENTLY'",
        );
        check(
            "CREATE /* CONCURRENTLY */ INDEX i ON t (x)",
            "CREATE /* CONCURRENTLY */ INDEX i ON t (x)",
        );
        check(
            "REFRESH MATERIALIZED VIEW CONCURRENTLY v",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY v",
        );
    }
}
