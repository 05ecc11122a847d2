//! Paths that must not outlive this process: removed when the value is dropped, and also when
//! the process dies without dropping it (SIGTERM, SIGKILL, a panic that aborts).

use std::io::Write as _;
use std::path::Path;
use std::process::Child;

use crate::process::Tool;
use crate::Error;

/// The guard: reads paths, one a line, until its stdin reaches end of file, then removes them.
/// It runs in its own process group so a terminal's Ctrl-C does not end it first.
const GUARD_SCRIPT: &str = r#"trap '' HUP INT TERM PIPE
while IFS= read -r path; do set -- "$@" "$path"; done
for path in "$@"; do rm -rf -- "$path"; done
"#;

/// A small `sh` process, running as this process's user, that removes the paths it was given
/// once this value is dropped or this process dies. A path that no longer exists by then (it
/// was renamed into place) is fine.
#[derive(Debug)]
pub(crate) struct Leftovers {
    guard: Child,
}

impl Leftovers {
    /// Starts the guard.
    pub(crate) fn start() -> Result<Leftovers, Error> {
        let guard = Tool::client("cleanup guard", Path::new("/bin/sh"), Path::new("/"))
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("ecomind-cleanup-guard")
            .spawn_piped()?;
        Ok(Leftovers { guard })
    }

    /// Adds a path to remove at the end. Paths with a line break are refused.
    pub(crate) fn add(&mut self, path: &Path) -> Result<(), Error> {
        let text = path.to_string_lossy();
        if text.contains('\n') {
            return Err(Error::Reaper {
                reason: format!("a path with a line break cannot be guarded: {text:?}"),
            });
        }
        let stdin = self.guard.stdin.as_mut().ok_or_else(|| Error::Reaper {
            reason: "the cleanup guard has already finished".to_owned(),
        })?;
        writeln!(stdin, "{text}")
            .and_then(|()| stdin.flush())
            .map_err(|e| Error::Reaper {
                reason: format!("the cleanup guard does not listen: {e}"),
            })
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        drop(self.guard.stdin.take());
        let _ = self.guard.wait();
    }
}
