//! The repository's own environment files: valid, with the policies the
//! project promises, and also available from the copies embedded at build time.

use std::{path::PathBuf, time::Duration};

use ecomind_config::{
    check, known_environments, CheckScope, EnvironmentsLocation, Flags, LoadOptions, SslMode,
    Target,
};
use figment::Jail;

fn repository_environments() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../environments")
        .canonicalize()
        .expect("environments/ exists")
}

#[test]
fn every_repository_environment_file_passes_check() {
    let dir = repository_environments();
    let reports = check(CheckScope::All, Some(&dir)).expect("check runs");
    let names: Vec<&str> = reports.iter().map(|report| report.env.as_str()).collect();
    for required in ["dev", "prod", "staging"] {
        assert!(
            names.contains(&required),
            "{required} missing from {names:?}"
        );
    }
    for report in &reports {
        let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        assert!(report.ok(), "{}: {problems:?}", report.file);
    }
}

#[test]
fn check_collects_every_problem_of_a_file_and_names_unknown_environments() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.toml"), "[database]\nport = 5433\n").unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[database]\nprot = 1\nuser = 5\n[policy]\nlock_wiat = \"1s\"\nstatement_timeout = \"30d\"\n",
    )
    .unwrap();
    let reports = check(CheckScope::All, Some(dir.path())).expect("check runs");
    let summary: Vec<(String, Vec<String>)> = reports
        .iter()
        .map(|report| {
            (
                report.env.clone(),
                report.problems.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(summary.len(), 2);
    let (bad, good) = (&summary[0], &summary[1]);
    assert_eq!(good.0, "good");
    assert!(good.1.is_empty(), "{good:?}");
    assert_eq!(bad.0, "bad");
    assert_eq!(bad.1.len(), 4, "{bad:?}");
    assert!(
        bad.1[0].contains("unknown key `database.prot`; did you mean `database.port`?"),
        "{bad:?}"
    );
    assert!(
        bad.1[1].contains("`database.user` must be a string, found the integer 5"),
        "{bad:?}"
    );
    assert!(
        bad.1[2].contains("unknown key `policy.lock_wiat`; did you mean `policy.lock_wait`?"),
        "{bad:?}"
    );
    // PostgreSQL takes at most 2147483647 ms for a timeout: check says so without connecting.
    assert!(
        bad.1[3].contains("`policy.statement_timeout`: \"30d\": it is longer than the longest duration accepted, 2147483647ms"),
        "{bad:?}"
    );

    let err = check(CheckScope::One("goood"), Some(dir.path())).expect_err("unknown environment");
    assert!(
        err.to_string()
            .contains("unknown environment `goood`: known environments are bad, good"),
        "{err}"
    );
    assert!(err.to_string().contains("did you mean `good`?"), "{err}");
}

#[test]
fn the_repository_policies_are_what_the_project_promises() {
    let dir = repository_environments();
    let flags = Flags::default();
    let mut loaded = Vec::new();
    Jail::expect_with(|jail| {
        jail.clear_env();
        // Stands in for the mounted secret file that staging and prod name.
        jail.set_env("ECOMIND_DB_PASSWORD", "stand-in");
        for env in ["dev", "staging", "prod"] {
            let opts = LoadOptions {
                env,
                environments_dir: Some(&dir),
                flags: &flags,
            };
            loaded.push(ecomind_config::load(&opts).map_err(|e| e.to_string())?);
        }
        Ok(())
    });
    let [dev, staging, prod] = <[_; 3]>::try_from(loaded)
        .map_err(|_| "three environments")
        .unwrap();

    match &dev.target {
        Target::Managed { root, dbname } => {
            assert_eq!(root, &dir.parent().unwrap().join(".dev-db"));
            assert_eq!(dbname, "ecomind");
        }
        other => panic!("dev should be the managed cluster, got {other:?}"),
    }
    assert!(
        dev.policy.allow_rollback && !dev.policy.require_confirm,
        "dev is permissive: {:?}",
        dev.policy
    );
    // dev's "0" is no limit, set explicitly so no server or role setting applies.
    assert_eq!(dev.policy.lock_timeout, Some(Duration::ZERO));
    assert_eq!(dev.policy.statement_timeout, Some(Duration::ZERO));

    for settings in [&staging, &prod] {
        let Target::Server(server) = &settings.target else {
            panic!("{} should be a server", settings.env)
        };
        assert_eq!(server.sslmode, SslMode::VerifyFull, "{}", settings.env);
        assert!(server.sslrootcert.is_some(), "{}", settings.env);
        assert!(settings.policy.require_confirm, "{}", settings.env);
        assert!(settings.policy.lock_timeout.is_some(), "{}", settings.env);
    }
    assert!(!prod.policy.allow_rollback);
    assert_eq!(prod.policy.lock_timeout, Some(Duration::from_secs(3)));
    assert!(
        matches!(&prod.environments, EnvironmentsLocation::Dir { how, .. } if how == "flag --environments")
    );
}

#[test]
fn the_embedded_copies_serve_when_no_folder_is_found() {
    let flags = Flags::default();
    Jail::expect_with(|jail| {
        jail.clear_env();
        let known = known_environments(None);
        for required in ["dev", "prod", "staging"] {
            assert!(
                known.iter().any(|name| name == required),
                "{required} not embedded: {known:?}"
            );
        }
        let opts = LoadOptions {
            env: "dev",
            environments_dir: None,
            flags: &flags,
        };
        let settings = ecomind_config::load(&opts).map_err(|e| e.to_string())?;
        assert_eq!(settings.environments, EnvironmentsLocation::Embedded);
        match settings.target {
            Target::Managed { root, .. } => assert_eq!(root, jail.directory().join(".dev-db")),
            other => panic!("dev should be the managed cluster, got {other:?}"),
        }
        let explained = ecomind_config::explain(&opts).map_err(|e| e.to_string())?;
        assert_eq!(explained.file, "embedded environments/dev.toml");
        assert_eq!(
            explained.environments,
            "the copies embedded in the binary at build time"
        );
        Ok(())
    });
}
