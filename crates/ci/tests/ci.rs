//! Checks of the pipeline's own files as ordinary tests: the matrix, the workflow that runs it,
//! the deploy recipes and the Dockerfile, and the branch-versions check on a scratch repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use ecomind_ci::{check_branch_versions, Matrix, Source, Step};
use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml(path: &str) -> Value {
    let path = root().join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

fn text(value: &Value, path: &str) -> String {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {:?}", at(value, path)))
        .to_owned()
}

#[test]
fn the_matrix_is_every_environment_by_every_major_13_to_18() {
    let matrix = Matrix::load(&root()).expect("ci/matrix.toml");
    assert_eq!(matrix.environments, ["dev", "prod", "staging"]);
    let majors: Vec<u32> = matrix.majors.iter().map(|m| m.major).collect();
    assert_eq!(majors, [13, 14, 15, 16, 17, 18]);
    assert_eq!(
        matrix.majors.iter().find(|m| m.major == 15).unwrap().source,
        Source::Debian
    );
    assert_eq!(matrix.cells(None, None).unwrap().len(), 18);
    assert_eq!(
        matrix.steps,
        [
            Step::ConfigCheck,
            Step::Migrate,
            Step::RoundTrip,
            Step::Baseline,
            Step::Verify,
            Step::Lint,
            Step::DryRun
        ]
    );
    assert_eq!(matrix.cells(Some(17), None).unwrap().len(), 3);
    assert_eq!(matrix.cells(Some(17), Some("prod")).unwrap().len(), 1);
    assert_eq!(
        matrix.cells(Some(12), None).unwrap_err().to_string(),
        "PostgreSQL 12 is not in the matrix; it has 13, 14, 15, 16, 17, 18"
    );
    assert_eq!(
        matrix.cells(None, Some("qa")).unwrap_err().to_string(),
        "environment `qa` is not in the matrix; it has dev, prod, staging"
    );
}

#[test]
fn the_workflow_runs_the_same_cells_as_the_matrix() {
    let matrix = Matrix::load(&root()).expect("ci/matrix.toml");
    let workflow = yaml(".github/workflows/migrations.yml");
    let cells = at(&workflow, "jobs.cells.strategy.matrix");
    let pg: Vec<u64> = cells["pg"]
        .as_sequence()
        .expect("pg list")
        .iter()
        .map(|v| v.as_u64().expect("a major"))
        .collect();
    let envs: Vec<&str> = cells["env"]
        .as_sequence()
        .expect("env list")
        .iter()
        .map(|v| v.as_str().expect("an environment"))
        .collect();
    let majors: Vec<u64> = matrix.majors.iter().map(|m| u64::from(m.major)).collect();
    assert_eq!(pg, majors, "the workflow's pg list is not ci/matrix.toml's");
    assert_eq!(
        envs, matrix.environments,
        "the workflow's env list is not environments/"
    );
    let steps = at(&workflow, "jobs.cells.steps");
    let run: Vec<String> = steps
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect();
    assert!(
        run.iter()
            .any(|r| r == "cargo xtask ci --pg ${{ matrix.pg }} --env ${{ matrix.env }}"),
        "{run:?}"
    );
    // The dry-run step dumps its snapshot with pg_dump and restores it with pg_restore.
    assert!(
        run.iter().any(|r| r.contains(" postgresql-client-15")),
        "{run:?}"
    );
    let uses: Vec<&str> = steps
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["uses"].as_str())
        .collect();
    assert_eq!(
        uses.iter()
            .filter(|u| u.starts_with("actions/cache@"))
            .count(),
        2,
        "the cells cache the PostgreSQL binaries and cargo's build"
    );
}

#[test]
fn the_kubernetes_job_reads_the_password_from_a_0400_secret_volume_as_non_root() {
    for (path, job) in [
        (
            "deploy/kubernetes/migrate-job.yaml",
            yaml("deploy/kubernetes/migrate-job.yaml"),
        ),
        (
            "deploy/helm/ecomind-db-migrate/templates/migrate-hook.yaml",
            yaml("deploy/helm/ecomind-db-migrate/templates/migrate-hook.yaml"),
        ),
    ] {
        assert_eq!(text(&job, "kind"), "Job", "{path}");
        assert_eq!(at(&job, "spec.backoffLimit").as_u64(), Some(0), "{path}");
        let pod = at(&job, "spec.template.spec");
        assert_eq!(text(pod, "restartPolicy"), "Never", "{path}");
        let volumes = pod["volumes"].as_sequence().unwrap();
        let secret = volumes
            .iter()
            .find(|v| v["secret"].is_mapping())
            .unwrap_or_else(|| panic!("{path}: no Secret volume"));
        assert_eq!(
            at(secret, "secret.defaultMode").as_u64(),
            Some(0o400),
            "{path}"
        );
        let main = at(pod, "containers.0");
        assert_eq!(
            at(main, "securityContext.runAsNonRoot").as_bool(),
            Some(true)
        );
        assert_eq!(at(main, "securityContext.runAsUser").as_u64(), Some(65532));
        let args: Vec<&str> = main["args"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args[..2], ["migrate", "--env"], "{path}");
        // The init container hands the file to the image's user with mode 0400.
        let init = text(pod, "initContainers.0.command.2");
        assert!(
            init.contains("-m 0400 -o 65532") && init.ends_with("/run/secrets/ecomind_db_password"),
            "{path}: {init}"
        );
    }
    let hook = yaml("deploy/helm/ecomind-db-migrate/templates/migrate-hook.yaml");
    let annotations = at(&hook, "metadata.annotations");
    assert_eq!(
        annotations["helm.sh/hook"].as_str(),
        Some("pre-install,pre-upgrade")
    );
    let chart = yaml("deploy/helm/ecomind-db-migrate/Chart.yaml");
    assert_eq!(text(&chart, "apiVersion"), "v2");
    yaml("deploy/helm/ecomind-db-migrate/values.yaml");
}

#[test]
fn the_ecs_task_definition_runs_migrate_with_the_password_from_secrets() {
    let path = root().join("deploy/ecs/migrate-task-definition.json");
    let task: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
    let container = &task["containerDefinitions"][0];
    assert_eq!(container["command"][0], "migrate");
    assert_eq!(container["user"], "65532:65532");
    assert_eq!(container["secrets"][0]["name"], "ECOMIND_DB_PASSWORD");
    let environment = container["environment"].as_array().unwrap();
    assert!(
        environment
            .iter()
            .all(|e| !e["name"].as_str().unwrap().contains("PASSWORD")),
        "a password in plain environment variables"
    );
}

#[test]
fn the_compose_api_waits_for_a_successful_migration() {
    let compose = yaml("deploy/compose/docker-compose.yml");
    assert_eq!(
        text(&compose, "services.api.depends_on.migrate.condition"),
        "service_completed_successfully"
    );
    assert_eq!(text(&compose, "services.migrate.command.0"), "migrate");
    assert_eq!(
        text(&compose, "services.migrate.depends_on.db.condition"),
        "service_healthy"
    );
    assert!(at(&compose, "secrets.ecomind_db_password.file").is_string());
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_the_binary_alone_as_non_root() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: build, then run");
    assert!(froms[0].ends_with(" AS build"), "{}", froms[0]);
    let run_stage = &text[text.rfind("\nFROM ").unwrap()..];
    let copies: Vec<&str> = run_stage
        .lines()
        .filter(|l| l.starts_with("COPY "))
        .collect();
    assert_eq!(
        copies,
        ["COPY --from=build /out/ecomind-db /usr/local/bin/ecomind-db"]
    );
    assert!(run_stage.contains("\nUSER 65532:65532\n"));
    assert!(run_stage.contains("\nENTRYPOINT [\"ecomind-db\"]\n"));
}

/// A scratch repository: main with V1..V4, a branch that adds files.
struct Repo(tempfile::TempDir);

impl Repo {
    fn new() -> Repo {
        let repo = Repo(tempfile::tempdir().unwrap());
        repo.git(&["init", "--quiet", "--initial-branch=main"]);
        for v in 1..=4 {
            repo.write(&format!("V{v}__m{v}.sql"));
            repo.write(&format!("V{v}__m{v}.down.sql"));
        }
        repo.git(&["add", "."]);
        repo.git(&["commit", "--quiet", "-m", "V1..V4"]);
        repo
    }

    fn write(&self, name: &str) {
        let dir = self.0.path().join("migrations");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), "SELECT 1;\n").unwrap();
    }

    fn git(&self, args: &[&str]) {
        let status = Command::new("git")
            .args(["-c", "user.name=ci", "-c", "user.email=ci@localhost"])
            .args(args)
            .current_dir(self.0.path())
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }
}

#[test]
fn a_branch_may_add_only_versions_above_the_head_of_main() {
    let repo = Repo::new();
    repo.git(&["checkout", "--quiet", "-b", "feature"]);
    repo.write("V5__sessions.sql");
    repo.write("V5__sessions.down.sql");
    repo.git(&["add", "."]);
    repo.git(&["commit", "--quiet", "-m", "V5 on the branch"]);
    let check = check_branch_versions(repo.0.path()).unwrap();
    assert_eq!(check.main_ref.as_deref(), Some("main"));
    assert_eq!(check.main_head, Some(4));
    assert_eq!(check.added, ["migrations/V5__sessions.sql"]);
    assert!(check.problems.is_empty(), "{:?}", check.problems);

    // Meanwhile another branch's V5 lands on main: this branch's V5 must move.
    repo.git(&["checkout", "--quiet", "main"]);
    repo.write("V5__webhooks.sql");
    repo.write("V5__webhooks.down.sql");
    repo.git(&["add", "."]);
    repo.git(&["commit", "--quiet", "-m", "V5 on main"]);
    repo.git(&["checkout", "--quiet", "feature"]);
    // An uncommitted file counts too.
    repo.write("V3__late.sql");
    let check = check_branch_versions(repo.0.path()).unwrap();
    assert_eq!(check.main_head, Some(5));
    assert_eq!(
        check.problems,
        [
            "migrations/V3__late.sql adds version 3, at or below V5, the head of main: another branch took it first; renumber this migration to the next free version: `git mv migrations/V3__late.sql migrations/V6__late.sql` and the same for its .down.sql",
            "migrations/V5__sessions.sql adds version 5, at or below V5, the head of main: another branch took it first; renumber this migration to the next free version: `git mv migrations/V5__sessions.sql migrations/V7__sessions.sql` and the same for its .down.sql",
        ]
    );
}

#[test]
fn without_a_main_branch_the_check_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let check = check_branch_versions(dir.path()).unwrap();
    assert_eq!(check.main_ref, None);
    assert!(check.problems.is_empty());
}

/// A copy of the repository's environments, migrations and matrix in a scratch root.
fn scratch_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["environments", "migrations", "ci"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
        for entry in std::fs::read_dir(root().join(folder)).unwrap() {
            let entry = entry.unwrap();
            if entry.path().is_file() {
                std::fs::copy(
                    entry.path(),
                    dir.path().join(folder).join(entry.file_name()),
                )
                .unwrap();
            }
        }
    }
    dir
}

#[test]
fn the_round_trip_step_passes_on_our_migrations_and_names_a_down_that_is_not_the_inverse() {
    use ecomind_ci::{run_major, CellSetup, Step};
    let binaries = ecomind_snapshot::Binaries::locate(
        std::env::var_os("ECOMIND_DB_BIN_DIR")
            .as_deref()
            .map(Path::new),
    )
    .expect("PostgreSQL server binaries");
    let good = scratch_root();
    let bad = scratch_root();
    std::fs::write(
        bad.path().join("migrations/V3__user_credentials.down.sql"),
        "ALTER TABLE users DROP COLUMN locked_until, DROP COLUMN password_hash;\n",
    )
    .unwrap();
    let mut failures = Vec::new();
    for root in [good.path(), bad.path()] {
        let setup = CellSetup {
            root,
            // Not run: the round trip goes through the engine, not the binary.
            cli: Path::new("/nonexistent/ecomind-db"),
            bin_dir: binaries.dir(),
            steps: &[Step::RoundTrip],
        };
        let reports = run_major(&setup, &["prod".to_owned()], &mut |_| {}).unwrap();
        failures.push(reports[0].steps[0].failure.clone());
    }
    assert_eq!(failures[0], None);
    let failure = failures[1].clone().expect("the broken down is found");
    assert!(
        failure.starts_with("V3's down does not restore the schema before its up:")
            && failure.contains("failed_login_count"),
        "{failure}"
    );
}
