//! Suppressions: `-- ecomind-lint: allow <rule> <reason>` on the line above a statement (or in
//! the comment block right above it) accepts that rule's findings on it. The reason is required,
//! so a reviewer reads why the danger does not apply here.

use squawk_syntax::ast::AstNode;
use squawk_syntax::{SourceFile, SyntaxKind};

use crate::context::{statement_start, Lines};
use crate::rules::{self, Rule};
use crate::Finding;

/// What starts a suppression comment. Not `-- ecomind:`, which the catalog reserves for directives.
pub const PREFIX: &str = "-- ecomind-lint:";

/// One valid suppression.
struct Allow {
    line: usize,
    rule: String,
}

/// Drops the findings a valid suppression covers and adds a finding for each invalid one.
/// `findings` carry the byte offset they were found at.
pub(crate) fn apply(
    file: &str,
    lines: &Lines,
    tree: &SourceFile,
    findings: Vec<(usize, Finding)>,
) -> Vec<Finding> {
    let mut allows = Vec::new();
    let mut out = Vec::new();
    for token in tree
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind() == SyntaxKind::COMMENT)
    {
        let Some(body) = token.text().strip_prefix(PREFIX) else {
            continue;
        };
        let line = lines.line_of(usize::from(token.text_range().start()));
        match parse(body) {
            Ok(rule) => allows.push(Allow { line, rule }),
            Err(problem) => out.push(rules::finding(
                Rule::InvalidSuppression,
                file,
                line,
                format!("{problem}: {}", Rule::InvalidSuppression.why()),
            )),
        }
    }
    for (offset, finding) in findings {
        let start = statement_start(tree, offset).map(|o| lines.line_of(o));
        let anchors = [Some(finding.line), start];
        let allowed = anchors.into_iter().flatten().any(|anchor| {
            // The comment block right above the anchor line.
            let mut line = anchor;
            while line > 1 && lines.text(line - 1).trim_start().starts_with("--") {
                line -= 1;
                if allows
                    .iter()
                    .any(|a| a.line == line && a.rule == finding.rule)
                {
                    return true;
                }
            }
            false
        });
        if !allowed {
            out.push(finding);
        }
    }
    out
}

/// `allow <rule> <reason>` -> the rule's id.
fn parse(body: &str) -> Result<String, String> {
    let mut words = body.split_whitespace();
    if words.next() != Some("allow") {
        return Err(format!(
            "`{PREFIX}` must be followed by `allow <rule> <reason>`"
        ));
    }
    let Some(id) = words.next().map(|w| w.trim_end_matches([':', ','])) else {
        return Err("the suppression names no rule".to_owned());
    };
    if Rule::from_id(id).is_none() {
        return Err(format!("`{id}` is not a rule the lint runs"));
    }
    let reason: Vec<&str> = words
        .skip_while(|w| matches!(*w, "-" | "--" | ":" | "because"))
        .collect();
    if reason.is_empty() {
        return Err(format!("the suppression of {id} gives no reason"));
    }
    Ok(id.to_owned())
}
