//! Runs the loader inside figment's `Jail`: a private working directory with
//! an `environments/` folder and a cleared, controlled set of variables.

use std::{fs, os::unix::fs::PermissionsExt, path::PathBuf};

use ecomind_config::{Error, Explanation, Flags, LoadOptions, Settings};
use figment::Jail;

/// One environment to load: the `qa` environment file, variables, flags and
/// extra files (path relative to the jail, contents, mode).
#[derive(Default, Clone)]
pub struct Setup<'a> {
    pub env: &'a str,
    pub file: Option<String>,
    pub extra_envs: Vec<(&'a str, &'a str)>,
    pub vars: Vec<(&'a str, String)>,
    pub flags: Flags,
    pub files: Vec<(&'a str, &'a str, u32)>,
}

impl<'a> Setup<'a> {
    pub fn file(body: &'a str) -> Setup<'a> {
        Setup {
            env: "qa",
            file: Some(body.to_owned()),
            ..Setup::default()
        }
    }

    pub fn var(mut self, name: &'a str, value: impl Into<String>) -> Setup<'a> {
        self.vars.push((name, value.into()));
        self
    }

    pub fn secret_file(mut self, path: &'a str, contents: &'a str, mode: u32) -> Setup<'a> {
        self.files.push((path, contents, mode));
        self
    }
}

/// What a load produced, rendered while still inside the jail.
pub struct Outcome {
    pub load: Result<Settings, Error>,
    pub explain: Result<Explanation, Error>,
    /// The jail's folder (gone by now), to recognise paths in messages.
    pub dir: PathBuf,
}

pub fn run(setup: &Setup<'_>) -> Outcome {
    let mut outcome = None;
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_dir("environments")?;
        if let Some(body) = &setup.file {
            jail.create_file(
                format!(
                    "environments/{}.toml",
                    if setup.env.is_empty() {
                        "qa"
                    } else {
                        setup.env
                    }
                ),
                body,
            )?;
        }
        for (name, body) in &setup.extra_envs {
            jail.create_file(format!("environments/{name}.toml"), body)?;
        }
        for (path, contents, mode) in &setup.files {
            let full = jail.directory().join(path);
            if let Some(parent) = full.parent() {
                fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            fs::write(&full, contents).map_err(|e| e.to_string())?;
            fs::set_permissions(&full, fs::Permissions::from_mode(*mode))
                .map_err(|e| e.to_string())?;
        }
        for (name, value) in &setup.vars {
            jail.set_env(name, value);
        }
        let env = if setup.env.is_empty() {
            "qa"
        } else {
            setup.env
        };
        let opts = LoadOptions {
            env,
            environments_dir: None,
            flags: &setup.flags,
        };
        outcome = Some(Outcome {
            load: ecomind_config::load(&opts),
            explain: ecomind_config::explain(&opts),
            dir: jail.directory().to_owned(),
        });
        Ok(())
    });
    outcome.expect("the jail ran")
}
