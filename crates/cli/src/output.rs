//! Where output goes: the result on stdout (text or one JSON document), progress and errors on stderr.

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// How this run prints.
pub struct Output {
    json: bool,
}

impl Output {
    /// `json`: one JSON document on stdout instead of text.
    pub fn new(json: bool) -> Output {
        Output { json }
    }

    /// Prints the result: `text` for people, `value` under `--json`. A closed pipe is not an error.
    pub fn result(&self, text: &str, value: &impl Serialize) {
        let mut stdout = std::io::stdout().lock();
        let _ = if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(doc) => writeln!(stdout, "{doc}"),
                Err(e) => writeln!(stdout, "{{\"error\": {:?}}}", e.to_string()),
            }
        } else if text.is_empty() {
            Ok(())
        } else {
            writeln!(stdout, "{}", text.trim_end())
        };
        let _ = stdout.flush();
    }

    /// A line of progress or log on stderr.
    pub fn log(&self, line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    /// True when stderr is a terminal, so progress bars can be drawn.
    pub fn stderr_is_terminal(&self) -> bool {
        std::io::stderr().is_terminal()
    }

    /// Reports an error once, on stderr with its whole chain, and as JSON on stdout under `--json`.
    /// `done` is what the command completed before it failed (migrations applied or reverted),
    /// added to the JSON document so a pipeline sees it too.
    pub fn error(&self, error: &anyhow::Error, code: u8, done: Option<(&str, serde_json::Value)>) {
        let _ = writeln!(std::io::stderr().lock(), "error: {error:#}");
        if self.json {
            let mut doc = serde_json::json!({ "error": format!("{error:#}"), "exit_code": code });
            if let (Some((key, value)), Some(map)) = (done, doc.as_object_mut()) {
                map.insert(key.to_owned(), value);
            }
            self.result("", &doc);
        }
    }
}
