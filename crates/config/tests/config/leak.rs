//! The leak test: a recognisable password, put in every place a password can
//! come from, must not appear in any error, `Debug`, `explain` (text or JSON)
//! output, nor in what the server saw (`pg_stat_activity`, its log) or in any
//! process's argv.

use std::{fs, path::Path, time::Duration};

use ecomind_config::{SecretString, SslMode};

use crate::{
    harness::{run, Setup},
    server::{self, PASSWORD},
};

fn render_outcome(setup: &Setup<'_>, out: &mut Vec<(String, String)>) {
    let outcome = run(setup);
    let label = format!(
        "{:?}",
        setup.vars.iter().map(|(name, _)| *name).collect::<Vec<_>>()
    );
    match outcome.load {
        Ok(settings) => {
            out.push((
                format!("{label} load Debug"),
                format!("{settings:?} {settings:#?}"),
            ));
            if let ecomind_config::Target::Server(server) = &settings.target {
                out.push((format!("{label} describe"), server.describe()));
            }
        }
        Err(err) => out.push((format!("{label} load error"), format!("{err} {err:?}"))),
    }
    match outcome.explain {
        Ok(explanation) => {
            out.push((format!("{label} explain Debug"), format!("{explanation:?}")));
            out.push((
                format!("{label} explain JSON"),
                serde_json::to_string(&explanation).unwrap(),
            ));
        }
        Err(err) => out.push((format!("{label} explain error"), format!("{err} {err:?}"))),
    }
}

#[test]
fn the_password_appears_in_no_output() {
    let canary = PASSWORD;
    let url = format!("postgres://app:{canary}@db.example:5432/eco");
    let file = format!("{canary}\n");
    let dev_literal = format!("[database]\npassword = \"{canary}\"\n");
    let broken_literal = format!("[database]\nhost = \"db\"\npassword = \"{canary}\n");
    let misplaced = format!("[database]\npasword = \"{canary}\"\n");
    let wrong_shape = format!("[database]\npassword = {{ value = \"{canary}\" }}\n");
    let mut outputs = Vec::new();

    let setups: Vec<Setup<'_>> = vec![
        Setup::file("").var("ECOMIND_DB_PASSWORD", canary),
        Setup::file("").var("PGPASSWORD", canary),
        Setup::file("").var("DATABASE_URL", url.clone()),
        Setup::file("").var("DATABASE_URL", format!("{url}?sslmod=require")),
        Setup::file("").var("DATABASE_URL", format!("postgres://app:{canary}%zz@h/d")),
        Setup::file("").var("DATABASE_URL", format!("mysql://app:{canary}@h/d")),
        Setup::file("").var("DATABASE_URL", format!("postgres://app:{canary}@a:1,b:2/d")),
        Setup::file("")
            .var("ECOMIND_DB_PASSWORD", canary)
            .var("PGPASSWORD", canary)
            .var("DATABASE_URL", url.clone()),
        Setup::file("")
            .var("ECOMIND_DB_PASSWORD", canary)
            .var("ECOMIND_DB_PASSWORD_FILE", "pw")
            .secret_file("pw", &file, 0o600),
        Setup::file("[database]\npassword_file = \"pw\"\n").secret_file("pw", &file, 0o600),
        Setup::file("[database]\npassword_file = \"pw\"\n").secret_file("pw", &file, 0o644),
        Setup::file("")
            .var("ECOMIND_DB_PASSWORD_FILE", "pw")
            .secret_file("pw", &file, 0o640),
        Setup {
            env: "dev",
            ..Setup::file(&dev_literal)
        },
        Setup {
            env: "prod",
            ..Setup::file(&dev_literal)
        },
        Setup {
            env: "dev",
            ..Setup::file(&broken_literal)
        },
        Setup {
            env: "prod",
            ..Setup::file(&broken_literal)
        },
        Setup {
            env: "dev",
            ..Setup::file(&misplaced)
        },
        Setup {
            env: "dev",
            ..Setup::file(&wrong_shape)
        },
        Setup::file("[database]\nport = 0\n").var("PGPASSWORD", canary),
    ];
    // The canary with an unencoded `/`, `?`, `#`, `@` or `&` in it: a URL parser that
    // splits it there would show a piece of it as a port, host, database or parameter.
    let (head, tail) = canary.split_at(canary.find("-8c41e").expect("the canary"));
    let split_urls = [
        format!("postgres://app:{head}/{tail}@db.example/eco"),
        format!("postgres://app:5432/{tail}@db.example/eco"),
        format!("postgres://app:{head}?x/{tail}@db.example/eco"),
        format!("postgres://app:{head}#x/{tail}@db.example/eco"),
        format!("postgres://app:{head}@{tail}@db.example/eco"),
        format!("postgres://app:{head}/{tail}@db.example:5432/eco?sslmode=require"),
        format!("postgres://db.example/eco?password={head}&{tail}=1"),
        format!("postgres://db.example/eco?password={head}&port={tail}"),
        format!("postgres://db.example/eco?password={head}&sslmode={tail}"),
        format!("postgres://db.example/eco?password={head}&connect_timeout={tail}"),
    ];
    let setups: Vec<Setup<'_>> = setups
        .into_iter()
        .chain(
            split_urls
                .iter()
                .map(|url| Setup::file("").var("DATABASE_URL", url.clone())),
        )
        .collect();
    for setup in &setups {
        render_outcome(setup, &mut outputs);
    }

    // Connection failures with the canary configured (or nearly: a wrong password that contains it).
    let sandbox = server::tls_sandbox();
    let certs_ca = std::env::temp_dir().join("no-such-ca.pem");
    let wrong = format!("{canary}-wrong");
    for server in [
        server::server(sandbox, "localhost", SslMode::Require, None, Some(&wrong)),
        server::server(
            sandbox,
            "127.0.0.1",
            SslMode::VerifyFull,
            Some(&certs_ca),
            Some(canary),
        ),
        server::server(
            sandbox,
            "localhost",
            SslMode::VerifyFull,
            None,
            Some(canary),
        ),
    ] {
        outputs.push(("server Debug".to_owned(), format!("{server:?}")));
        if let Err(err) = server.connect(server::APP) {
            outputs.push(("connect error".to_owned(), format!("{err} {err:?}")));
        }
    }
    let mut gone = ecomind_config::Server::local_socket(Path::new("/unused"), 9, "app", "eco")
        .with_password(SecretString::from(canary), "test");
    gone.hosts = vec!["127.0.0.1".to_owned()];
    gone.connect_timeout = Duration::from_secs(1);
    if let Err(err) = gone.connect(server::APP) {
        outputs.push(("refused".to_owned(), format!("{err} {err:?}")));
    }

    // What the server saw while a session that used the password is open.
    let mut client = server::server(sandbox, "localhost", SslMode::Require, None, Some(canary))
        .connect(server::APP)
        .expect("the right password connects");
    for row in client
        .query(
            "SELECT coalesce(query, ''), coalesce(application_name, '') FROM pg_stat_activity",
            &[],
        )
        .unwrap()
    {
        outputs.push((
            "pg_stat_activity".to_owned(),
            format!("{} {}", row.get::<_, String>(0), row.get::<_, String>(1)),
        ));
    }
    outputs.push((
        "server log".to_owned(),
        fs::read_to_string(sandbox.cluster().log_file()).unwrap_or_default(),
    ));
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            outputs.push((
                format!("argv of {}", entry.path().display()),
                String::from_utf8_lossy(&cmdline).into_owned(),
            ));
        }
    }

    let leaks: Vec<String> = outputs
        .iter()
        .filter(|(_, text)| text.contains(head) || text.contains(tail))
        .map(|(label, text)| format!("{label}: {text}"))
        .collect();
    assert!(
        leaks.is_empty(),
        "the password leaked:\n{}",
        leaks.join("\n")
    );
    assert!(
        outputs.len() > 40,
        "the test looked at too little: {}",
        outputs.len()
    );
}
