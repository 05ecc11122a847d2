//! The one way this crate runs a subprocess: fixed working directory, controlled environment, server user when root, stderr captured into errors.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use crate::os::{self, RunAs};
use crate::Error;

/// Variables a tool may inherit; everything else (notably every `PG*` variable) is dropped.
const INHERITED: &[&str] = &["PATH", "TZ", "TMPDIR", "LD_LIBRARY_PATH"];

/// How many lines of a streamed tool's stderr are kept for its error.
const KEPT_LINES: usize = 200;

/// How many characters of a failed tool's stderr go into an error.
const TAIL_CHARS: usize = 2000;

/// A subprocess being prepared: built with [`Tool::new`], finished with [`Tool::run`] or [`Tool::spawn_piped`].
pub(crate) struct Tool {
    name: String,
    program: PathBuf,
    command: Command,
}

impl Tool {
    /// Prepares `program`, called `name` in errors, to run in `cwd`.
    ///
    /// The environment is cleared except for [`INHERITED`], `LC_ALL=C` and `LANG=C`
    /// are set, and when this process is root the tool runs as the server user
    /// (supplementary groups are dropped by the standard library).
    pub(crate) fn new(name: &str, program: &Path, cwd: &Path) -> Result<Tool, Error> {
        let mut tool = Tool::client(name, program, cwd);
        if let RunAs::User { uid, gid, .. } = os::run_as()? {
            tool.command.uid(uid).gid(gid);
        }
        Ok(tool)
    }

    /// Like [`Tool::new`], but runs as this process's own user: for client programs
    /// (psql, pg_restore) that may need to read the caller's files and never refuse root.
    pub(crate) fn client(name: &str, program: &Path, cwd: &Path) -> Tool {
        let mut command = Command::new(program);
        command.current_dir(cwd).env_clear();
        for key in INHERITED {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        if std::env::var_os("PATH").is_none() {
            command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
        }
        command.env("LC_ALL", "C").env("LANG", "C");
        Tool {
            name: name.to_owned(),
            program: program.to_path_buf(),
            command,
        }
    }

    /// Adds one argument. Never pass a secret here: argv is visible to every user.
    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Tool {
        self.command.arg(arg);
        self
    }

    /// Adds arguments. Never pass a secret here.
    pub(crate) fn args<I, S>(mut self, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Sets one environment variable (the place for a password, e.g. `PGPASSWORD`).
    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Tool {
        self.command.env(key, value);
        self
    }

    /// Runs to completion with stdin closed; returns stdout, or an error naming the tool, its status and its stderr tail.
    pub(crate) fn run(mut self) -> Result<String, Error> {
        self.command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = self.command.output().map_err(|source| Error::Spawn {
            tool: self.name.clone(),
            path: self.program.clone(),
            source,
        })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
            if text.trim().is_empty() {
                text = String::from_utf8_lossy(&output.stdout).into_owned();
            }
            Err(self.failure(output.status, &text))
        }
    }

    /// Runs to completion, writing everything `input` yields to its stdin (closed at once when
    /// `None`) and handing each line of its stderr to `on_line` as it comes, on this thread.
    /// Stdout is discarded; `on_written` is called after each block written to stdin.
    /// Returns an error naming the tool with the tail of its stderr.
    pub(crate) fn run_streaming(
        mut self,
        input: Option<&mut dyn Read>,
        on_line: &mut dyn FnMut(&str),
        on_written: &mut dyn FnMut(),
    ) -> Result<(), Error> {
        self.command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = self.command.spawn().map_err(|source| Error::Spawn {
            tool: self.name.clone(),
            path: self.program.clone(),
            source,
        })?;
        let stderr = child.stderr.take();
        let (sender, lines) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut kept: VecDeque<String> = VecDeque::new();
        let mut handle = |line: String, kept: &mut VecDeque<String>| {
            on_line(&line);
            kept.push_back(line);
            if kept.len() > KEPT_LINES {
                kept.pop_front();
            }
        };
        let mut write_error = None;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                let read = match input.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(e) => {
                        write_error = Some(e);
                        break;
                    }
                };
                // A tool that stopped reading has failed; its stderr says why.
                if stdin.write_all(&buffer[..read]).is_err() {
                    break;
                }
                on_written();
                while let Ok(line) = lines.try_recv() {
                    handle(line, &mut kept);
                }
            }
        }
        for line in lines {
            handle(line, &mut kept);
        }
        let _ = reader.join();
        let status = child.wait().map_err(|source| Error::Spawn {
            tool: self.name.clone(),
            path: self.program.clone(),
            source,
        })?;
        let text = Vec::from(kept).join("\n");
        if let Some(error) = write_error {
            let _ = child.kill();
            return Err(Error::Tool {
                tool: self.name.clone(),
                status: "input not read".to_owned(),
                stderr: format!("reading its input failed: {error}"),
            });
        }
        if status.success() {
            Ok(())
        } else {
            Err(self.failure(status, &text))
        }
    }

    /// Starts the tool with a pipe on stdin and no output, in its own process group
    /// (so a terminal's Ctrl-C does not reach it), and returns without waiting.
    pub(crate) fn spawn_piped(mut self) -> Result<Child, Error> {
        self.command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        self.command.spawn().map_err(|source| Error::Spawn {
            tool: self.name.clone(),
            path: self.program.clone(),
            source,
        })
    }

    /// The error for a failed run, with `text` (stderr, perhaps plus a log) cut to its tail.
    pub(crate) fn failure(&self, status: ExitStatus, text: &str) -> Error {
        failure(&self.name, status, text)
    }
}

/// Builds the error for a tool that exited with `status`, keeping the tail of `text`.
pub(crate) fn failure(name: &str, status: ExitStatus, text: &str) -> Error {
    let status = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    };
    Error::Tool {
        tool: name.to_owned(),
        status,
        stderr: tail(text, TAIL_CHARS),
    }
}

/// The last `max` characters of `text`, trimmed, starting at a line boundary when possible.
pub(crate) fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let start = text
        .char_indices()
        .nth(count - max)
        .map_or(0, |(index, _)| index);
    let cut = &text[start..];
    match cut.find('\n') {
        Some(newline) if newline + 1 < cut.len() => format!("...{}", &cut[newline..]),
        _ => format!("...{cut}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_short_text_and_cuts_long_text_at_a_line() {
        assert_eq!(tail("  one\n", 10), "one");
        assert_eq!(tail("aaaa\nbbbb\ncccc", 7), "...\ncccc");
    }
}
