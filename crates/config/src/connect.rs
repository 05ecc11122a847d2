//! Opens connections: the one place a password is exposed, TLS per `sslmode`
//! (rustls), and errors that say what to do and never carry the password.

use std::{
    error::Error as _,
    fmt, io,
    os::unix::fs::PermissionsExt,
    path::Path,
    sync::{mpsc, Arc},
    thread,
    time::Duration,
};

use postgres::{
    config::{SslMode as PgSslMode, TargetSessionAttrs as PgTargetSessionAttrs},
    error::SqlState,
    NoTls,
};
use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        WebPkiServerVerifier,
    },
    crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider},
    pki_types::{
        pem::PemObject, CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName,
        UnixTime,
    },
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use secrecy::ExposeSecret;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Server, SslMode, TargetSessionAttrs};

/// Silence on a TCP connection before the first keepalive probe.
const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
/// Time between unanswered keepalive probes.
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered keepalive probes after which the connection is dropped.
const KEEPALIVES_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the connection is dropped (Linux).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// How one connection attempt ended without a client.
enum Attempt {
    /// The postgres crate reported an error.
    Failed(postgres::Error),
    /// `connect_timeout` passed first.
    TimedOut,
}

/// What kind of failure a [`ConnectError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// Nothing listens on the port (connection refused).
    Refused,
    /// The unix socket file does not exist.
    NoSocket,
    /// The connection attempt ran into `connect_timeout`.
    Timeout,
    /// The host name does not resolve or the network is unreachable.
    Unreachable,
    /// The server is starting up or shutting down (SQLSTATE 57P03).
    Starting,
    /// The server has no free connection slots (SQLSTATE 53300).
    TooManyConnections,
    /// The connection broke during start-up.
    Interrupted,
    /// Wrong password, or a password is needed and none is configured.
    Authentication,
    /// `pg_hba.conf` or role settings refuse this login.
    Rejected,
    /// The database does not exist.
    NoDatabase,
    /// `target_session_attrs` is `read-write` and the server accepts no writes (a standby).
    ReadOnly,
    /// The server requires a client certificate (or refused the one presented).
    ClientCertificate,
    /// The server certificate is on a revocation list (`sslcrl`).
    RevokedCertificate,
    /// The server does not accept TLS but `sslmode` requires it.
    TlsUnsupported,
    /// The server certificate is not signed by the configured CA.
    UntrustedCertificate,
    /// The server certificate does not name the host connected to.
    HostNameMismatch,
    /// Another TLS failure.
    Tls,
    /// The local configuration cannot be used (for example an unreadable CA file).
    Config,
    /// Anything else the server reported.
    Other,
}

/// Why [`Server::connect`] failed. `Display` is one sentence that says what
/// to do; it never contains the password.
#[derive(Clone)]
pub struct ConnectError {
    kind: ConnectErrorKind,
    message: String,
    /// `user@host:port/dbname` of the attempt.
    target: String,
    /// The reason alone, without the target.
    what: String,
    /// For a failure of several hosts: whether any of them is worth retrying.
    retryable_override: Option<bool>,
}

impl ConnectError {
    /// The kind of failure.
    pub fn kind(&self) -> ConnectErrorKind {
        self.kind
    }

    /// True when the server is not (yet) accepting connections and trying
    /// again later may succeed: refused, no socket file, timeout, unreachable,
    /// starting up, too many connections, interrupted start-up. False for
    /// authentication, TLS and configuration errors.
    pub fn retryable(&self) -> bool {
        if let Some(retryable) = self.retryable_override {
            return retryable;
        }
        matches!(
            self.kind,
            ConnectErrorKind::Refused
                | ConnectErrorKind::NoSocket
                | ConnectErrorKind::Timeout
                | ConnectErrorKind::Unreachable
                | ConnectErrorKind::Starting
                | ConnectErrorKind::TooManyConnections
                | ConnectErrorKind::Interrupted
        )
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl std::error::Error for ConnectError {}

impl Server {
    /// Connects, trying each host in order. Sets `application_name` and
    /// `connect_timeout`; TLS follows `sslmode` (never on unix sockets, as in
    /// libpq); TCP connections get keepalives, so a dead peer is noticed in a
    /// minute or two. This is the one place the password is exposed.
    ///
    /// Each attempt, TLS and authentication included, must fit in
    /// `connect_timeout`. A zero `connect_timeout` means no limit, as in
    /// libpq: a host that drops packets then fails only when the operating
    /// system gives up (about two minutes on Linux), and a server that
    /// accepts the connection but never answers keeps this call waiting for
    /// ever. Only set it to zero when that is wanted.
    pub fn connect(&self, application_name: &str) -> Result<postgres::Client, ConnectError> {
        let tls =
            tls_config(self).map_err(|message| self.error(ConnectErrorKind::Config, &message))?;
        let mut failures = Vec::new();
        for index in 0..self.hosts.len() {
            let one = self.one_host(index);
            let host = &one.hosts[0];
            let socket = host.starts_with('/');
            let config = one.pg_config(host, application_name, tls.is_some());
            let tls = if socket { None } else { tls.clone() };
            match one.attempt(config, tls) {
                Ok(client) => return Ok(client),
                Err(Attempt::Failed(err)) => failures.push(one.classify(&err, host, socket)),
                Err(Attempt::TimedOut) => {
                    failures.push(one.error(
                        ConnectErrorKind::Timeout,
                        &format!(
                            "the server at {host} did not complete the connection within connect_timeout ({}): check that it is up and not overloaded, or raise connect_timeout",
                            humanize(self.connect_timeout)
                        ),
                    ));
                }
            }
        }
        match failures.len() {
            0 => Err(self.error(ConnectErrorKind::Config, "no host is configured: set `host` in the environment file, ECOMIND_DB_HOST or PGHOST")),
            1 => Err(failures.remove(0)),
            _ => {
                // Every host failed: say why for each, in order; the last decides the kind.
                let reasons: Vec<String> = failures
                    .iter()
                    .map(|failure| format!("{}: {}", failure.target, failure.what))
                    .collect();
                let last = failures.pop().expect("several failures");
                let mut error = self.error(
                    last.kind,
                    &format!("no host was usable ({})", reasons.join("; ")),
                );
                error.retryable_override = Some(
                    last.retryable() || failures.iter().any(ConnectError::retryable),
                );
                Err(error)
            }
        }
    }

    /// This server narrowed to the host at `index`, with that host's port and
    /// password (from the password file when nothing else gives one).
    fn one_host(&self, index: usize) -> Server {
        let mut one = self.clone();
        one.hosts = vec![self.hosts[index].clone()];
        one.ports = vec![self.port_of(index)];
        if one.password.is_none() {
            if let Some((password, origin)) = self.passfile.as_ref().and_then(|passfile| {
                passfile.lookup(&one.hosts[0], one.ports[0], &one.dbname, &one.user)
            }) {
                one.password = Some(password);
                one.password_origin = Some(origin);
            }
        }
        one
    }

    /// The `postgres` configuration of one attempt on `host`; `tls` says
    /// whether a TLS connector is available for TCP hosts.
    ///
    /// TCP connections get keepalives (first probe after [`KEEPALIVES_IDLE`]
    /// of silence, then every [`KEEPALIVES_INTERVAL`], given up after
    /// [`KEEPALIVES_RETRIES`] unanswered probes) and a [`TCP_USER_TIMEOUT`]
    /// for unacknowledged data, so a connection silently dropped by a
    /// failover or a firewall fails within a minute or two instead of blocking
    /// a statement for the kernel's two hours. A live server answers probes,
    /// so long statements are not affected. Unix sockets need none of this.
    ///
    /// A zero `connect_timeout` sets no limit, as in libpq.
    fn pg_config(&self, host: &str, application_name: &str, tls: bool) -> postgres::Config {
        let mut config = postgres::Config::new();
        config
            .user(&self.user)
            .dbname(&self.dbname)
            .port(self.port_of(0))
            .application_name(application_name)
            .target_session_attrs(match self.target_session_attrs {
                TargetSessionAttrs::Any => PgTargetSessionAttrs::Any,
                TargetSessionAttrs::ReadWrite => PgTargetSessionAttrs::ReadWrite,
            });
        if !self.connect_timeout.is_zero() {
            config.connect_timeout(self.connect_timeout);
        }
        if let Some(password) = &self.password {
            config.password(password.expose_secret());
        }
        if host.starts_with('/') {
            config.host_path(host).ssl_mode(PgSslMode::Disable);
        } else {
            config
                .host(host)
                .keepalives(true)
                .keepalives_idle(KEEPALIVES_IDLE)
                .keepalives_interval(KEEPALIVES_INTERVAL)
                .keepalives_retries(KEEPALIVES_RETRIES)
                .tcp_user_timeout(TCP_USER_TIMEOUT);
            match (tls, self.sslmode) {
                (false, _) => config.ssl_mode(PgSslMode::Disable),
                (true, SslMode::Prefer) => config.ssl_mode(PgSslMode::Prefer),
                (true, _) => config.ssl_mode(PgSslMode::Require),
            };
        }
        config
    }

    /// One connection attempt. The `postgres` crate bounds only the TCP
    /// connect with `connect_timeout`; like libpq, the whole start-up (TLS,
    /// authentication) must fit in it too, so the attempt runs on a thread
    /// and is abandoned when the time is up (its socket closes when the
    /// server finally answers or the process ends).
    fn attempt(
        &self,
        config: postgres::Config,
        tls: Option<MakeRustlsConnect>,
    ) -> Result<postgres::Client, Attempt> {
        let run = move || match tls {
            Some(tls) => config.connect(tls),
            None => config.connect(NoTls),
        };
        if self.connect_timeout.is_zero() {
            return run().map_err(Attempt::Failed);
        }
        let (sender, receiver) = mpsc::channel();
        let spawned = thread::Builder::new()
            .name("ecomind-db-connect".to_owned())
            .spawn(move || {
                // The receiver is gone when the attempt was abandoned; the client is then dropped.
                let _ = sender.send(run());
            });
        if spawned.is_err() {
            return Err(Attempt::TimedOut);
        }
        match receiver.recv_timeout(self.connect_timeout) {
            Ok(result) => result.map_err(Attempt::Failed),
            Err(_) => Err(Attempt::TimedOut),
        }
    }

    fn error(&self, kind: ConnectErrorKind, what: &str) -> ConnectError {
        let target = self.describe();
        let what = self.scrub(what.to_owned());
        ConnectError {
            kind,
            message: format!("cannot connect to {target}: {what}"),
            target,
            what,
            retryable_override: None,
        }
    }

    /// Removes the password from text that came from elsewhere.
    fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(password) if !password.expose_secret().is_empty() => {
                text.replace(password.expose_secret(), "[redacted]")
            }
            _ => text,
        }
    }

    fn classify(&self, err: &postgres::Error, host: &str, socket: bool) -> ConnectError {
        use ConnectErrorKind as K;
        if let Some(db) = err.as_db_error() {
            let server_says = db.message();
            let code = db.code().clone();
            let (kind, what) = if code == SqlState::CANNOT_CONNECT_NOW {
                (K::Starting, format!("the server is starting up or shutting down ({server_says}): try again in a moment"))
            } else if code == SqlState::TOO_MANY_CONNECTIONS {
                (
                    K::TooManyConnections,
                    format!("{server_says}: close idle sessions or raise max_connections"),
                )
            } else if code == SqlState::INVALID_PASSWORD {
                let source = self
                    .password_origin
                    .as_deref()
                    .unwrap_or("no password source");
                (
                    K::Authentication,
                    format!("password authentication failed for user \"{}\": check the password from {source}", self.user),
                )
            } else if code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                && server_says.contains("certificate")
            {
                let what = if self.sslcert.is_some() {
                    format!("the server refuses the client certificate ({server_says}): its common name must be the user name \"{}\" and a CA in the server's ssl_ca_file must have signed it", self.user)
                } else {
                    format!("the server requires a client certificate ({server_says}): set sslcert and sslkey (or PGSSLCERT and PGSSLKEY)")
                };
                (K::ClientCertificate, what)
            } else if code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                (K::Rejected, format!("the server refuses this login ({server_says}): check pg_hba.conf, the user name and sslmode"))
            } else if code == SqlState::INVALID_CATALOG_NAME {
                (
                    K::NoDatabase,
                    format!("{server_says}: create the database or fix `dbname`"),
                )
            } else {
                (
                    K::Other,
                    format!(
                        "the server refused the connection: {server_says} (SQLSTATE {})",
                        code.code()
                    ),
                )
            };
            return self.error(kind, &what);
        }
        let top = err.to_string();
        let cause = err.source().map(ToString::to_string).unwrap_or_default();
        let io = err
            .source()
            .and_then(|source| source.downcast_ref::<io::Error>());
        if top.starts_with("error performing TLS handshake") {
            if cause.contains("server does not support TLS") {
                return self.error(
                    K::TlsUnsupported,
                    &format!(
                        "the server does not accept TLS but sslmode is {}: enable ssl on the server, or lower sslmode only for a trusted network",
                        self.sslmode
                    ),
                );
            }
            let rustls_error = io
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            if let Some(rustls::Error::InvalidCertificate(cert)) = rustls_error {
                let ca = self.sslrootcert.as_deref().map_or_else(
                    || "the configured CA".to_owned(),
                    |p| p.display().to_string(),
                );
                return match cert {
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => self.error(
                        K::HostNameMismatch,
                        &format!(
                            "the server certificate is not valid for host name \"{host}\" (sslmode verify-full): connect with a name the certificate lists, or fix the certificate"
                        ),
                    ),
                    CertificateError::Revoked => self.error(
                        K::RevokedCertificate,
                        &format!("the server certificate is revoked by the list in {} (sslcrl): the server needs a new certificate", self.sslcrl.as_deref().map_or_else(|| "sslcrl".to_owned(), |p| p.display().to_string())),
                    ),
                    CertificateError::UnknownIssuer | CertificateError::BadSignature => self.error(
                        K::UntrustedCertificate,
                        &format!("the server certificate is not signed by a CA in {ca} (sslrootcert): point sslrootcert at the CA that signed the server certificate"),
                    ),
                    other => self.error(K::UntrustedCertificate, &format!("the server certificate was refused ({other:?}): check sslrootcert and the server certificate")),
                };
            }
            if let Some(rustls::Error::AlertReceived(alert)) = rustls_error {
                if self.sslcert.is_some() {
                    return self.error(
                        K::ClientCertificate,
                        &format!("the server refused the client certificate {} (TLS alert {alert:?}): it must be signed by a CA in the server's ssl_ca_file", self.sslcert.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default()),
                    );
                }
            }
            return self.error(K::Tls, &format!("TLS handshake failed: {cause}"));
        }
        if top.starts_with("invalid configuration")
            && cause.contains("password missing")
            && self.password.is_none()
        {
            return self.error(
                K::Authentication,
                "the server asks for a password but none is configured: set ECOMIND_DB_PASSWORD_FILE, `password_file` in the environment file, ECOMIND_DB_PASSWORD or PGPASSWORD",
            );
        }
        if top.starts_with("authentication error") {
            let what = if self.password.is_none() {
                "the server asks for a password but none is configured: set ECOMIND_DB_PASSWORD_FILE, `password_file` in the environment file, ECOMIND_DB_PASSWORD or PGPASSWORD".to_owned()
            } else {
                format!("authentication failed: {cause}")
            };
            return self.error(K::Authentication, &what);
        }
        if top.starts_with("timeout waiting for server") {
            return self.error(
                K::Timeout,
                "the server did not answer in time: check that it is up, or raise connect_timeout",
            );
        }
        // With TLS 1.3 the server's verdict on a client certificate arrives after the handshake.
        let alert = io
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if let (Some(rustls::Error::AlertReceived(alert)), Some(cert)) = (alert, &self.sslcert) {
            return self.error(
                K::ClientCertificate,
                &format!("the server refused the client certificate {} (TLS alert {alert:?}): it must be signed by a CA in the server's ssl_ca_file", cert.display()),
            );
        }
        if io.is_some_and(|io| io.to_string() == "database does not allow writes") {
            return self.error(
                K::ReadOnly,
                "the server accepts no writes (a standby, or default_transaction_read_only is on) and target_session_attrs is read-write: list the primary among the hosts",
            );
        }
        if let Some(io) = io {
            let timeout = humanize(self.connect_timeout);
            let (kind, what) = match io.kind() {
                io::ErrorKind::ConnectionRefused => (
                    K::Refused,
                    "connection refused: is the server running and accepting TCP connections on that host and port?".to_owned(),
                ),
                io::ErrorKind::NotFound if socket => (
                    K::NoSocket,
                    format!("no socket file in {host} for port {}: is the server running there?", self.port_of(0)),
                ),
                io::ErrorKind::TimedOut if self.connect_timeout.is_zero() => (
                    K::Timeout,
                    "no answer before the operating system gave up (connect_timeout is 0, no limit of its own): check the host, the port and any firewall in between".to_owned(),
                ),
                io::ErrorKind::TimedOut => (
                    K::Timeout,
                    format!("no answer within connect_timeout ({timeout}): check the host, the port and any firewall in between"),
                ),
                io::ErrorKind::PermissionDenied => (K::Config, format!("permission denied ({io}): check access to the socket folder")),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => (
                    K::Interrupted,
                    format!("the connection broke during start-up ({io}): the server may be restarting, try again"),
                ),
                _ if top.starts_with("error connecting to server") => (
                    K::Unreachable,
                    format!("host {host} cannot be reached ({io}): check the host name and the network"),
                ),
                _ => (K::Interrupted, format!("{top}: {io}")),
            };
            return self.error(kind, &what);
        }
        if err.is_closed() {
            return self.error(
                K::Interrupted,
                "the server closed the connection during start-up: it may be restarting, try again",
            );
        }
        self.error(
            K::Other,
            &format!(
                "{top}{}",
                if cause.is_empty() {
                    String::new()
                } else {
                    format!(": {cause}")
                }
            ),
        )
    }
}

fn humanize(duration: Duration) -> String {
    if duration.is_zero() {
        "none".to_owned()
    } else if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// Where `sslrootcert = "system"` looks for the operating system's CA bundle.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let path = if path == Path::new("system") {
        SYSTEM_BUNDLES
            .iter()
            .map(Path::new)
            .find(|bundle| bundle.is_file())
            .ok_or_else(|| "sslrootcert is \"system\" but no CA bundle was found: install ca-certificates or give a PEM file".to_owned())?
    } else {
        path
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| {
            format!(
                "cannot read the CA file {} (sslrootcert): {err}",
                path.display()
            )
        })?;
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("the CA file {} (sslrootcert) holds no usable certificate: give a PEM file with the CA certificate", path.display()));
    }
    Ok(roots)
}

/// Reads the revocation lists in `path` (PEM, one or more `X509 CRL` blocks).
fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| {
            format!(
                "cannot read the revocation list {} (sslcrl): {err}",
                path.display()
            )
        })?;
    if crls.is_empty() {
        return Err(format!(
            "the file {} (sslcrl) holds no revocation list: give a PEM file with `X509 CRL` blocks",
            path.display()
        ));
    }
    Ok(crls)
}

/// Reads the client certificate chain and its key. As libpq, the key is
/// refused when group or others can access it.
fn load_client_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| {
            format!(
                "cannot read the client certificate {} (sslcert): {err}",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "the file {} (sslcert) holds no certificate: give the client certificate as PEM",
            cert.display()
        ));
    }
    let metadata = std::fs::metadata(key).map_err(|err| {
        format!(
            "cannot read the client key {} (sslkey): {err}",
            key.display()
        )
    })?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the client key {} (sslkey) is accessible by group or others (mode {mode:04o}): run `chmod 600 {}`",
            key.display(),
            key.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|err| {
        format!(
            "cannot read the client key {} (sslkey): {err}",
            key.display()
        )
    })?;
    Ok((chain, private))
}

fn tls_config(server: &Server) -> Result<Option<MakeRustlsConnect>, String> {
    if server.sslmode == SslMode::Disable || server.hosts.iter().all(|host| host.starts_with('/')) {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match (&server.sslrootcert, server.sslmode) {
        (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
            return Err(format!(
                "sslmode {} needs sslrootcert: set it to the CA's PEM file, or to \"system\"",
                server.sslmode
            ));
        }
        // As libpq: without a CA file, prefer and require encrypt but do not verify.
        (None, _) => Arc::new(AcceptAnyCertificate(provider.clone())),
        (Some(path), mode) => {
            let roots = load_roots(path)?;
            let mut builder =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if let Some(crl) = &server.sslcrl {
                builder = builder.with_crls(load_crls(crl)?);
            }
            let webpki = builder
                .build()
                .map_err(|err| format!("cannot use the CA file {}: {err}", path.display()))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                // As libpq: with a CA file, prefer, require and verify-ca check the chain but not the name.
                Arc::new(IgnoreHostName(webpki))
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS setup failed: {err}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&server.sslcert, &server.sslkey) {
        (Some(cert), Some(key)) => {
            let (chain, private) = load_client_identity(cert, key)?;
            config
                .with_client_auth_cert(chain, private)
                .map_err(|err| {
                    format!(
                    "the client certificate {} does not fit its key {} (sslcert, sslkey): {err}",
                    cert.display(),
                    key.display()
                )
                })?
        }
        _ => config.with_no_client_auth(),
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// `prefer`/`require` without a CA: the channel is encrypted, the peer is not authenticated.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the CA; the host name is not checked.
#[derive(Debug)]
struct IgnoreHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Duration};

    use secrecy::SecretString;

    use super::*;

    fn server(host: &str, connect_timeout: Duration) -> Server {
        let mut server = Server::local_socket(Path::new("/unused"), 5432, "app", "eco")
            .with_password(SecretString::from("pw"), "test");
        server.hosts = vec![host.to_owned()];
        server.sslmode = SslMode::Require;
        server.connect_timeout = connect_timeout;
        server
    }

    /// A connection dropped silently (failover, firewall) must fail within
    /// minutes, not after the kernel's two hours of idle time.
    #[test]
    fn tcp_connections_get_keepalives_and_a_user_timeout() {
        for (host, tls) in [("db.example", true), ("10.0.0.1", false), ("::1", true)] {
            let config = server(host, Duration::from_secs(10)).pg_config(host, "app", tls);
            assert!(config.get_keepalives(), "{host}");
            assert_eq!(
                config.get_keepalives_idle(),
                Duration::from_secs(30),
                "{host}"
            );
            assert_eq!(
                config.get_keepalives_interval(),
                Some(Duration::from_secs(10)),
                "{host}"
            );
            assert_eq!(config.get_keepalives_retries(), Some(3), "{host}");
            assert_eq!(
                config.get_tcp_user_timeout(),
                Some(&Duration::from_secs(60)),
                "{host}"
            );
            assert_eq!(
                config.get_connect_timeout(),
                Some(&Duration::from_secs(10)),
                "{host}"
            );
            let expected = if tls {
                PgSslMode::Require
            } else {
                PgSslMode::Disable
            };
            assert_eq!(config.get_ssl_mode(), expected, "{host}");
        }
    }

    #[test]
    fn unix_sockets_get_no_tcp_settings_and_no_tls() {
        let config = server("/run/pg", Duration::from_secs(10)).pg_config("/run/pg", "app", true);
        assert_eq!(config.get_tcp_user_timeout(), None);
        assert_eq!(config.get_keepalives_interval(), None);
        assert_eq!(config.get_keepalives_retries(), None);
        assert_eq!(config.get_ssl_mode(), PgSslMode::Disable);
    }

    /// `connect_timeout = "0"` is libpq's "no limit": no timeout is set at all.
    #[test]
    fn a_zero_connect_timeout_sets_no_limit() {
        let config = server("db.example", Duration::ZERO).pg_config("db.example", "app", true);
        assert_eq!(config.get_connect_timeout(), None);
        assert!(config.get_keepalives());
    }
}
