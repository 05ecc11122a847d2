//! Test support for ecomind-db: one sandbox cluster per test process, a fresh database per test, so tests run in parallel.
//!
//! ```no_run
//! let db = ecomind_testkit::database();
//! let mut client = db.client();
//! client.batch_execute("CREATE TABLE t (id int)").unwrap();
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use ecomind_snapshot::{Auth, Binaries, ClusterOptions, Listen, Sandbox, SecretString};

/// The sandbox cluster of this test process: trust authentication, unix socket only, not
/// durable. Started on first use; stopped and removed when the process exits, however it exits.
/// The server binaries come from `ECOMIND_DB_BIN_DIR` when set (how CI tests other major
/// versions), else from [`Binaries::locate`]'s search ([`Binaries::from_env`]).
///
/// Panics with the reason when PostgreSQL cannot be found or started: tests cannot run without it.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| start(Listen::Socket, Auth::Trust))
}

/// The password sandbox of this test process, beside [`sandbox`]: scram-sha-256 for every
/// connection, with `password` for the superuser, TCP on 127.0.0.1 (a free port) besides the unix
/// socket; [`TestDb::client`] and [`TestDb::config`] carry the password. Started on first use with
/// the first `password` given; every later call must give the same one.
///
/// Panics with the reason when PostgreSQL cannot be found or started, or when `password`
/// differs from the first call's.
pub fn password_sandbox(password: &str) -> &'static Sandbox {
    static SANDBOX: OnceLock<(String, Sandbox)> = OnceLock::new();
    let (first, sandbox) = SANDBOX.get_or_init(|| {
        (
            password.to_owned(),
            start(
                Listen::Tcp { port: 0 },
                Auth::Password(SecretString::from(password)),
            ),
        )
    });
    assert!(
        first == password,
        "ecomind-testkit: the password sandbox was started with another password"
    );
    sandbox
}

fn start(listen: Listen, auth: Auth) -> Sandbox {
    let binaries =
        Binaries::from_env().unwrap_or_else(|e| panic!("ecomind-testkit: {}", chain(&e)));
    let opts = ClusterOptions {
        binaries: &binaries,
        listen,
        auth,
        durable: false,
        settings: &[],
    };
    Sandbox::start(&opts).unwrap_or_else(|e| {
        panic!(
            "ecomind-testkit: could not start the sandbox cluster: {}",
            chain(&e)
        )
    })
}

/// A database of its own for one test, in the process's [`sandbox`]; dropped (with
/// `WITH (FORCE)`, ending its sessions) when this value is dropped.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    sandbox: &'static Sandbox,
}

/// Creates a fresh, empty database with a unique name (`test_<pid>_<counter>`).
///
/// Panics with the reason when the sandbox or the database cannot be created.
pub fn database() -> TestDb {
    database_in(sandbox())
}

/// Creates a fresh, empty database in `sandbox` (for instance [`password_sandbox`]'s), as
/// [`database`] does in the process's trust sandbox.
pub fn database_in(sandbox: &'static Sandbox) -> TestDb {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let number = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("test_{}_{number}", std::process::id());
    sandbox
        .cluster()
        .ensure_database(&name)
        .unwrap_or_else(|e| {
            panic!(
                "ecomind-testkit: could not create database {name}: {}",
                chain(&e)
            )
        });
    TestDb { name, sandbox }
}

impl TestDb {
    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sandbox this database lives in.
    pub fn sandbox(&self) -> &'static Sandbox {
        self.sandbox
    }

    /// A libpq key/value connection string for this database (no password: trust auth).
    pub fn conninfo(&self) -> String {
        self.sandbox.cluster().conninfo(&self.name)
    }

    /// A `postgres` crate configuration for this database.
    pub fn config(&self) -> postgres::Config {
        self.sandbox.cluster().client_config(&self.name)
    }

    /// A new connection to this database as the superuser. Panics if connecting fails.
    pub fn client(&self) -> postgres::Client {
        self.config().connect(postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "ecomind-testkit: could not connect to database {}: {}",
                self.name,
                chain(&e)
            )
        })
    }

    /// `PGHOST`, `PGPORT`, `PGUSER` and `PGDATABASE` pairs that point a spawned program at this database.
    pub fn pg_env(&self) -> Vec<(String, String)> {
        let cluster = self.sandbox.cluster();
        vec![
            (
                "PGHOST".to_owned(),
                cluster.socket_dir().to_string_lossy().into_owned(),
            ),
            ("PGPORT".to_owned(), cluster.port().to_string()),
            ("PGUSER".to_owned(), cluster.superuser().to_owned()),
            ("PGDATABASE".to_owned(), self.name.clone()),
        ]
    }
}

/// An error and its causes, joined with `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Best effort: the whole sandbox goes away with the process anyway.
        if let Ok(mut client) = self.sandbox.cluster().connect("postgres") {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}
