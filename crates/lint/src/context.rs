//! What the lint knows beyond one statement: line numbers, which tables and columns a file
//! creates (so an index on a new table needs no CONCURRENTLY and a down may drop what its up
//! created), and where `CONCURRENTLY` appears.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SourceFile, SyntaxNode};

/// Byte offsets to 1-based line numbers.
pub(crate) struct Lines {
    starts: Vec<usize>,
    text: String,
}

impl Lines {
    pub(crate) fn new(text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines {
            starts,
            text: text.to_owned(),
        }
    }

    /// The line holding this byte offset.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset).max(1)
    }

    /// The text of a 1-based line, without its newline.
    pub(crate) fn text(&self, line: usize) -> &str {
        let Some(&start) = self.starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self.starts.get(line).map_or(self.text.len(), |e| e - 1);
        self.text[start..end].trim_end_matches('\r')
    }
}

/// A name as PostgreSQL folds it: unquoted lowercased, quoted kept, schema dropped.
fn name_of(node: &SyntaxNode) -> String {
    let text = node.text().to_string();
    let word = text
        .split_whitespace()
        .rfind(|w| !w.eq_ignore_ascii_case("only") && *w != "*")
        .unwrap_or_default();
    let last = word.rsplit('.').next().unwrap_or(word);
    match last.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => last.to_ascii_lowercase(),
    }
}

/// Tables a file creates and columns it adds, with where.
#[derive(Default)]
pub(crate) struct Created {
    tables: Vec<(String, usize)>,
    columns: Vec<(String, String)>,
}

impl Created {
    pub(crate) fn by(file: &SourceFile) -> Created {
        let mut created = Created::default();
        for stmt in file.stmts() {
            let offset = usize::from(stmt.syntax().text_range().start());
            match stmt {
                ast::Stmt::CreateTable(table) => {
                    if let Some(name) = table.table_name() {
                        created.tables.push((name_of(name.syntax()), offset));
                    }
                }
                ast::Stmt::CreateTableAs(table) => {
                    if let Some(name) = table.table_name() {
                        created.tables.push((name_of(name.syntax()), offset));
                    }
                }
                ast::Stmt::AlterTable(alter) => {
                    let Some(table) = alter.table_relation_name() else {
                        continue;
                    };
                    let table = name_of(table.syntax());
                    for action in alter.actions() {
                        if let ast::AlterTableAction::AddColumn(add) = action {
                            if let Some(column) = add.column_name() {
                                created
                                    .columns
                                    .push((table.clone(), name_of(column.syntax())));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        created
    }

    /// True when the CREATE INDEX at `offset` is on a table this file created before it.
    pub(crate) fn indexes_new_table(&self, file: &SourceFile, offset: usize) -> bool {
        let Some(ast::Stmt::CreateIndex(index)) = statement_at(file, offset) else {
            return false;
        };
        let Some(relation) = index.table_relation_name() else {
            return false;
        };
        let table = name_of(relation.syntax());
        self.tables
            .iter()
            .any(|(t, at)| *t == table && *at < offset)
    }

    /// True when the drop at `offset` (in a down file) removes only what this (up) file created.
    pub(crate) fn covers_drop(&self, down: &SourceFile, offset: usize) -> bool {
        let has_table = |name: &str| self.tables.iter().any(|(t, _)| t == name);
        match statement_at(down, offset) {
            Some(ast::Stmt::DropTable(drop)) => {
                let mut names = drop
                    .table_name_refs()
                    .map(|t| name_of(t.syntax()))
                    .peekable();
                names.peek().is_some() && names.all(|t| has_table(&t))
            }
            Some(ast::Stmt::AlterTable(alter)) => {
                let Some(table) = alter.table_relation_name() else {
                    return false;
                };
                let table = name_of(table.syntax());
                alter.actions().any(|action| match action {
                    ast::AlterTableAction::DropColumn(drop) => {
                        let range = drop.syntax().text_range();
                        usize::from(range.start()) <= offset
                            && offset < usize::from(range.end())
                            && drop.column_name_ref().is_some_and(|c| {
                                let column = name_of(c.syntax());
                                has_table(&table)
                                    || self
                                        .columns
                                        .iter()
                                        .any(|(t, col)| *t == table && *col == column)
                            })
                    }
                    _ => false,
                })
            }
            _ => false,
        }
    }
}

/// The statement that holds a byte offset.
pub(crate) fn statement_at(file: &SourceFile, offset: usize) -> Option<ast::Stmt> {
    file.stmts().find(|stmt| {
        let range = stmt.syntax().text_range();
        usize::from(range.start()) <= offset && offset < usize::from(range.end())
    })
}

/// Where the statement holding `offset` starts (its first token that is not a comment).
pub(crate) fn statement_start(file: &SourceFile, offset: usize) -> Option<usize> {
    let stmt = statement_at(file, offset)?;
    stmt.syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .find(|t| !t.kind().is_trivia())
        .map(|t| usize::from(t.text_range().start()))
}

/// Byte offsets of the statements that cannot run inside a transaction block because of their
/// CONCURRENTLY (CREATE/DROP INDEX, REINDEX, DETACH PARTITION; not REFRESH MATERIALIZED VIEW),
/// as the engine's own classifier sees them, so the lint and the engine never disagree.
pub(crate) fn concurrent_statements(text: &str) -> Vec<usize> {
    use ecomind_migrate::classify::{classify, StatementKind};
    ecomind_migrate::split::statements(text)
        .unwrap_or_default()
        .iter()
        .filter(|statement| {
            let kind = classify(statement.sql);
            kind.concurrent_index()
                || (kind.waits_by_design() && kind.kind == StatementKind::AlterTable)
        })
        .map(|statement| statement.start)
        .collect()
}
