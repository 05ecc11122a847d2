//! libpq parity in the loader: several hosts with a port each, from every
//! layer, `target_session_attrs`, client certificates, and `.pgpass` as the
//! password source of last resort.

use ecomind_config::{Target, TargetSessionAttrs};

use crate::harness::{run, Setup};

fn server(setup: &Setup<'_>) -> ecomind_config::Server {
    let outcome = run(setup);
    match outcome.load.unwrap_or_else(|err| panic!("{err}")).target {
        Target::Server(server) => server,
        other => panic!("expected a server, got {other:?}"),
    }
}

#[test]
fn several_hosts_each_with_its_own_port() {
    // (setup, hosts, ports, describe)
    let cases: Vec<(Setup<'_>, &[&str], &[u16], &str)> = vec![
        (
            Setup::file("[database]\nhost = \"a, b\"\nport = \"5432,5433\"\n"),
            &["a", "b"],
            &[5432, 5433],
            "ecomind@a:5432,b:5433/ecomind",
        ),
        (
            Setup::file("")
                .var("PGHOST", "primary.example,replica.example")
                .var("PGPORT", "6432,6433"),
            &["primary.example", "replica.example"],
            &[6432, 6433],
            "ecomind@primary.example:6432,replica.example:6433/ecomind",
        ),
        (
            Setup::file("")
                .var("ECOMIND_DB_HOST", "a,b")
                .var("ECOMIND_DB_PORT", "7000"),
            &["a", "b"],
            &[7000],
            "ecomind@a:7000,b:7000/ecomind",
        ),
        (
            Setup::file("").var("DATABASE_URL", "postgres://app@a:5432,b:5433/db"),
            &["a", "b"],
            &[5432, 5433],
            "app@a:5432,b:5433/db",
        ),
    ];
    for (setup, hosts, ports, describe) in cases {
        let server = server(&setup);
        assert_eq!(server.hosts, hosts);
        assert_eq!(server.ports, ports);
        assert_eq!(server.describe(), describe);
    }
}

#[test]
fn target_session_attrs_comes_from_every_layer() {
    for (setup, expected) in [
        (Setup::file(""), TargetSessionAttrs::Any),
        (
            Setup::file("[database]\ntarget_session_attrs = \"read-write\"\n"),
            TargetSessionAttrs::ReadWrite,
        ),
        (
            Setup::file("").var("ECOMIND_DB_TARGET_SESSION_ATTRS", "read-write"),
            TargetSessionAttrs::ReadWrite,
        ),
        (
            Setup::file("").var("PGTARGETSESSIONATTRS", "read_write"),
            TargetSessionAttrs::ReadWrite,
        ),
        (
            Setup::file("[database]\ntarget_session_attrs = \"read-write\"\n")
                .var("DATABASE_URL", "postgres://a,b/d?target_session_attrs=any"),
            TargetSessionAttrs::Any,
        ),
    ] {
        assert_eq!(server(&setup).target_session_attrs, expected);
    }
}

#[test]
fn client_certificates_come_from_the_file_and_libpq_variables() {
    let from_file = server(&Setup::file(
        "[database]\nsslcert = \"certs/client.crt\"\nsslkey = \"certs/client.key\"\n",
    ));
    assert!(from_file
        .sslcert
        .as_ref()
        .unwrap()
        .ends_with("certs/client.crt"));
    assert!(
        from_file.sslcert.as_ref().unwrap().is_absolute(),
        "resolved against the repository"
    );
    let from_vars = server(
        &Setup::file("")
            .var("PGSSLCERT", "/etc/pg/client.crt")
            .var("ECOMIND_DB_SSLKEY", "/etc/pg/client.key"),
    );
    assert_eq!(
        from_vars.sslcert.unwrap().to_str(),
        Some("/etc/pg/client.crt")
    );
    assert_eq!(
        from_vars.sslkey.unwrap().to_str(),
        Some("/etc/pg/client.key")
    );
}

/// `.pgpass` is consulted only when nothing else gives a password, and
/// `config show` says so without reading it.
#[test]
fn pgpass_is_the_last_resort_and_config_show_names_it() {
    let pgpass = "db.example:5432:ecomind:ecomind:from-pgpass\n";
    let setup = Setup::file("[database]\nhost = \"db.example\"\n")
        .var("PGPASSFILE", "pgpass")
        .secret_file("pgpass", pgpass, 0o600);
    let outcome = run(&setup);
    let Target::Server(server) = outcome.load.expect("loads").target else {
        panic!("server")
    };
    assert!(!server.has_password(), "matched per host when connecting");
    let explanation = outcome.explain.expect("explains");
    let password = explanation
        .values
        .iter()
        .find(|value| value.key == "database.password")
        .unwrap();
    assert_eq!(password.value, None);
    assert_eq!(
        password.source,
        "unset here; the last resort is the matching line of pgpass (libpq's password file, named by env PGPASSFILE)"
    );
    let passfile = explanation
        .values
        .iter()
        .find(|value| value.key == "database.passfile")
        .unwrap();
    assert_eq!(passfile.source, "env PGPASSFILE");

    // With any other source, the password file is not even read: a loose one is no problem.
    let outcome = run(&Setup::file("")
        .var("PGPASSWORD", "from-env")
        .var("PGPASSFILE", "pgpass")
        .secret_file("pgpass", pgpass, 0o644));
    let Target::Server(server) = outcome.load.expect("loads").target else {
        panic!("server")
    };
    assert_eq!(server.password_origin(), Some("env PGPASSWORD"));

    // ~/.pgpass is the default, as in libpq; a missing one is fine.
    let outcome = run(&Setup::file("").var("HOME", "/nonexistent-home"));
    let Target::Server(server) = outcome.load.expect("loads").target else {
        panic!("server")
    };
    assert_eq!(server.password_origin(), None);
    let outcome = run(&Setup::file("")
        .var("HOME", ".")
        .secret_file(".pgpass", pgpass, 0o640));
    let message = outcome.load.expect_err("loose ~/.pgpass").to_string();
    assert!(
        message.contains("(from the default, ~/.pgpass) is accessible by group or others (mode 0640): run `chmod 600"),
        "{message}"
    );
    assert!(!message.contains("from-pgpass"), "{message}");
}
