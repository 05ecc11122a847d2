//! Branch conflicts the folder alone cannot show: a branch that adds a migration version at or
//! below the head of the main branch (two branches both added V5; the second to merge must
//! renumber). Compares the files the branch added since `git merge-base` with main's tree.

use std::path::Path;
use std::process::Command;

use crate::Error;

/// What the check compared and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BranchCheck {
    /// The main branch's ref that was found (`origin/main`, else `main`); `None` skips the check.
    pub main_ref: Option<String>,
    /// The highest version in the main branch's `migrations/`.
    pub main_head: Option<u64>,
    /// Up files this branch added since the merge base (committed or not).
    pub added: Vec<String>,
    /// One sentence per added file that must be renumbered, with the `git mv` to run.
    pub problems: Vec<String>,
}

fn git(root: &Path, args: &[&str]) -> Result<Option<String>, Error> {
    let output = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .map_err(|e| Error::new(format!("cannot run git: {e}")))?;
    Ok(output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned()))
}

fn version_of(file: &str) -> Option<u64> {
    let name = file.rsplit('/').next()?;
    if name.ends_with(".down.sql") || !name.ends_with(".sql") {
        return None;
    }
    name.strip_prefix('V')?.split_once("__")?.0.parse().ok()
}

/// Checks the repository at `root` (a git work tree). Without a main branch to compare with (a
/// tarball, a clone of one branch) it returns a check with no `main_ref` and no problems.
pub fn check_branch_versions(root: &Path) -> Result<BranchCheck, Error> {
    let mut check = BranchCheck::default();
    if git(root, &["rev-parse", "--is-inside-work-tree"])?.is_none() {
        return Ok(check);
    }
    let Some(main) = ["origin/main", "main"].into_iter().find(|r| {
        git(
            root,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{r}^{{commit}}"),
            ],
        )
        .ok()
        .flatten()
        .is_some()
    }) else {
        return Ok(check);
    };
    check.main_ref = Some(main.to_owned());
    let base = git(root, &["merge-base", "HEAD", main])?
        .ok_or_else(|| Error::new(format!("git merge-base HEAD {main} failed")))?;
    let base = base.trim();
    let tree = git(root, &["ls-tree", "--name-only", main, "migrations/"])?.unwrap_or_default();
    check.main_head = tree.lines().filter_map(version_of).max();
    let committed = git(
        root,
        &[
            "diff",
            "--name-only",
            "--diff-filter=A",
            base,
            "--",
            "migrations/",
        ],
    )?
    .unwrap_or_default();
    let untracked = git(
        root,
        &["ls-files", "--others", "--exclude-standard", "migrations/"],
    )?
    .unwrap_or_default();
    let mut added: Vec<String> = committed
        .lines()
        .chain(untracked.lines())
        .filter(|f| version_of(f).is_some())
        .map(str::to_owned)
        .collect();
    added.sort();
    added.dedup();
    let head = check.main_head.unwrap_or(0);
    let mut next = head + 1;
    for file in &added {
        let version = version_of(file).unwrap_or(0);
        if version <= head {
            let name = file.rsplit('/').next().unwrap_or(file);
            let rest = name
                .trim_end_matches(".sql")
                .split_once("__")
                .map_or("", |(_, r)| r);
            check.problems.push(format!(
                "{file} adds version {version}, at or below V{head}, the head of {main}: another branch took it first; renumber this migration to the next free version: `git mv migrations/{name} migrations/V{next}__{rest}.sql` and the same for its .down.sql"
            ));
            next += 1;
        }
    }
    check.added = added;
    Ok(check)
}
