//! Connections against real sandbox clusters: TLS in every sslmode with a CA
//! and server certificate made here, wrong CA and host name, a server without
//! TLS, wrong and missing passwords, unreachable servers, and a password read
//! from a secret file under /run/secrets.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use ecomind_config::{
    ConnectError, ConnectErrorKind, Flags, LoadOptions, SecretString, Server, SslMode, Target,
    TargetSessionAttrs,
};
use ecomind_snapshot::{Auth, Binaries, ClusterOptions, Listen, Sandbox};
use figment::Jail;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa,
    KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber,
};

/// The sandbox superuser's password; recognisable, so the leak test can look for it.
pub const PASSWORD: &str = "Canary-Pw-8c41e-do-not-print";
pub const APP: &str = "ecomind-config-test";

/// Certificates made for this test process.
pub struct Certs {
    _dir: tempfile::TempDir,
    /// The CA that signed the server certificate.
    pub ca: PathBuf,
    /// Another CA, which signed nothing the server has.
    pub wrong_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// A client certificate for the user `postgres`, signed by `ca`, and its key (0600).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The same key with mode 0640.
    pub loose_client_key: PathBuf,
    /// A client certificate for `postgres` signed by `wrong_ca`, and its key.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
    /// A revocation list from `ca` that revokes the server certificate.
    pub crl_revoking_server: PathBuf,
    /// A revocation list from `ca` that revokes nothing the server has.
    pub crl_of_others: PathBuf,
    /// pg_hba.conf for the mutual-TLS sandbox: TCP only with a verified client certificate.
    hba_cert: PathBuf,
}

/// uid and gid of the `postgres` OS user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|line| line.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|meta| meta.uid() == 0)
        .unwrap_or(false)
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params.self_signed(&key).unwrap(), key)
}

fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_key) = make_ca("ecomind test CA");
        let wrong_ca = make_ca("ecomind unrelated CA");
        let (wrong_ca, wrong_ca_key) = (wrong_ca.0, wrong_ca.1);
        let server_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.serial_number = Some(SerialNumber::from(4242_u64));
        let server = params.signed_by(&server_key, &ca, &ca_key).unwrap();
        let client = |issuer: &rcgen::Certificate, issuer_key: &KeyPair| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, "postgres");
            (params.signed_by(&key, issuer, issuer_key).unwrap(), key)
        };
        let (client_cert, client_key) = client(&ca, &ca_key);
        let (stranger_cert, stranger_key) = client(&wrong_ca, &wrong_ca_key);
        let crl = |serial: u64| {
            CertificateRevocationListParams {
                this_update: rcgen::date_time_ymd(2024, 1, 1),
                next_update: rcgen::date_time_ymd(2124, 1, 1),
                crl_number: SerialNumber::from(serial),
                issuing_distribution_point: None,
                revoked_certs: vec![RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                }],
                key_identifier_method: KeyIdMethod::Sha256,
            }
            .signed_by(&ca, &ca_key)
            .unwrap()
            .pem()
            .unwrap()
        };
        let write = |name: &str, contents: String, mode: u32| {
            let path = dir.path().join(name);
            fs::write(&path, contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            path
        };
        let certs = Certs {
            ca: write("ca.crt", ca.pem(), 0o644),
            wrong_ca: write("wrong-ca.crt", wrong_ca.pem(), 0o644),
            cert: write("server.crt", server.pem(), 0o644),
            key: write("server.key", server_key.serialize_pem(), 0o600),
            client_cert: write("client.crt", client_cert.pem(), 0o644),
            client_key: write("client.key", client_key.serialize_pem(), 0o600),
            loose_client_key: write("loose-client.key", client_key.serialize_pem(), 0o640),
            stranger_cert: write("stranger.crt", stranger_cert.pem(), 0o644),
            stranger_key: write("stranger.key", stranger_key.serialize_pem(), 0o600),
            crl_revoking_server: write("revokes-server.crl", crl(4242), 0o644),
            crl_of_others: write("others.crl", crl(7), 0o644),
            hba_cert: write(
                "pg_hba.conf",
                "local all all trust\nhostssl all all 127.0.0.1/32 trust clientcert=verify-full\nhostssl all all ::1/128 trust clientcert=verify-full\n".to_owned(),
                0o644,
            ),
            _dir: dir,
        };
        // As root the server runs as `postgres`, which must own its key and reach the folder.
        if running_as_root() {
            let (uid, gid) = postgres_user().expect("the postgres OS user exists");
            for path in [
                certs._dir.path(),
                &certs.cert,
                &certs.key,
                &certs.ca,
                &certs.hba_cert,
            ] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
            }
        }
        certs
    })
}

fn binaries() -> Binaries {
    Binaries::from_env().unwrap_or_else(|err| {
        panic!("PostgreSQL server binaries are needed for these tests: {err}")
    })
}

/// Runs `start` while no `Jail` test has the process environment cleared
/// (they hold the same lock), so `ECOMIND_DB_BIN_DIR`, `PATH` and `TMPDIR` are
/// the real ones.
fn start_sandbox(start: impl FnOnce() -> Sandbox) -> Sandbox {
    let mut sandbox = None;
    Jail::expect_with(|_| {
        sandbox = Some(start());
        Ok(())
    });
    sandbox.expect("the sandbox started")
}

/// A cluster with `ssl = on`, the test certificates, password authentication.
pub fn tls_sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        start_sandbox(|| {
            let certs = certs();
            let cert = certs.cert.display().to_string();
            let key = certs.key.display().to_string();
            let binaries = binaries();
            let settings = [
                ("ssl", "on"),
                ("ssl_cert_file", cert.as_str()),
                ("ssl_key_file", key.as_str()),
            ];
            let opts = ClusterOptions {
                binaries: &binaries,
                listen: Listen::Tcp { port: 0 },
                auth: Auth::Password(SecretString::from(PASSWORD)),
                durable: false,
                settings: &settings,
            };
            Sandbox::start(&opts)
                .unwrap_or_else(|err| panic!("cannot start the TLS sandbox: {err}"))
        })
    })
}

/// A cluster that lets TCP clients in only with a client certificate signed
/// by the test CA whose common name is the user (`clientcert=verify-full`).
fn mtls_sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        start_sandbox(|| {
            let certs = certs();
            let cert = certs.cert.display().to_string();
            let key = certs.key.display().to_string();
            let ca = certs.ca.display().to_string();
            let hba = certs.hba_cert.display().to_string();
            let binaries = binaries();
            let settings = [
                ("ssl", "on"),
                ("ssl_cert_file", cert.as_str()),
                ("ssl_key_file", key.as_str()),
                ("ssl_ca_file", ca.as_str()),
                ("hba_file", hba.as_str()),
            ];
            let opts = ClusterOptions {
                binaries: &binaries,
                listen: Listen::Tcp { port: 0 },
                auth: Auth::Trust,
                durable: false,
                settings: &settings,
            };
            Sandbox::start(&opts)
                .unwrap_or_else(|err| panic!("cannot start the mutual-TLS sandbox: {err}"))
        })
    })
}

/// A cluster without TLS, trust authentication.
fn plain_sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        start_sandbox(|| {
            let binaries = binaries();
            let opts = ClusterOptions {
                binaries: &binaries,
                listen: Listen::Tcp { port: 0 },
                auth: Auth::Trust,
                durable: false,
                settings: &[],
            };
            Sandbox::start(&opts)
                .unwrap_or_else(|err| panic!("cannot start the plain sandbox: {err}"))
        })
    })
}

/// A TCP server description for a sandbox.
pub fn server(
    sandbox: &Sandbox,
    host: &str,
    sslmode: SslMode,
    ca: Option<&Path>,
    password: Option<&str>,
) -> Server {
    let mut server = Server::local_socket(
        Path::new("/unused"),
        sandbox.cluster().port(),
        "postgres",
        "postgres",
    );
    server.hosts = vec![host.to_owned()];
    server.sslmode = sslmode;
    server.sslrootcert = ca.map(Path::to_owned);
    server.connect_timeout = Duration::from_secs(10);
    match password {
        Some(password) => server.with_password(SecretString::from(password), "test"),
        None => server,
    }
}

fn uses_tls(client: &mut postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
}

fn connect_ok(server: &Server) -> postgres::Client {
    server
        .connect(APP)
        .unwrap_or_else(|err| panic!("{}: {err}", server.describe()))
}

fn connect_err(server: &Server) -> ConnectError {
    match server.connect(APP) {
        Ok(_) => panic!(
            "{} ({:?}) connected but should not",
            server.describe(),
            server.sslmode
        ),
        Err(err) => err,
    }
}

#[test]
fn verify_full_succeeds_with_the_right_ca_and_host_name() {
    let certs = certs();
    let mut client = connect_ok(&server(
        tls_sandbox(),
        "localhost",
        SslMode::VerifyFull,
        Some(&certs.ca),
        Some(PASSWORD),
    ));
    assert!(uses_tls(&mut client));
    let app: String = client
        .query_one("SELECT current_setting('application_name')", &[])
        .unwrap()
        .get(0);
    assert_eq!(app, APP);
}

#[test]
fn verify_full_fails_clearly_with_a_wrong_ca() {
    let err = connect_err(&server(
        tls_sandbox(),
        "localhost",
        SslMode::VerifyFull,
        Some(&certs().wrong_ca),
        Some(PASSWORD),
    ));
    assert_eq!(err.kind(), ConnectErrorKind::UntrustedCertificate, "{err}");
    assert!(!err.retryable());
    let message = err.to_string();
    assert!(
        message.contains("the server certificate is not signed by a CA in"),
        "{message}"
    );
    assert!(
        message.contains("wrong-ca.crt (sslrootcert): point sslrootcert at the CA"),
        "{message}"
    );
}

#[test]
fn verify_full_fails_clearly_with_a_wrong_host_name() {
    let err = connect_err(&server(
        tls_sandbox(),
        "127.0.0.1",
        SslMode::VerifyFull,
        Some(&certs().ca),
        Some(PASSWORD),
    ));
    assert_eq!(err.kind(), ConnectErrorKind::HostNameMismatch, "{err}");
    assert!(!err.retryable());
    assert!(
        err.to_string()
            .contains("the server certificate is not valid for host name \"127.0.0.1\""),
        "{err}"
    );
}

#[test]
fn verify_ca_checks_the_ca_but_not_the_host_name() {
    let certs = certs();
    let mut client = connect_ok(&server(
        tls_sandbox(),
        "127.0.0.1",
        SslMode::VerifyCa,
        Some(&certs.ca),
        Some(PASSWORD),
    ));
    assert!(uses_tls(&mut client));
    let err = connect_err(&server(
        tls_sandbox(),
        "127.0.0.1",
        SslMode::VerifyCa,
        Some(&certs.wrong_ca),
        Some(PASSWORD),
    ));
    assert_eq!(err.kind(), ConnectErrorKind::UntrustedCertificate, "{err}");
}

#[test]
fn require_encrypts_without_a_ca_and_prefer_takes_tls_when_offered() {
    for mode in [SslMode::Require, SslMode::Prefer] {
        let mut client = connect_ok(&server(
            tls_sandbox(),
            "127.0.0.1",
            mode,
            None,
            Some(PASSWORD),
        ));
        assert!(uses_tls(&mut client), "{mode}");
    }
}

#[test]
fn disable_talks_plain() {
    let mut client = connect_ok(&server(
        tls_sandbox(),
        "localhost",
        SslMode::Disable,
        None,
        Some(PASSWORD),
    ));
    assert!(!uses_tls(&mut client));
    let mut client = connect_ok(&server(
        plain_sandbox(),
        "127.0.0.1",
        SslMode::Prefer,
        None,
        None,
    ));
    assert!(
        !uses_tls(&mut client),
        "prefer falls back to plain when the server has no TLS"
    );
}

#[test]
fn a_server_without_tls_is_refused_when_tls_is_required() {
    for (mode, ca) in [
        (SslMode::VerifyFull, Some(certs().ca.as_path())),
        (SslMode::Require, None),
    ] {
        let err = connect_err(&server(plain_sandbox(), "localhost", mode, ca, None));
        assert_eq!(err.kind(), ConnectErrorKind::TlsUnsupported, "{err}");
        assert!(!err.retryable());
        assert!(
            err.to_string().contains(&format!(
                "the server does not accept TLS but sslmode is {mode}"
            )),
            "{err}"
        );
    }
}

#[test]
fn a_wrong_password_fails_at_once_and_names_the_source() {
    let err = connect_err(&server(
        tls_sandbox(),
        "localhost",
        SslMode::Require,
        None,
        Some("not-the-password"),
    ));
    assert_eq!(err.kind(), ConnectErrorKind::Authentication, "{err}");
    assert!(!err.retryable());
    let message = err.to_string();
    assert!(
        message.contains(
            "password authentication failed for user \"postgres\": check the password from test"
        ),
        "{message}"
    );
    assert!(!message.contains("not-the-password"), "{message}");

    let err = connect_err(&server(
        tls_sandbox(),
        "localhost",
        SslMode::Require,
        None,
        None,
    ));
    assert_eq!(err.kind(), ConnectErrorKind::Authentication, "{err}");
    assert!(
        err.to_string()
            .contains("the server asks for a password but none is configured"),
        "{err}"
    );
}

#[test]
fn a_server_that_is_not_there_is_retryable() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut refused = Server::local_socket(Path::new("/unused"), port, "postgres", "postgres");
    refused.hosts = vec!["127.0.0.1".to_owned()];
    let err = connect_err(&refused);
    assert_eq!(err.kind(), ConnectErrorKind::Refused, "{err}");
    assert!(err.retryable());
    assert!(
        err.to_string()
            .contains("connection refused: is the server running"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = connect_err(&Server::local_socket(
        empty.path(),
        5432,
        "postgres",
        "postgres",
    ));
    assert_eq!(err.kind(), ConnectErrorKind::NoSocket, "{err}");
    assert!(err.retryable());
    assert!(err.to_string().contains("no socket file in"), "{err}");
}

#[test]
fn an_unreachable_host_fails_within_the_connect_timeout() {
    // 192.0.2.0/24 is TEST-NET-1 and never routed: depending on the network
    // the attempt hangs until connect_timeout, finds no route, or is refused
    // by a closed sandbox network. Whichever, it ends and is worth retrying.
    let mut unreachable = Server::local_socket(Path::new("/unused"), 5432, "postgres", "postgres");
    unreachable.hosts = vec!["192.0.2.1".to_owned()];
    unreachable.connect_timeout = Duration::from_secs(1);
    let err = connect_err(&unreachable);
    assert!(
        matches!(
            err.kind(),
            ConnectErrorKind::Timeout | ConnectErrorKind::Unreachable | ConnectErrorKind::Refused
        ),
        "{err:?}"
    );
    assert!(err.retryable());
    assert!(
        err.to_string()
            .starts_with("cannot connect to postgres@192.0.2.1:5432/postgres: "),
        "{err}"
    );
}

#[test]
fn a_server_that_never_answers_fails_within_the_connect_timeout() {
    // The kernel completes the TCP handshake for a listening socket that never
    // accepts, so only a timeout around the whole start-up can end this attempt.
    let silent = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let mut server = Server::local_socket(
        Path::new("/unused"),
        silent.local_addr().unwrap().port(),
        "postgres",
        "postgres",
    );
    server.hosts = vec!["127.0.0.1".to_owned()];
    server.connect_timeout = Duration::from_secs(1);
    let err = connect_err(&server);
    assert_eq!(err.kind(), ConnectErrorKind::Timeout, "{err}");
    assert!(err.retryable());
    assert!(
        err.to_string()
            .contains("did not complete the connection within connect_timeout (1s)"),
        "{err}"
    );
    drop(silent);
}

/// A secret file under /run/secrets, removed when dropped.
pub struct RunSecret(pub PathBuf);

impl RunSecret {
    pub fn new(name: &str, contents: &str, mode: u32) -> RunSecret {
        let dir = Path::new("/run/secrets");
        fs::create_dir_all(dir).expect("tests run as root or with a writable /run/secrets");
        let path = dir.join(format!("{name}-{}", std::process::id()));
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        RunSecret(path)
    }
}

impl Drop for RunSecret {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn a_password_file_under_run_secrets_just_works() {
    let sandbox = tls_sandbox();
    let secret = RunSecret::new(
        "ecomind-config-test-password",
        &format!("{PASSWORD}\n"),
        0o400,
    );
    let body = format!(
        "[database]\nhost = \"localhost\"\nport = {}\nuser = \"postgres\"\ndbname = \"postgres\"\nsslmode = \"verify-full\"\nsslrootcert = \"{}\"\npassword_file = \"{}\"\n",
        sandbox.cluster().port(),
        certs().ca.display(),
        secret.0.display()
    );
    let flags = Flags::default();
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_dir("environments")?;
        jail.create_file("environments/staging.toml", &body)?;
        let settings = ecomind_config::load(&LoadOptions {
            env: "staging",
            environments_dir: None,
            flags: &flags,
        })
        .map_err(|err| err.to_string())?;
        let Target::Server(server) = settings.target else {
            return Err("expected a server".into());
        };
        let mut client = server.connect(APP).map_err(|err| err.to_string())?;
        assert!(uses_tls(&mut client));
        Ok(())
    });

    let loose = RunSecret::new("ecomind-config-test-loose", PASSWORD, 0o444);
    let flags = Flags {
        password_file: Some(loose.0.clone()),
        ..Flags::default()
    };
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_dir("environments")?;
        jail.create_file("environments/staging.toml", "[database]\nhost = \"db\"\n")?;
        let err = ecomind_config::load(&LoadOptions {
            env: "staging",
            environments_dir: None,
            flags: &flags,
        })
        .expect_err("a secret readable by others is refused")
        .to_string();
        assert!(
            err.contains("(mode 0444): run `chmod 600 /run/secrets/ecomind-config-test-loose"),
            "{err}"
        );
        assert!(
            err.contains("for a Kubernetes secret volume set `defaultMode: 0400`"),
            "{err}"
        );
        Ok(())
    });
}

fn with_client_cert(mut server: Server, cert: &Path, key: &Path) -> Server {
    server.sslcert = Some(cert.to_owned());
    server.sslkey = Some(key.to_owned());
    server
}

#[test]
fn a_client_certificate_opens_a_clientcert_verify_full_server() {
    let certs = certs();
    let sandbox = mtls_sandbox();
    let base = || {
        server(
            sandbox,
            "localhost",
            SslMode::VerifyFull,
            Some(&certs.ca),
            None,
        )
    };
    let mut client = connect_ok(&with_client_cert(
        base(),
        &certs.client_cert,
        &certs.client_key,
    ));
    assert!(uses_tls(&mut client));
    let presented: bool = client
        .query_one(
            "SELECT client_dn IS NOT NULL FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(presented, "the server saw the client certificate");

    let err = connect_err(&base());
    assert_eq!(err.kind(), ConnectErrorKind::ClientCertificate, "{err}");
    assert!(
        err.to_string()
            .contains("the server requires a client certificate")
            && err.to_string().contains("set sslcert and sslkey"),
        "{err}"
    );

    let err = connect_err(&with_client_cert(
        base(),
        &certs.stranger_cert,
        &certs.stranger_key,
    ));
    assert_eq!(err.kind(), ConnectErrorKind::ClientCertificate, "{err}");
    assert!(
        err.to_string()
            .contains("the server refused the client certificate"),
        "{err}"
    );

    let err = connect_err(&with_client_cert(
        base(),
        &certs.client_cert,
        &certs.loose_client_key,
    ));
    assert_eq!(err.kind(), ConnectErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains(&format!(
            "the client key {} (sslkey) is accessible by group or others (mode 0640): run `chmod 600 {}`",
            certs.loose_client_key.display(),
            certs.loose_client_key.display()
        )),
        "{err}"
    );
}

#[test]
fn a_revocation_list_refuses_a_revoked_server_certificate() {
    let certs = certs();
    let with_crl = |crl: &Path, mode| {
        let mut server = server(
            tls_sandbox(),
            "localhost",
            mode,
            Some(&certs.ca),
            Some(PASSWORD),
        );
        server.sslcrl = Some(crl.to_owned());
        server
    };
    for mode in [SslMode::VerifyFull, SslMode::VerifyCa, SslMode::Require] {
        let err = connect_err(&with_crl(&certs.crl_revoking_server, mode));
        assert_eq!(
            err.kind(),
            ConnectErrorKind::RevokedCertificate,
            "{mode}: {err}"
        );
        assert!(
            err.to_string()
                .contains("the server certificate is revoked by the list in")
                && err.to_string().contains("revokes-server.crl (sslcrl)"),
            "{err}"
        );
        assert!(!err.retryable());
        let mut client = connect_ok(&with_crl(&certs.crl_of_others, mode));
        assert!(uses_tls(&mut client));
    }
}

#[test]
fn pgpass_gives_each_host_its_password() {
    let sandbox = tls_sandbox();
    let port = sandbox.cluster().port();
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    fs::write(
        &pgpass,
        format!(
            "# the first matching line wins\n\
             127.0.0.1:{port}:postgres:postgres:wrong-for-this-host\n\
             localhost:{port}:*:postgres:{}\n\
             *:*:*:*:wrong-everywhere-else\n",
            PASSWORD.replace(':', "\\:")
        ),
    )
    .unwrap();
    fs::set_permissions(&pgpass, fs::Permissions::from_mode(0o600)).unwrap();
    let body = format!(
        "[database]\nhost = \"localhost\"\nport = {port}\nuser = \"postgres\"\ndbname = \"postgres\"\nsslmode = \"require\"\npassfile = \"{}\"\n",
        pgpass.display()
    );
    let flags = Flags::default();
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_dir("environments")?;
        jail.create_file("environments/staging.toml", &body)?;
        let load = || {
            ecomind_config::load(&LoadOptions {
                env: "staging",
                environments_dir: None,
                flags: &flags,
            })
            .map_err(|err| err.to_string())
        };
        let Target::Server(server) = load()?.target else {
            return Err("expected a server".into());
        };
        let mut client = server.connect(APP).map_err(|err| err.to_string())?;
        assert!(uses_tls(&mut client));
        // 127.0.0.1 matches the line with the wrong password, which is named.
        jail.set_env("PGHOST", "127.0.0.1");
        let Target::Server(server) = load()?.target else {
            return Err("expected a server".into());
        };
        let Err(err) = server.connect(APP) else {
            return Err("connected with the wrong password".into());
        };
        let err = err.to_string();
        assert!(
            err.contains(&format!(
                "check the password from line 2 of {}",
                pgpass.display()
            )),
            "{err}"
        );
        assert!(!err.contains("wrong-for-this-host"), "{err}");
        Ok(())
    });
}

#[test]
fn several_hosts_are_tried_in_order_each_on_its_port() {
    let sandbox = plain_sandbox();
    let closed = std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = server(sandbox, "127.0.0.1", SslMode::Disable, None, None);
    server.hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    server.ports = vec![closed, sandbox.cluster().port()];
    let mut client = connect_ok(&server);
    let port: i32 = client
        .query_one("SELECT current_setting('port')::int", &[])
        .unwrap()
        .get(0);
    assert_eq!(port, i32::from(sandbox.cluster().port()));

    // When every host fails, each one's reason is given, in order.
    server.ports = vec![closed, closed];
    let err = connect_err(&server);
    assert!(err.retryable());
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "no host was usable (postgres@127.0.0.1:{closed}/postgres: connection refused"
        )) && message.contains(&format!("; postgres@localhost:{closed}/postgres: ")),
        "{message}"
    );
}

/// A primary (plain TCP, trust) and a streaming replica of it.
fn primary_and_standby() -> &'static (Sandbox, Sandbox) {
    static PAIR: OnceLock<(Sandbox, Sandbox)> = OnceLock::new();
    PAIR.get_or_init(|| {
        let mut pair = None;
        Jail::expect_with(|_| {
            let binaries = binaries();
            let opts = ClusterOptions {
                binaries: &binaries,
                listen: Listen::Tcp { port: 0 },
                auth: Auth::Trust,
                durable: false,
                settings: &[],
            };
            let primary = Sandbox::start(&opts)
                .unwrap_or_else(|err| panic!("cannot start the primary: {err}"));
            let standby = primary
                .start_standby(&opts)
                .unwrap_or_else(|err| panic!("cannot start the standby: {err}"));
            pair = Some((primary, standby));
            Ok(())
        });
        pair.expect("the pair started")
    })
}

fn in_recovery(client: &mut postgres::Client) -> bool {
    client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0)
}

#[test]
fn read_write_skips_a_standby_listed_first_and_refuses_a_standby_alone() {
    let (primary, standby) = primary_and_standby();
    let mut server = server(standby, "127.0.0.1", SslMode::Disable, None, None);
    // The replica really is one: it is in recovery and streams from the primary.
    assert!(in_recovery(&mut connect_ok(&server)));

    server.hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    server.ports = vec![standby.cluster().port(), primary.cluster().port()];
    server.target_session_attrs = TargetSessionAttrs::ReadWrite;
    let mut client = connect_ok(&server);
    assert!(!in_recovery(&mut client), "read-write reached the primary");

    server.hosts.truncate(1);
    server.ports.truncate(1);
    let err = connect_err(&server);
    assert_eq!(err.kind(), ConnectErrorKind::ReadOnly, "{err}");
    assert!(!err.retryable());
    assert_eq!(
        err.to_string(),
        format!(
            "cannot connect to postgres@127.0.0.1:{}/postgres: the server accepts no writes (a standby, or default_transaction_read_only is on) and target_session_attrs is read-write: list the primary among the hosts",
            standby.cluster().port()
        )
    );
}
