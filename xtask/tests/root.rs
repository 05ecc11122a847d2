//! xtask finds its checkout at run time: an xtask binary built in one checkout, run from a
//! second `git worktree` (as cargo does with a shared `CARGO_TARGET_DIR`), works in the second.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A second worktree of this repository, removed (and unregistered) when dropped.
struct Worktree {
    dir: PathBuf,
    repo: PathBuf,
}

impl Worktree {
    fn add() -> Worktree {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives in the workspace root")
            .to_path_buf();
        let dir =
            std::env::temp_dir().join(format!("ecomind-xtask-worktree-{}", std::process::id()));
        let status = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["worktree", "add", "--detach", "--quiet"])
            .arg(&dir)
            .arg("HEAD")
            .status()
            .expect("git runs");
        assert!(status.success(), "git worktree add {}", dir.display());
        Worktree { dir, repo }
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        let _ = Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            .args(["worktree", "remove", "--force"])
            .arg(&self.dir)
            .status();
    }
}

/// Runs `xtask root` in `cwd`, with `CARGO_MANIFEST_DIR` as given (unset when `None`).
fn root_seen(cwd: &Path, manifest_dir: Option<&Path>) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("root")
        .current_dir(cwd)
        .env_remove("CARGO_MANIFEST_DIR");
    if let Some(dir) = manifest_dir {
        cmd.env("CARGO_MANIFEST_DIR", dir);
    }
    let output = cmd.output().expect("xtask runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

#[test]
fn an_xtask_built_in_one_checkout_works_in_the_checkout_it_runs_in() {
    let second = Worktree::add();
    let expected = second.dir.canonicalize().expect("worktree exists");
    // As `cargo xtask` runs it in the second worktree: cargo names that worktree's xtask/.
    assert_eq!(
        root_seen(&second.dir, Some(&second.dir.join("xtask"))),
        second.dir.display().to_string()
    );
    // Run directly from a subfolder of the second worktree: found by searching upward.
    let found = root_seen(&second.dir.join("crates/migrate"), None);
    assert_eq!(Path::new(&found).canonicalize().expect("exists"), expected);
}

#[test]
fn outside_a_checkout_xtask_says_where_to_run_it() {
    let cwd = std::env::temp_dir();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("root")
        .current_dir(&cwd)
        .env_remove("CARGO_MANIFEST_DIR")
        .output()
        .expect("xtask runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is not inside an ecomind-db checkout"),
        "{stderr}"
    );
}
