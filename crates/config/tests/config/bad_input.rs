//! Bad input: each case must fail with a message that names the source and
//! says what to do.

use crate::harness::{run, Setup};

/// Which calls must fail: secret files are read only by `load`, so `explain`
/// (for `config show`) still works when the secret is absent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fails {
    Both,
    LoadOnly,
}

fn cases() -> Vec<(&'static str, Setup<'static>, Fails, Vec<&'static str>)> {
    let envs = |setup: Setup<'static>| Setup {
        extra_envs: vec![("dev", ""), ("prod", ""), ("staging", "")],
        ..setup
    };
    vec![
        (
            "unknown environment",
            envs(Setup { env: "prd", ..Setup::default() }),
            Fails::Both,
            vec!["unknown environment `prd`: known environments are dev, prod, staging", "did you mean `prod`?"],
        ),
        (
            "missing environment file",
            envs(Setup { env: "qa", ..Setup::default() }),
            Fails::Both,
            vec!["unknown environment `qa`: known environments are dev, prod, staging (in "],
        ),
        (
            "missing environments folder",
            Setup::file("").var("ECOMIND_DB_ENVIRONMENTS", "/nonexistent/environments"),
            Fails::Both,
            vec!["environments folder /nonexistent/environments does not exist (from env ECOMIND_DB_ENVIRONMENTS)"],
        ),
        (
            "malformed TOML",
            Setup::file("[database]\nhost = \"db\"\nport = = 5\n"),
            Fails::Both,
            vec!["environments/qa.toml: malformed TOML at line 3, column"],
        ),
        (
            "unknown key",
            Setup::file("[database]\nprot = 5432\n"),
            Fails::Both,
            vec!["environments/qa.toml: unknown key `database.prot`; did you mean `database.port`?"],
        ),
        (
            "unknown section",
            Setup::file("[databse]\nport = 5432\n"),
            Fails::Both,
            vec!["environments/qa.toml: unknown key `databse`; did you mean `database`?"],
        ),
        (
            "key outside a section",
            Setup::file("port = 5432\n"),
            Fails::Both,
            vec!["unknown key `port`; did you mean `database.port`?"],
        ),
        (
            "wrong type",
            Setup::file("[database]\nport = \"abc\"\n"),
            Fails::Both,
            vec!["environments/qa.toml: `database.port` must be an integer between 1 and 65535 (or a comma-separated list of them, one per host), found the string \"abc\""],
        ),
        (
            "wrong type of a flag",
            Setup::file("[policy]\nallow_rollback = \"yes\"\n"),
            Fails::Both,
            vec!["`policy.allow_rollback` must be true or false, found the string \"yes\""],
        ),
        (
            "invalid port in a file",
            Setup::file("[database]\nport = 70000\n"),
            Fails::Both,
            vec!["environments/qa.toml: invalid port 70000 for `database.port`: use a number between 1 and 65535"],
        ),
        (
            "port zero",
            Setup::file("[database]\nport = 0\n"),
            Fails::Both,
            vec!["invalid port 0"],
        ),
        (
            "invalid port in a variable",
            Setup::file("").var("ECOMIND_DB_PORT", "99999"),
            Fails::Both,
            vec!["env ECOMIND_DB_PORT: invalid port \"99999\" for `database.port`"],
        ),
        (
            "invalid port in PGPORT",
            Setup::file("").var("PGPORT", "http"),
            Fails::Both,
            vec!["env PGPORT: invalid port \"http\""],
        ),
        (
            "duration without a unit",
            Setup::file("[policy]\nlock_timeout = \"5\"\n"),
            Fails::Both,
            vec!["environments/qa.toml: invalid value for `policy.lock_timeout`: \"5\": add a unit"],
        ),
        (
            "duration past u64 in a file",
            Setup::file("[policy]\nlock_wait = \"18446744073709551615s\"\n"),
            Fails::Both,
            vec!["environments/qa.toml: invalid value for `policy.lock_wait`: \"18446744073709551615s\": it is longer than the longest duration accepted, 2147483647ms"],
        ),
        (
            "duration past u64 in a variable",
            Setup::file("").var("ECOMIND_DB_LOCK_WAIT", "18446744073709551615s"),
            Fails::Both,
            vec!["env ECOMIND_DB_LOCK_WAIT: invalid value for `policy.lock_wait`", "longer than the longest duration accepted"],
        ),
        (
            "timeout longer than the server accepts",
            Setup::file("[policy]\nstatement_timeout = \"25d\"\n"),
            Fails::Both,
            vec!["`policy.statement_timeout`: \"25d\": it is longer than the longest duration accepted, 2147483647ms (about 24 days, the longest timeout PostgreSQL accepts)"],
        ),
        (
            "lock timeout one millisecond past the server's limit",
            Setup::file("").var("ECOMIND_DB_LOCK_TIMEOUT", "2147483648ms"),
            Fails::Both,
            vec!["env ECOMIND_DB_LOCK_TIMEOUT: invalid value for `policy.lock_timeout`"],
        ),
        (
            "connect timeout past the bound",
            Setup::file("[database]\nhost = \"db\"\nconnect_timeout = \"99999999999999999999999h\"\n"),
            Fails::Both,
            vec!["`database.connect_timeout`", "longer than the longest duration accepted"],
        ),
        (
            "password file of several lines",
            Setup::file("").secret_file("pw", "s3cret\nuser=admin\n", 0o600).var("ECOMIND_DB_PASSWORD_FILE", "pw"),
            Fails::LoadOnly,
            vec!["secret file pw (from env ECOMIND_DB_PASSWORD_FILE) holds 2 lines, but a password file holds the password alone on one line (one trailing newline is allowed)"],
        ),
        (
            "unknown sslmode",
            Setup::file("").var("PGSSLMODE", "verify"),
            Fails::Both,
            vec!["env PGSSLMODE: `database.sslmode` must be one of \"disable\", \"prefer\", \"require\", \"verify-ca\", \"verify-full\""],
        ),
        (
            "verify-full without a CA",
            Setup::file("[database]\nsslmode = \"verify-full\"\n"),
            Fails::Both,
            vec!["sslmode verify-full (from environments/qa.toml) needs a CA certificate: set `sslrootcert`"],
        ),
        (
            "missing secret file",
            Setup::file("[database]\npassword_file = \"/nonexistent/db-password\"\n"),
            Fails::LoadOnly,
            vec!["secret file /nonexistent/db-password (from environments/qa.toml) does not exist"],
        ),
        (
            "unreadable secret file",
            Setup::file("").secret_file("secrets/x", "pw", 0o600).var("ECOMIND_DB_PASSWORD_FILE", "secrets"),
            Fails::LoadOnly,
            vec!["cannot read secret file secrets (from env ECOMIND_DB_PASSWORD_FILE): it is not a regular file"],
        ),
        (
            "secret file readable by others",
            Setup::file("").secret_file("pw", "pw", 0o644).var("ECOMIND_DB_PASSWORD_FILE", "pw"),
            Fails::LoadOnly,
            vec!["secret file pw (from env ECOMIND_DB_PASSWORD_FILE) is accessible by group or others (mode 0644): run `chmod 600 pw`"],
        ),
        (
            "secret file readable by group",
            Setup::file("[database]\npassword_file = \"pw\"\n").secret_file("pw", "pw", 0o640),
            Fails::LoadOnly,
            vec!["(mode 0640): run `chmod 600 ", "/pw`"],
        ),
        (
            "empty secret file",
            Setup::file("").secret_file("pw", "\n", 0o600).var("ECOMIND_DB_PASSWORD_FILE", "pw"),
            Fails::LoadOnly,
            vec!["secret file pw (from env ECOMIND_DB_PASSWORD_FILE) is empty"],
        ),
        (
            "literal password in prod",
            Setup { env: "prod", ..Setup::file("[database]\npassword = \"hunter2\"\n") },
            Fails::Both,
            vec!["environments/prod.toml: a literal password is not allowed in the `prod` environment file", "password_file"],
        ),
        (
            "literal password in staging",
            Setup { env: "staging", ..Setup::file("[database]\npassword = \"hunter2\"\n") },
            Fails::Both,
            vec!["a literal password is not allowed in the `staging` environment file"],
        ),
        (
            "two passwords at one level",
            Setup::file("").secret_file("pw", "pw", 0o600).var("ECOMIND_DB_PASSWORD", "x").var("ECOMIND_DB_PASSWORD_FILE", "pw"),
            Fails::Both,
            vec!["both env ECOMIND_DB_PASSWORD and file pw (named by env ECOMIND_DB_PASSWORD_FILE) are set: keep only one of them"],
        ),
        (
            "URL with another scheme",
            Setup::file("").var("DATABASE_URL", "mysql://u@h/d"),
            Fails::Both,
            vec!["env DATABASE_URL: it must start with postgres:// or postgresql://", "(the URL is not shown"],
        ),
        (
            "URL with an unknown parameter",
            Setup::file("").var("DATABASE_URL", "postgres://u@h/d?sslmod=require"),
            Fails::Both,
            vec!["env DATABASE_URL: query parameter 1 is not supported (did you mean `sslmode`?): use host, port"],
        ),
        (
            "URL with an unencoded `/` in the password",
            Setup::file("").var("DATABASE_URL", "postgres://u:s3cr/etP4ss@h/db"),
            Fails::Both,
            vec!["env DATABASE_URL: an `@` follows the host part", "write `/` as %2F, `?` as %3F, `#` as %23, `@` as %40 and `:` as %3A in the user name and password", "(the URL is not shown"],
        ),
        (
            "URL with an unencoded `@` in the password",
            Setup::file("").var("DATABASE_URL", "postgres://u:p@ss@h/db"),
            Fails::Both,
            vec!["env DATABASE_URL: an `@` follows the host part"],
        ),
        (
            "URL with a bad port",
            Setup::file("").var("DATABASE_URL", "postgres://u@h:http/db"),
            Fails::Both,
            vec!["env DATABASE_URL: its port is not valid: use an integer between 1 and 65535"],
        ),
        (
            "more ports than hosts",
            Setup::file("[database]\nhost = \"a,b\"\n").var("PGPORT", "5432,5433,5434"),
            Fails::Both,
            vec!["environment `qa`: 3 ports (from env PGPORT) for 2 hosts (from environments/qa.toml): give one port for every host, or one port per host in the same order"],
        ),
        (
            "a port list with a bad entry",
            Setup::file("").var("PGPORT", "5432,x"),
            Fails::Both,
            vec!["env PGPORT: invalid port \"5432,x\""],
        ),
        (
            "unsupported target_session_attrs",
            Setup::file("").var("PGTARGETSESSIONATTRS", "prefer-standby"),
            Fails::Both,
            vec!["env PGTARGETSESSIONATTRS: `database.target_session_attrs` must be \"any\" or \"read-write\", found \"prefer-standby\""],
        ),
        (
            "a client certificate without its key",
            Setup::file("[database]\nsslcert = \"/etc/client.crt\"\n"),
            Fails::Both,
            vec!["environment `qa`: sslcert (from environments/qa.toml) needs sslkey: set both the client certificate and its key, or neither"],
        ),
        (
            "a revocation list without a CA",
            Setup::file("").var("PGSSLCRL", "/etc/root.crl"),
            Fails::Both,
            vec!["environment `qa`: sslcrl (from env PGSSLCRL) needs sslrootcert"],
        ),
        (
            "a password file named but missing",
            Setup::file("").var("PGPASSFILE", "/nonexistent/pgpass"),
            Fails::LoadOnly,
            vec!["secret file /nonexistent/pgpass (from env PGPASSFILE) does not exist"],
        ),
        (
            "a password file others can read",
            Setup::file("").var("PGPASSFILE", "pgpass").secret_file("pgpass", "*:*:*:*:s3cret\n", 0o644),
            Fails::LoadOnly,
            vec!["(from env PGPASSFILE) is accessible by group or others (mode 0644): run `chmod 600"],
        ),
    ]
}

#[test]
fn every_bad_input_fails_with_a_clear_message() {
    let mut failures = Vec::new();
    for (name, setup, fails, expected) in cases() {
        let outcome = run(&setup);
        let mut check = |call: &str, result: Result<String, String>| match result {
            Ok(_) => failures.push(format!("{name}: {call} succeeded")),
            Err(message) => {
                for part in &expected {
                    if !message.contains(part) {
                        failures.push(format!(
                            "{name}: {call} said\n    {message}\n  which lacks\n    {part}"
                        ));
                    }
                }
                if message.ends_with('.') || message.starts_with(char::is_uppercase) {
                    failures.push(format!(
                        "{name}: {call}: not house style (lowercase, no full stop): {message}"
                    ));
                }
            }
        };
        check(
            "load",
            outcome
                .load
                .map(|s| format!("{s:?}"))
                .map_err(|e| e.to_string()),
        );
        let explained = outcome
            .explain
            .map(|e| format!("{e:?}"))
            .map_err(|e| e.to_string());
        match fails {
            Fails::Both => check("explain", explained),
            Fails::LoadOnly => {
                if let Err(err) = explained {
                    failures.push(format!(
                        "{name}: explain should work without reading the secret, got {err}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_literal_password_is_tolerated_in_dev() {
    let outcome = run(&Setup {
        env: "dev",
        ..Setup::file("[database]\npassword = \"devpw\"\n")
    });
    let settings = outcome.load.expect("dev may hold a throwaway password");
    let ecomind_config::Target::Server(server) = settings.target else {
        panic!("server")
    };
    assert!(server.has_password());
    assert_eq!(server.password_origin(), Some("environments/dev.toml"));
}

#[test]
fn an_unknown_ecomind_variable_is_a_warning_with_a_suggestion() {
    let outcome = run(&Setup::file("").var("ECOMIND_DB_PROT", "5433"));
    let settings = outcome.load.expect("loads");
    assert_eq!(
        settings.warnings,
        ["env ECOMIND_DB_PROT is not a setting and is ignored (did you mean ECOMIND_DB_PORT?)"]
    );
}
