//! The precedence table: defaults < environment file < `ECOMIND_DB_*` < `PG*`
//! < `DATABASE_URL` < flags. For every key, each layer is added on top of the
//! ones below it, and both the value and the source that `explain` names must
//! come from the newest layer.

use ecomind_config::Flags;

use crate::harness::{run, Setup};

/// One layer that sets the key under test.
#[derive(Clone, Copy)]
enum Layer {
    /// A line in the environment file (in the key's section).
    File(&'static str),
    /// A variable.
    Var(&'static str, &'static str),
    /// A flag.
    Flag(fn(&mut Flags)),
    /// A secret file (created with mode 0600) named by a line in the file.
    FileWithSecret(&'static str, &'static str),
}

struct Case {
    key: &'static str,
    default: Option<&'static str>,
    /// (layer, expected value, expected source), lowest layer first.
    layers: &'static [(Layer, &'static str, &'static str)],
}

const FILE: &str = "environments/qa.toml";

const CASES: &[Case] = &[
    Case {
        key: "database.host",
        default: Some("localhost"),
        layers: &[
            (Layer::File("host = \"file.example\""), "file.example", FILE),
            (
                Layer::Var("ECOMIND_DB_HOST", "ecomind.example"),
                "ecomind.example",
                "env ECOMIND_DB_HOST",
            ),
            (
                Layer::Var("PGHOST", "pg.example"),
                "pg.example",
                "env PGHOST",
            ),
            (
                Layer::Var("DATABASE_URL", "postgres://url.example/x"),
                "url.example",
                "env DATABASE_URL",
            ),
            (
                Layer::Flag(|f| f.host = Some("flag.example".into())),
                "flag.example",
                "flag --host",
            ),
        ],
    },
    Case {
        key: "database.port",
        default: Some("5432"),
        layers: &[
            (Layer::File("port = 1001"), "1001", FILE),
            (
                Layer::Var("ECOMIND_DB_PORT", "1002"),
                "1002",
                "env ECOMIND_DB_PORT",
            ),
            (Layer::Var("PGPORT", "1003"), "1003", "env PGPORT"),
            (
                Layer::Var("DATABASE_URL", "postgres://h:1004/x"),
                "1004",
                "env DATABASE_URL",
            ),
            (
                Layer::Var("DATABASE_URL", "postgres://a:1004,b:1005/x"),
                "1004,1005",
                "env DATABASE_URL",
            ),
            (Layer::Flag(|f| f.port = Some(1005)), "1005", "flag --port"),
        ],
    },
    Case {
        key: "database.target_session_attrs",
        default: Some("any"),
        layers: &[
            (
                Layer::File("target_session_attrs = \"read-write\""),
                "read-write",
                FILE,
            ),
            (
                Layer::Var("ECOMIND_DB_TARGET_SESSION_ATTRS", "any"),
                "any",
                "env ECOMIND_DB_TARGET_SESSION_ATTRS",
            ),
            (
                Layer::Var("PGTARGETSESSIONATTRS", "read-write"),
                "read-write",
                "env PGTARGETSESSIONATTRS",
            ),
            (
                Layer::Var(
                    "DATABASE_URL",
                    "postgres://a:1,b:2/x?target_session_attrs=any",
                ),
                "any",
                "env DATABASE_URL",
            ),
        ],
    },
    Case {
        key: "database.sslcrl",
        default: None,
        layers: &[
            (
                Layer::File("sslcrl = \"/ca/file.crl\""),
                "/ca/file.crl",
                FILE,
            ),
            (
                Layer::Var("ECOMIND_DB_SSLCRL", "/ca/ecomind.crl"),
                "/ca/ecomind.crl",
                "env ECOMIND_DB_SSLCRL",
            ),
            (
                Layer::Var("PGSSLCRL", "/ca/pg.crl"),
                "/ca/pg.crl",
                "env PGSSLCRL",
            ),
            (
                Layer::Var("DATABASE_URL", "postgres://h/x?sslcrl=/ca/url.crl"),
                "/ca/url.crl",
                "env DATABASE_URL",
            ),
        ],
    },
    Case {
        key: "database.dbname",
        default: Some("ecomind"),
        layers: &[
            (Layer::File("dbname = \"d1\""), "d1", FILE),
            (
                Layer::Var("ECOMIND_DB_DBNAME", "d2"),
                "d2",
                "env ECOMIND_DB_DBNAME",
            ),
            (Layer::Var("PGDATABASE", "d3"), "d3", "env PGDATABASE"),
            (
                Layer::Var("DATABASE_URL", "postgres://h/d4"),
                "d4",
                "env DATABASE_URL",
            ),
            (
                Layer::Flag(|f| f.dbname = Some("d5".into())),
                "d5",
                "flag --dbname",
            ),
        ],
    },
    Case {
        key: "database.user",
        default: Some("ecomind"),
        layers: &[
            (Layer::File("user = \"u1\""), "u1", FILE),
            (
                Layer::Var("ECOMIND_DB_USER", "u2"),
                "u2",
                "env ECOMIND_DB_USER",
            ),
            (Layer::Var("PGUSER", "u3"), "u3", "env PGUSER"),
            (
                Layer::Var("DATABASE_URL", "postgres://u4@h/x"),
                "u4",
                "env DATABASE_URL",
            ),
            (
                Layer::Flag(|f| f.user = Some("u5".into())),
                "u5",
                "flag --user",
            ),
        ],
    },
    Case {
        key: "database.sslmode",
        default: Some("prefer"),
        layers: &[
            (
                Layer::File("sslmode = \"verify-full\""),
                "verify-full",
                FILE,
            ),
            (
                Layer::Var("ECOMIND_DB_SSLMODE", "disable"),
                "disable",
                "env ECOMIND_DB_SSLMODE",
            ),
            (
                Layer::Var("PGSSLMODE", "require"),
                "require",
                "env PGSSLMODE",
            ),
            (
                Layer::Var("DATABASE_URL", "postgres://h/x?sslmode=verify-ca"),
                "verify-ca",
                "env DATABASE_URL",
            ),
            (
                Layer::Flag(|f| f.sslmode = Some(ecomind_config::SslMode::Prefer)),
                "prefer",
                "flag --sslmode",
            ),
        ],
    },
    Case {
        key: "database.sslrootcert",
        default: None,
        layers: &[
            (
                Layer::File("sslrootcert = \"/ca/1.pem\""),
                "/ca/1.pem",
                FILE,
            ),
            (
                Layer::Var("ECOMIND_DB_SSLROOTCERT", "/ca/2.pem"),
                "/ca/2.pem",
                "env ECOMIND_DB_SSLROOTCERT",
            ),
            (
                Layer::Var("PGSSLROOTCERT", "/ca/3.pem"),
                "/ca/3.pem",
                "env PGSSLROOTCERT",
            ),
            (
                Layer::Var("DATABASE_URL", "postgres://h/x?sslrootcert=/ca/4.pem"),
                "/ca/4.pem",
                "env DATABASE_URL",
            ),
        ],
    },
    Case {
        key: "database.connect_timeout",
        default: Some("10s"),
        layers: &[
            (Layer::File("connect_timeout = \"1s\""), "1s", FILE),
            (
                Layer::Var("ECOMIND_DB_CONNECT_TIMEOUT", "2s"),
                "2s",
                "env ECOMIND_DB_CONNECT_TIMEOUT",
            ),
            (
                Layer::Var("PGCONNECT_TIMEOUT", "3"),
                "3s",
                "env PGCONNECT_TIMEOUT",
            ),
            (
                Layer::Var("DATABASE_URL", "postgres://h/x?connect_timeout=4"),
                "4s",
                "env DATABASE_URL",
            ),
        ],
    },
    Case {
        key: "database.target",
        default: Some("server"),
        layers: &[
            (Layer::File("target = \"managed\""), "managed", FILE),
            (
                Layer::Var("ECOMIND_DB_TARGET", "server"),
                "server",
                "env ECOMIND_DB_TARGET",
            ),
        ],
    },
    Case {
        key: "policy.lock_wait",
        default: Some("1min"),
        layers: &[
            (Layer::File("lock_wait = \"2min\""), "2min", FILE),
            (
                Layer::Var("ECOMIND_DB_LOCK_WAIT", "30s"),
                "30s",
                "env ECOMIND_DB_LOCK_WAIT",
            ),
        ],
    },
    Case {
        key: "policy.lock_timeout",
        default: Some("5s"),
        layers: &[
            (Layer::File("lock_timeout = \"3s\""), "3s", FILE),
            (
                Layer::Var("ECOMIND_DB_LOCK_TIMEOUT", "500ms"),
                "500ms",
                "env ECOMIND_DB_LOCK_TIMEOUT",
            ),
        ],
    },
    Case {
        key: "policy.statement_timeout",
        default: Some("0"),
        layers: &[
            (Layer::File("statement_timeout = \"15min\""), "15min", FILE),
            (
                Layer::Var("ECOMIND_DB_STATEMENT_TIMEOUT", "1h"),
                "1h",
                "env ECOMIND_DB_STATEMENT_TIMEOUT",
            ),
        ],
    },
    Case {
        key: "policy.allow_rollback",
        default: Some("false"),
        layers: &[
            (Layer::File("allow_rollback = true"), "true", FILE),
            (
                Layer::Var("ECOMIND_DB_ALLOW_ROLLBACK", "false"),
                "false",
                "env ECOMIND_DB_ALLOW_ROLLBACK",
            ),
        ],
    },
    Case {
        key: "policy.require_confirm",
        default: Some("true"),
        layers: &[
            (Layer::File("require_confirm = false"), "false", FILE),
            (
                Layer::Var("ECOMIND_DB_REQUIRE_CONFIRM", "true"),
                "true",
                "env ECOMIND_DB_REQUIRE_CONFIRM",
            ),
        ],
    },
    Case {
        key: "database.password",
        default: None,
        layers: &[
            (
                Layer::FileWithSecret("password_file = \"secrets/db\"", "secrets/db"),
                "[redacted]",
                "file <dir>/secrets/db (named by environments/qa.toml)",
            ),
            (
                Layer::Var("ECOMIND_DB_PASSWORD", "from-ecomind"),
                "[redacted]",
                "env ECOMIND_DB_PASSWORD",
            ),
            (
                Layer::Var("PGPASSWORD", "from-pg"),
                "[redacted]",
                "env PGPASSWORD",
            ),
            (
                Layer::Var("DATABASE_URL", "postgres://u:from-url@h/x"),
                "[redacted]",
                "env DATABASE_URL",
            ),
            (
                Layer::Flag(|f| f.password_file = Some("/run/secrets/from-flag".into())),
                "[redacted]",
                "file /run/secrets/from-flag (named by flag --password-file)",
            ),
        ],
    },
];

fn section(key: &str) -> &str {
    key.split_once('.').expect("dotted").0
}

#[test]
fn each_layer_overrides_the_one_below_key_by_key() {
    let mut failures = Vec::new();
    for case in CASES {
        for depth in 0..=case.layers.len() {
            let mut database = Vec::new();
            if case.key != "database.sslrootcert" {
                database.push("sslrootcert = \"/ca/base.pem\"".to_owned());
            }
            let mut policy = Vec::new();
            let mut setup = Setup::file("");
            for (layer, _, _) in &case.layers[..depth] {
                match layer {
                    Layer::File(line) => {
                        let lines = if section(case.key) == "policy" {
                            &mut policy
                        } else {
                            &mut database
                        };
                        lines.push((*line).to_owned());
                    }
                    Layer::FileWithSecret(line, path) => {
                        database.push((*line).to_owned());
                        setup = setup.secret_file(path, "from-file\n", 0o600);
                    }
                    Layer::Var(name, value) => setup = setup.var(name, *value),
                    Layer::Flag(set) => set(&mut setup.flags),
                }
            }
            let body = format!(
                "[database]\n{}\n[policy]\n{}\n",
                database.join("\n"),
                policy.join("\n")
            );
            setup.file = Some(body);
            let outcome = run(&setup);
            let explanation = match outcome.explain {
                Ok(explanation) => explanation,
                Err(err) => {
                    failures.push(format!(
                        "{} with {depth} layers: explain failed: {err}",
                        case.key
                    ));
                    continue;
                }
            };
            let got = explanation
                .values
                .iter()
                .find(|value| value.key == case.key)
                .expect("every key is explained");
            let dir = outcome.dir.display().to_string();
            let (value, source) = match depth {
                0 => (
                    case.default.map(str::to_owned),
                    if case.default.is_some() {
                        "default"
                    } else {
                        "unset"
                    }
                    .to_owned(),
                ),
                n => {
                    let (_, value, source) = case.layers[n - 1];
                    (Some(value.to_owned()), source.replace("<dir>", &dir))
                }
            };
            if got.value != value || got.source != source {
                failures.push(format!(
                    "{} with {depth} layers: expected {value:?} from {source:?}, got {:?} from {:?}",
                    case.key, got.value, got.source
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "precedence failures:\n{}",
        failures.join("\n")
    );
}

#[test]
fn a_host_above_the_file_turns_a_managed_environment_into_a_server() {
    let file = "[database]\ntarget = \"managed\"\nmanaged_root = \".dev-db\"\n";
    let managed = run(&Setup::file(file));
    match managed.load.expect("loads").target {
        ecomind_config::Target::Managed { root, dbname } => {
            assert_eq!(root, managed.dir.join(".dev-db"));
            assert_eq!(dbname, "ecomind");
        }
        other => panic!("expected the managed cluster, got {other:?}"),
    }
    for (name, value, describe) in [
        (
            "ECOMIND_DB_HOST",
            "db.example",
            "ecomind@db.example:5432/ecomind",
        ),
        (
            "PGHOST",
            "/var/run/postgresql",
            "ecomind@/var/run/postgresql:5432/ecomind",
        ),
        (
            "DATABASE_URL",
            "postgres://app@db.example:6000/eco",
            "app@db.example:6000/eco",
        ),
        (
            "DATABASE_URL",
            "postgres:///eco",
            "ecomind@localhost:5432/eco",
        ),
    ] {
        let outcome = run(&Setup::file(file).var(name, value));
        match outcome.load.expect("loads").target {
            ecomind_config::Target::Server(server) => {
                assert_eq!(server.describe(), describe, "{name}")
            }
            other => panic!("{name}: expected a server, got {other:?}"),
        }
        let explanation = outcome.explain.expect("explains");
        let target = explanation
            .values
            .iter()
            .find(|v| v.key == "database.target")
            .unwrap();
        assert_eq!(target.value.as_deref(), Some("server"), "{name}");
        assert!(
            target.source.starts_with(&format!("env {name}")),
            "{name}: {}",
            target.source
        );
    }
    let mut flagged = Setup::file(file);
    flagged.flags.host = Some("flag.example".into());
    assert!(matches!(
        run(&flagged).load.unwrap().target,
        ecomind_config::Target::Server(_)
    ));
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let outcome = run(&Setup::file("[database]\nport = 6543\n")
        .var("ECOMIND_DB_PORT", "")
        .var("PGPORT", "")
        .var("DATABASE_URL", ""));
    let explanation = outcome.explain.expect("explains");
    let port = explanation
        .values
        .iter()
        .find(|v| v.key == "database.port")
        .unwrap();
    assert_eq!(
        (port.value.as_deref(), port.source.as_str()),
        (Some("6543"), FILE)
    );
}

#[test]
fn relative_paths_in_a_file_resolve_against_the_repository_root() {
    let outcome = run(&Setup::file(
        "[database]\nsslrootcert = \"certs/ca.pem\"\nsslmode = \"verify-full\"\n",
    ));
    let ecomind_config::Target::Server(server) = outcome.load.expect("loads").target else {
        panic!("server")
    };
    assert_eq!(server.sslrootcert, Some(outcome.dir.join("certs/ca.pem")));
    assert_eq!(server.sslmode, ecomind_config::SslMode::VerifyFull);
}

/// `"0"` is "no limit", which the engine must set explicitly (`SET lock_timeout = 0`) so that
/// a server or role setting does not apply: it resolves to `Some(ZERO)`, never to `None`
/// (which keeps the server's setting).
#[test]
fn a_zero_timeout_is_no_limit_not_the_server_setting() {
    use std::time::Duration;

    let zero = Some(Duration::ZERO);
    let secs = |n| Some(Duration::from_secs(n));
    /// Policy lines in the file, variables, expected lock_timeout, expected statement_timeout.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        Option<Duration>,
        Option<Duration>,
    );
    let cases: &[Case] = &[
        ("", &[], secs(5), zero),
        (
            "lock_timeout = \"0\"\nstatement_timeout = \"0\"",
            &[],
            zero,
            zero,
        ),
        (
            "lock_timeout = \"3s\"\nstatement_timeout = \"15min\"",
            &[],
            secs(3),
            secs(900),
        ),
        (
            "lock_timeout = \"3s\"\nstatement_timeout = \"15min\"",
            &[
                ("ECOMIND_DB_LOCK_TIMEOUT", "0"),
                ("ECOMIND_DB_STATEMENT_TIMEOUT", "0"),
            ],
            zero,
            zero,
        ),
        (
            "lock_timeout = \"0\"",
            &[("ECOMIND_DB_LOCK_TIMEOUT", "2s")],
            secs(2),
            zero,
        ),
    ];
    let mut failures = Vec::new();
    for (policy, vars, lock, statement) in cases {
        let mut setup = Setup::file("");
        setup.file = Some(format!("[policy]\n{policy}\n"));
        for (name, value) in *vars {
            setup = setup.var(name, *value);
        }
        let outcome = run(&setup);
        let got = outcome.load.expect("loads").policy;
        if (got.lock_timeout, got.statement_timeout) != (*lock, *statement) {
            failures.push(format!(
                "{policy:?} with {vars:?}: expected {lock:?}, {statement:?}; got {:?}, {:?}",
                got.lock_timeout, got.statement_timeout
            ));
        }
        // `config show` still shows the text as written.
        let explanation = outcome.explain.expect("explains");
        let shown = explanation
            .values
            .iter()
            .find(|value| value.key == "policy.statement_timeout")
            .and_then(|value| value.value.clone());
        if statement.is_some_and(|t| t.is_zero()) && shown.as_deref() != Some("0") {
            failures.push(format!(
                "{policy:?} with {vars:?}: config show says {shown:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
