//! The command line as the user typed it (clap); `commands` resolves it into library options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ecomind_config::SslMode;

/// The exit codes, as a literal so that each command's help can append its examples.
macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0  success
  1  error
  2  usage error
  3  status --check: migrations are pending
  4  drift, divergence, or a failed migration that needs repair
  130, 143  migrate or rollback interrupted by SIGINT (Ctrl-C) or SIGTERM: the running
       migration was cancelled and rolled back, the lock released"
    };
}

/// A command's help epilogue: the exit codes, then two or three examples.
macro_rules! examples {
    ($($line:literal),+ $(,)?) => {
        concat!(exit_codes!(), "\n\nExamples:", $("\n  ", $line),+)
    };
}

const EXIT_CODES: &str = exit_codes!();

const DRY_RUN_HELP: &str = "\
The environment supplies only its policy (lock_wait, lock_timeout, statement_timeout): a dry run
never reads its credentials or connects to its server. Restored clusters are cached as templates
in $XDG_CACHE_HOME/ecomind-db (else ~/.cache/ecomind-db); the cache holds production data.

Exit codes:
  0  pass
  1  error, or a migration failed
  2  usage error
  4  possible data loss not declared with `-- ecomind:destructive`, a failed rollback rehearsal,
     drift after the run, or divergence between the snapshot's history and the files

Examples:
  ecomind-db dry-run --env prod --snapshot prod-2026-11-20.dump --report dry-run.md
  ecomind-db dry-run --env prod --snapshot prod.sql.gz --no-rollback --json
  ecomind-db dry-run --prune-cache";

/// Versioned, locked, audited PostgreSQL migrations for EcoMind.
#[derive(Debug, Parser)]
#[command(name = "ecomind-db", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, each in one transaction with its history row, under a lock.
    #[command(after_help = examples!("ecomind-db migrate --env dev", "ecomind-db migrate --env prod --sql > release.sql   # for approval; changes nothing", "ecomind-db migrate --env prod --to 4"))]
    Migrate(MigrateArgs),
    /// Revert applied migrations with their down files, newest first (needs --to or --steps).
    #[command(after_help = examples!("ecomind-db rollback --env dev --steps 1", "ecomind-db rollback --env staging --to 3 --confirm staging"))]
    Rollback(RollbackArgs),
    /// Compare the live schema with the schema the applied migrations produce; exit 4 on drift.
    #[command(after_help = examples!("ecomind-db verify --env staging", "ecomind-db verify --env prod --json"))]
    Verify(VerifyArgs),
    /// Bring a hand-made database under management: record V1..V as applied, only if its schema matches exactly.
    #[command(after_help = examples!("ecomind-db baseline --env prod --confirm prod", "ecomind-db baseline --env staging --version 2 --confirm staging"))]
    Baseline(BaselineArgs),
    /// Drop invalid indexes left by an interrupted CREATE INDEX CONCURRENTLY, or accept an edited file's checksum.
    #[command(after_help = examples!("ecomind-db repair --env prod --confirm prod", "ecomind-db repair --env staging --accept-checksum 3 --confirm staging"))]
    Repair(RepairArgs),
    /// Show applied and pending migrations, divergence and half-done migrations.
    #[command(after_help = examples!("ecomind-db status --env prod", "ecomind-db status --env prod --check   # API start-up gate: 0 current, 3 pending, 4 attention"))]
    Status(StatusArgs),
    /// Wait until the database server accepts connections.
    #[command(after_help = examples!("ecomind-db wait --env prod", "ecomind-db wait --env dev --timeout 10"))]
    Wait(WaitArgs),
    /// Show or check environment settings, without connecting.
    #[command(after_help = examples!("ecomind-db config show --env prod", "ecomind-db config check --all"))]
    Config(ConfigArgs),
    /// Restore a pg_dump snapshot into a throwaway cluster and rehearse the pending migrations on it: timings, locks, row counts, rollback; exit 4 on possible data loss or a failed rollback.
    #[command(name = "dry-run", after_help = DRY_RUN_HELP)]
    DryRun(DryRunArgs),
    /// Manage the local dev cluster the tool runs for `--env dev`.
    #[command(name = "dev-db", after_help = examples!("ecomind-db dev-db start", "ecomind-db dev-db destroy"))]
    DevDb(DevDbArgs),
    /// Write the next migration pair, V<n>__NAME.sql and its .down.sql, from the template.
    #[command(after_help = examples!(
        "ecomind-db new add_api_key_scopes",
        "cargo xtask new backfill_user_roles",
        "ecomind-db new drop_legacy_events --migrations db/migrations"
    ))]
    New(NewArgs),
    /// Check every migration (up and down) for locks, rewrites, breaking changes and parse errors.
    #[command(after_help = examples!(
        "ecomind-db lint",
        "ecomind-db lint --migrations db/migrations --json",
        "ecomind-db lint --format github   # annotations in a GitHub Actions run"
    ))]
    Lint(LintArgs),
    /// Print a shell completion script for bash, zsh or fish.
    #[command(after_help = examples!(
        "ecomind-db completions bash > /etc/bash_completion.d/ecomind-db",
        "ecomind-db completions zsh > \"${fpath[1]}/_ecomind-db\"",
        "ecomind-db completions fish > ~/.config/fish/completions/ecomind-db.fish"
    ))]
    Completions(CompletionsArgs),
}

/// Which environment and how to reach its database.
#[derive(Debug, Args)]
pub struct Target {
    /// The environment: dev, staging, prod, or another file in environments/.
    #[arg(long, short = 'e', env = "ECOMIND_DB_ENV")]
    pub env: String,

    /// Folder with the environment files (default: $ECOMIND_DB_ENVIRONMENTS, else ./environments searched upward, else the copies built into the binary).
    #[arg(long, value_name = "DIR")]
    pub environments: Option<PathBuf>,

    /// Database host name or unix socket folder (overrides the environment).
    #[arg(long, help_heading = "Connection")]
    pub host: Option<String>,

    /// Database port.
    #[arg(long, help_heading = "Connection", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Database name.
    #[arg(long, help_heading = "Connection")]
    pub dbname: Option<String>,

    /// Database user.
    #[arg(long, help_heading = "Connection")]
    pub user: Option<String>,

    /// File holding the password (mode 0600); passwords are never taken on the command line.
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    pub password_file: Option<PathBuf>,

    /// TLS: disable, prefer, require, verify-ca or verify-full.
    #[arg(long, value_name = "MODE", help_heading = "Connection", value_parser = parse_sslmode)]
    pub sslmode: Option<SslMode>,
}

fn parse_sslmode(text: &str) -> Result<SslMode, String> {
    text.parse::<SslMode>().map_err(|e| e.to_string())
}

/// `config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do with the settings.
    #[command(subcommand)]
    pub action: ConfigAction,
}

/// `config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print every resolved value of an environment and where it came from (secrets as [redacted]).
    Show(Target),
    /// Validate environment files without connecting or reading secrets: unknown keys, types, ports, literal passwords.
    Check(ConfigCheckArgs),
}

/// `config check`.
#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// The environment to check.
    #[arg(
        long,
        short = 'e',
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub env: Option<String>,

    /// Check every environment file.
    #[arg(long)]
    pub all: bool,

    /// Folder with the environment files (default: $ECOMIND_DB_ENVIRONMENTS, else ./environments searched upward, else the copies built into the binary).
    #[arg(long, value_name = "DIR")]
    pub environments: Option<PathBuf>,
}

/// Where migrations come from.
#[derive(Debug, Args)]
pub struct Source {
    /// Read migrations from this folder instead of the copies built into the binary.
    #[arg(long, value_name = "DIR", env = "ECOMIND_DB_MIGRATIONS")]
    pub migrations: Option<PathBuf>,
}

/// `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub source: Source,
    /// Stop after this version (it must exist; going down is `rollback`).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<i32>,
    /// Apply never-applied migrations older than the applied head instead of refusing.
    #[arg(long)]
    pub allow_out_of_order: bool,
    /// Print the SQL the run would send (session settings, statements, history and event-log
    /// writes, transaction boundaries) without taking the lock or changing anything.
    #[arg(long)]
    pub sql: bool,
}

/// `--confirm`: destructive commands accept it everywhere and need it where the policy says so.
#[derive(Debug, Args)]
pub struct Confirm {
    /// The environment's name, to confirm a destructive command (required where the environment's policy says so).
    #[arg(long, value_name = "ENV")]
    pub confirm: Option<String>,
}

/// `rollback`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how_far").required(true).args(["to", "steps"])))]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub confirm: Confirm,
    /// Revert every applied migration above this version (0 reverts them all).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<i32>,
    /// Revert this many of the newest applied migrations.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: Option<u32>,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub source: Source,
}

/// `baseline`.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub confirm: Confirm,
    /// Record migrations up to and including this version.
    #[arg(long, value_name = "VERSION", default_value_t = 1)]
    pub version: i32,
}

/// `repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub source: Source,
    #[command(flatten)]
    pub confirm: Confirm,
    /// Re-record the checksum of this applied version from its edited file (always needs --confirm).
    #[arg(long, value_name = "VERSION")]
    pub accept_checksum: Option<i32>,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    #[command(flatten)]
    pub source: Source,
    /// Exit 3 when migrations are pending and 4 when something needs repair (for start-up checks).
    #[arg(long)]
    pub check: bool,
}

/// `wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    pub target: Target,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
}

/// `dev-db`.
#[derive(Debug, Args)]
pub struct DevDbArgs {
    /// What to do with the local dev cluster.
    #[command(subcommand)]
    pub action: DevDbAction,
}

/// `dev-db` actions.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum DevDbAction {
    /// Start it (creating it on first use) and print how to connect.
    Start,
    /// Show where it lives and whether it runs.
    Status,
    /// Stop it; its data stays.
    Stop,
    /// Stop it and delete its data.
    Destroy,
}

/// `new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The migration's name in snake_case, such as add_api_key_scopes.
    pub name: String,
    /// The version (default: one above the highest in the folder); it must be new and above the others.
    #[arg(long, value_name = "VERSION")]
    pub version: Option<i32>,
    /// The migrations folder (default: ./migrations, searched upward from here).
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
}

/// `lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// The migrations folder (default: ./migrations searched upward from here, else the copies built into the binary).
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
    /// How to print findings: text, or github (workflow annotations). --json prints one JSON document.
    #[arg(long, value_enum, default_value_t = LintFormat::Text)]
    pub format: LintFormat,
}

/// How `lint` prints its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LintFormat {
    /// One finding per paragraph: file:line, rule, why, and the safe pattern.
    Text,
    /// GitHub Actions workflow commands (`::error file=...,line=...`), shown on the pull request.
    Github,
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Shells we print completions for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// `dry-run`.
#[derive(Debug, Args)]
pub struct DryRunArgs {
    /// The environment whose policy applies (its credentials are never read).
    #[arg(
        long,
        short = 'e',
        env = "ECOMIND_DB_ENV",
        required_unless_present = "prune_cache"
    )]
    pub env: Option<String>,

    /// Folder with the environment files (default: $ECOMIND_DB_ENVIRONMENTS, else ./environments searched upward, else the copies built into the binary).
    #[arg(long, value_name = "DIR")]
    pub environments: Option<PathBuf>,

    /// The pg_dump output to restore: custom (-Fc), directory (-Fd), tar (-Ft) or plain SQL, optionally gzipped.
    #[arg(long, value_name = "FILE", required_unless_present = "prune_cache")]
    pub snapshot: Option<PathBuf>,

    /// Where the migrations come from.
    #[command(flatten)]
    pub source: Source,

    /// Skip the rollback rehearsal (downs back to the snapshot's version, then up again).
    #[arg(long)]
    pub no_rollback: bool,

    /// Restore from the dump without the template cache, and keep nothing.
    #[arg(long)]
    pub no_cache: bool,

    /// Remove every cached template, and do nothing else.
    #[arg(long, conflicts_with_all = ["snapshot", "no_cache", "no_rollback", "report", "baseline", "pg_major"])]
    pub prune_cache: bool,

    /// How many templates the cache keeps (the least recently used go first).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub keep_templates: u16,

    /// For a snapshot without migration history: rehearse `baseline --version V` (default 1) first.
    #[arg(long, value_name = "V", num_args = 0..=1, default_missing_value = "1")]
    pub baseline: Option<i32>,

    /// Also write the report as Markdown to this file, for a change request.
    #[arg(long, value_name = "FILE.md")]
    pub report: Option<PathBuf>,

    /// Run the sandbox on this installed PostgreSQL major instead of the dump's own, e.g. to rehearse on the major you are upgrading to (not older than the dump's).
    #[arg(long, value_name = "N")]
    pub pg_major: Option<u32>,
}
