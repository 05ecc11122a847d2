//! What the rehearsal (verify and baseline) runs instead of a statement as written, so that a
//! history that uses extensions and enum values added later can be replayed inside one
//! transaction that is rolled back.
//!
//! Three statement shapes need it, everything else runs as written:
//! - `CREATE EXTENSION [IF NOT EXISTS] x` when `x` is already installed in the database: the
//!   rehearsal uses the installed one (its schema is on the rehearsal's search path) instead of
//!   failing with "already exists" or installing a second copy.
//! - `CREATE SCHEMA [IF NOT EXISTS] s` when `s` exists: the schema an extension lives in.
//! - `ALTER TYPE t ADD VALUE 'v' [BEFORE|AFTER 'w']` on an enum the rehearsal created: PostgreSQL
//!   refuses to use a value added by `ADD VALUE` before the transaction that added it commits,
//!   and the rehearsal never commits. So the values a later migration adds are folded into the
//!   enum's `CREATE TYPE ... AS ENUM (...)`, in the order the `ADD VALUE`s give them, and the
//!   `ADD VALUE` itself is skipped. Values made by `CREATE TYPE` are usable at once.

use std::collections::{BTreeMap, HashSet};

use crate::catalog::Migration;
use crate::split::{self, Kind};
use crate::Error;

/// One token of a statement, as the shapes above are read (the lexer is [`split`]'s).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A key word or unquoted identifier, folded to lower case as PostgreSQL folds it.
    Word(String),
    /// A quoted identifier, exactly as written between the quotes.
    Quoted(String),
    /// A string constant's value.
    Str(String),
    /// Any other character.
    Punct(char),
}

/// A token and its byte range in the statement.
#[derive(Clone, Debug)]
struct Located {
    token: Token,
    start: usize,
    end: usize,
}

/// Reads the tokens of one statement from the lexer (`split::tokens`), as this module reads
/// them: words folded to lower case, identifiers and strings by their value, anything else one
/// character at a time. Text that does not lex has no tokens.
fn tokens(sql: &str) -> Vec<Located> {
    let mut out = Vec::new();
    for t in split::tokens(sql).unwrap_or_default() {
        let (start, end) = (t.start, t.start + t.text.len());
        let token = match t.kind {
            Kind::Word => Token::Word(t.text.to_lowercase()),
            Kind::QuotedIdentifier => Token::Quoted(identifier_value(t.text)),
            Kind::String => Token::Str(string_value(t.text)),
            Kind::Semicolon | Kind::OpenParen | Kind::CloseParen | Kind::Other => {
                for (offset, c) in t.text.char_indices() {
                    out.push(Located {
                        token: Token::Punct(c),
                        start: start + offset,
                        end: start + offset + c.len_utf8(),
                    });
                }
                continue;
            }
        };
        out.push(Located { token, start, end });
    }
    out
}

/// A quoted identifier's name: without its quotes (and `U&` prefix), `""` read as `"`.
fn identifier_value(text: &str) -> String {
    let inner = text.trim_start_matches(['U', 'u', '&']);
    inner
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(inner)
        .replace("\"\"", "\"")
}

/// A string constant's value: `''` read as `'`, and in an `E''` string the backslash escapes
/// `\n`, `\t`, `\r` and any character that follows it; a dollar-quoted string as written.
fn string_value(text: &str) -> String {
    if let Some(rest) = text.strip_prefix('$') {
        let tag_end = rest.find('$').map_or(0, |i| i + 2);
        let delimiter = &text[..tag_end];
        return text[tag_end..]
            .strip_suffix(delimiter)
            .unwrap_or(&text[tag_end..])
            .to_owned();
    }
    let escapes = text.starts_with(['e', 'E']);
    let mut value = String::new();
    let mut inside = false;
    let mut chars = text[text.find('\'').unwrap_or(0)..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if inside && chars.peek() == Some(&'\'') => {
                chars.next();
                value.push('\'');
            }
            '\'' => inside = !inside,
            '\\' if inside && escapes => {
                if let Some(next) = chars.next() {
                    value.push(match next {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                }
            }
            c if inside => value.push(c),
            // Between the parts of a string continued on the next line.
            _ => {}
        }
    }
    value
}

/// A cursor over a statement's tokens.
struct Reader<'t> {
    tokens: &'t [Located],
    at: usize,
}

impl Reader<'_> {
    fn word(&mut self, word: &str) -> bool {
        match self.tokens.get(self.at) {
            Some(Located {
                token: Token::Word(w),
                ..
            }) if w == word => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn words(&mut self, words: &[&str]) -> bool {
        let at = self.at;
        if words.iter().all(|w| self.word(w)) {
            return true;
        }
        self.at = at;
        false
    }

    fn punct(&mut self, c: char) -> bool {
        if self.tokens.get(self.at).map(|t| &t.token) == Some(&Token::Punct(c)) {
            self.at += 1;
            return true;
        }
        false
    }

    /// An identifier, folded as PostgreSQL folds it.
    fn name(&mut self) -> Option<String> {
        match self.tokens.get(self.at).map(|t| &t.token) {
            Some(Token::Word(w) | Token::Quoted(w)) => {
                let name = w.clone();
                self.at += 1;
                Some(name)
            }
            _ => None,
        }
    }

    /// A possibly schema-qualified name: its last part.
    fn object_name(&mut self) -> Option<String> {
        let mut name = self.name()?;
        while self.punct('.') {
            name = self.name()?;
        }
        Some(name)
    }

    fn string(&mut self) -> Option<String> {
        match self.tokens.get(self.at).map(|t| &t.token) {
            Some(Token::Str(s)) => {
                let value = s.clone();
                self.at += 1;
                Some(value)
            }
            _ => None,
        }
    }
}

/// The statement shapes the rehearsal treats apart.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    CreateExtension(String),
    CreateSchema(String),
    /// `CREATE TYPE name AS ENUM (labels)`, with the byte range of the parenthesised list.
    CreateEnum {
        name: String,
        labels: Vec<String>,
        list: (usize, usize),
    },
    /// `ALTER TYPE name ADD VALUE [IF NOT EXISTS] 'label' [BEFORE|AFTER 'other']`.
    AddEnumValue {
        name: String,
        label: String,
        place: Place,
    },
    Other,
}

/// Where `ADD VALUE` puts its label.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Last,
    Before(String),
    After(String),
}

fn shape(sql: &str) -> Shape {
    let tokens = tokens(sql);
    let mut r = Reader {
        tokens: &tokens,
        at: 0,
    };
    if r.words(&["create", "extension"]) {
        r.words(&["if", "not", "exists"]);
        return r.name().map_or(Shape::Other, Shape::CreateExtension);
    }
    if r.words(&["create", "schema"]) {
        r.words(&["if", "not", "exists"]);
        if r.word("authorization") {
            return Shape::Other;
        }
        return r.name().map_or(Shape::Other, Shape::CreateSchema);
    }
    if r.words(&["create", "type"]) {
        let Some(name) = r.object_name() else {
            return Shape::Other;
        };
        if !r.words(&["as", "enum"]) {
            return Shape::Other;
        }
        let open = r.at;
        if !r.punct('(') {
            return Shape::Other;
        }
        let mut labels = Vec::new();
        if !r.punct(')') {
            loop {
                let Some(label) = r.string() else {
                    return Shape::Other;
                };
                labels.push(label);
                if r.punct(')') {
                    break;
                }
                if !r.punct(',') {
                    return Shape::Other;
                }
            }
        }
        let close = tokens[r.at - 1].end;
        return Shape::CreateEnum {
            name,
            labels,
            list: (tokens[open].start, close),
        };
    }
    if r.words(&["alter", "type"]) {
        let Some(name) = r.object_name() else {
            return Shape::Other;
        };
        if !r.words(&["add", "value"]) {
            return Shape::Other;
        }
        r.words(&["if", "not", "exists"]);
        let Some(label) = r.string() else {
            return Shape::Other;
        };
        let place = if r.word("before") {
            r.string().map(Place::Before)
        } else if r.word("after") {
            r.string().map(Place::After)
        } else {
            Some(Place::Last)
        };
        return place.map_or(Shape::Other, |place| Shape::AddEnumValue {
            name,
            label,
            place,
        });
    }
    Shape::Other
}

/// What to do with one statement.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Run this SQL (the statement as written, or rewritten).
    Run(String),
    /// Skip it, for this reason.
    Skip(&'static str),
}

/// What the rehearsal knows about the database before it starts.
pub(crate) struct Installed {
    /// Extensions installed in the database.
    pub extensions: HashSet<String>,
    /// Schemas that exist.
    pub schemas: HashSet<String>,
}

/// The rehearsal of a list of migrations: each statement's [`Step`], decided before anything
/// runs because an enum's `CREATE TYPE` must already carry the values later migrations add.
pub(crate) struct Script<'m> {
    /// Per migration, per statement: the statement as written, and its step.
    pub migrations: Vec<Vec<(split::Statement<'m>, Step)>>,
}

/// Plans the rehearsal of `migrations`.
pub(crate) fn plan<'m>(
    migrations: &[&'m Migration],
    installed: &Installed,
) -> Result<Script<'m>, Error> {
    // Enums created in the rehearsal: name -> (migration, statement, labels so far, list range).
    struct Created {
        at: (usize, usize),
        labels: Vec<String>,
        original: Vec<String>,
        list: (usize, usize),
    }
    let mut created: BTreeMap<String, Created> = BTreeMap::new();
    let mut folded: Vec<Created> = Vec::new();
    let mut out: Vec<Vec<(split::Statement<'m>, Step)>> = Vec::new();
    for (m, &migration) in migrations.iter().enumerate() {
        let statements =
            split::statements(migration.up_sql()).map_err(|e| Error::InvalidCatalog {
                file: migration.file_name(),
                reason: e.to_string(),
            })?;
        let mut steps = Vec::with_capacity(statements.len());
        for (s, statement) in statements.iter().enumerate() {
            let step = match shape(statement.sql) {
                Shape::CreateExtension(name) if installed.extensions.contains(&name) => {
                    Step::Skip("the extension is installed in the database; the rehearsal uses it")
                }
                Shape::CreateSchema(name) if installed.schemas.contains(&name) => {
                    Step::Skip("the schema exists")
                }
                Shape::CreateEnum { name, labels, list } => {
                    if let Some(previous) = created.remove(&name) {
                        folded.push(previous);
                    }
                    created.insert(
                        name,
                        Created {
                            at: (m, s),
                            original: labels.clone(),
                            labels,
                            list,
                        },
                    );
                    Step::Run(statement.sql.to_owned())
                }
                Shape::AddEnumValue { name, label, place } => match created.get_mut(&name) {
                    Some(enumeration) => {
                        if !enumeration.labels.contains(&label) {
                            let at = match &place {
                                Place::Last => None,
                                Place::Before(other) => {
                                    enumeration.labels.iter().position(|l| l == other)
                                }
                                Place::After(other) => enumeration
                                    .labels
                                    .iter()
                                    .position(|l| l == other)
                                    .map(|i| i + 1),
                            };
                            match at {
                                Some(i) => enumeration.labels.insert(i, label),
                                None => enumeration.labels.push(label),
                            }
                        }
                        Step::Skip("the value is already part of the rehearsed enum (a value added in a transaction is unusable until it commits, and the rehearsal never commits)")
                    }
                    None => Step::Run(statement.sql.to_owned()),
                },
                _ => Step::Run(statement.sql.to_owned()),
            };
            steps.push((*statement, step));
        }
        out.push(steps);
    }
    folded.extend(created.into_values());
    for enumeration in folded {
        if enumeration.labels == enumeration.original {
            continue;
        }
        let (m, s) = enumeration.at;
        let (statement, step) = &mut out[m][s];
        let (from, to) = enumeration.list;
        let list: Vec<String> = enumeration
            .labels
            .iter()
            .map(|l| format!("'{}'", l.replace('\'', "''")))
            .collect();
        *step = Step::Run(format!(
            "{}({}){}",
            &statement.sql[..from],
            list.join(", "),
            &statement.sql[to..]
        ));
    }
    Ok(Script { migrations: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn shapes() {
        let enum_of = |name: &str, labels: &[&str]| {
            (
                name.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>(),
            )
        };
        let check = |sql: &str, expected: Shape| {
            let got = match shape(sql) {
                Shape::CreateEnum { name, labels, .. } => Shape::CreateEnum {
                    name,
                    labels,
                    list: (0, 0),
                },
                other => other,
            };
            assert_eq!(got, expected, "{sql}");
        };
        check(
            "CREATE EXTENSION ltree",
            Shape::CreateExtension("ltree".into()),
        );
        check(
            "create extension if not exists \"uuid-ossp\" schema x",
            Shape::CreateExtension("uuid-ossp".into()),
        );
        check(
            "CREATE EXTENSION /* c */ IF NOT EXISTS -- c\n PG_TRGM",
            Shape::CreateExtension("pg_trgm".into()),
        );
        check(
            "CREATE SCHEMA IF NOT EXISTS extensions",
            Shape::CreateSchema("extensions".into()),
        );
        check("CREATE SCHEMA AUTHORIZATION joe", Shape::Other);
        let (name, labels) = enum_of("Mood", &["a", "it's", "c\\d"]);
        check(
            "CREATE TYPE \"Mood\" AS ENUM ('a', 'it''s', E'c\\\\d')",
            Shape::CreateEnum {
                name,
                labels,
                list: (0, 0),
            },
        );
        let (name, labels) = enum_of("e", &[]);
        check(
            "create type public.e as enum ()",
            Shape::CreateEnum {
                name,
                labels,
                list: (0, 0),
            },
        );
        check("CREATE TYPE t AS (a int)", Shape::Other);
        check(
            "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'x' AFTER 'a'",
            Shape::AddEnumValue {
                name: "mood".into(),
                label: "x".into(),
                place: Place::After("a".into()),
            },
        );
        check(
            "alter type s.mood add value 'x' before 'a'",
            Shape::AddEnumValue {
                name: "mood".into(),
                label: "x".into(),
                place: Place::Before("a".into()),
            },
        );
        check(
            "ALTER TYPE mood ADD VALUE 'x'",
            Shape::AddEnumValue {
                name: "mood".into(),
                label: "x".into(),
                place: Place::Last,
            },
        );
        check("ALTER TYPE mood RENAME VALUE 'x' TO 'y'", Shape::Other);
        check("SELECT 'CREATE EXTENSION x'", Shape::Other);
        // Malformed input never panics.
        for sql in [
            "CREATE TYPE",
            "ALTER TYPE x ADD VALUE",
            "CREATE TYPE e AS ENUM ('a'",
            "'",
            "\"",
            "E'\\",
            "/* x",
        ] {
            let _ = shape(sql);
        }
    }

    fn steps(files: &[(&str, &str)], extensions: &[&str], schemas: &[&str]) -> Vec<Vec<Step>> {
        let catalog = Catalog::from_files(files.iter().copied()).expect("valid");
        let migrations: Vec<&Migration> = catalog.migrations().iter().collect();
        let installed = Installed {
            extensions: extensions.iter().map(|s| (*s).to_owned()).collect(),
            schemas: schemas.iter().map(|s| (*s).to_owned()).collect(),
        };
        plan(&migrations, &installed)
            .expect("plan")
            .migrations
            .into_iter()
            .map(|m| m.into_iter().map(|(_, step)| step).collect())
            .collect()
    }

    #[test]
    fn values_added_later_are_folded_into_the_create_type_in_their_order() {
        let got = steps(
            &[
                ("V1__a.sql", "CREATE TYPE mood AS ENUM ('happy', 'sad') ;\nCREATE TABLE t (m mood);"),
                ("V1__a.down.sql", "DROP TABLE t; DROP TYPE mood;"),
                ("V2__b.sql", "ALTER TYPE mood ADD VALUE 'meh' BEFORE 'sad';\nALTER TYPE mood ADD VALUE IF NOT EXISTS 'happy';"),
                ("V2__b.down.sql", "SELECT 1;"),
                ("V3__c.sql", "ALTER TYPE mood ADD VALUE 'ok' AFTER 'happy';\nALTER TYPE mood ADD VALUE 'it''s';\nALTER TYPE other ADD VALUE 'x';"),
                ("V3__c.down.sql", "SELECT 1;"),
            ],
            &[],
            &[],
        );
        assert_eq!(
            got[0][0],
            Step::Run(
                "CREATE TYPE mood AS ENUM ('happy', 'ok', 'meh', 'sad', 'it''s') "
                    .trim_end()
                    .to_owned()
            )
        );
        assert!(matches!(got[1][0], Step::Skip(_)) && matches!(got[1][1], Step::Skip(_)));
        assert!(matches!(got[2][0], Step::Skip(_)) && matches!(got[2][1], Step::Skip(_)));
        assert_eq!(
            got[2][2],
            Step::Run("ALTER TYPE other ADD VALUE 'x'".to_owned())
        );
    }

    #[test]
    fn installed_extensions_and_existing_schemas_are_not_created_again() {
        let got = steps(
            &[
                ("V1__a.sql", "CREATE EXTENSION ltree;\nCREATE EXTENSION citext;\nCREATE SCHEMA IF NOT EXISTS ext;\nCREATE SCHEMA other;"),
                ("V1__a.down.sql", "SELECT 1;"),
            ],
            &["ltree", "plpgsql"],
            &["public", "ext"],
        );
        assert!(matches!(got[0][0], Step::Skip(_)));
        assert_eq!(got[0][1], Step::Run("CREATE EXTENSION citext".to_owned()));
        assert!(matches!(got[0][2], Step::Skip(_)));
        assert_eq!(got[0][3], Step::Run("CREATE SCHEMA other".to_owned()));
    }
}
