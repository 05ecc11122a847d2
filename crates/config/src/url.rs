//! Parses `DATABASE_URL` (`postgres://user:password@host:port/dbname?sslmode=...`)
//! without ever putting the URL or its password in an error.

use secrecy::{ExposeSecret, SecretString};

use figment::value::Value;

use crate::{
    schema::{self, Kind, Raw},
    Error,
};

/// The parts of a connection URL; values are still text, validated by [`values`].
#[derive(Default)]
pub(crate) struct UrlParts {
    /// `(dotted key, value)` for every non-secret setting the URL gives.
    pub settings: Vec<(&'static str, String)>,
    /// The password, if the URL carries one.
    pub password: Option<SecretString>,
}

/// The refusal when the user name or password was not percent-encoded.
const UNENCODED_CREDENTIALS: &str = "an `@` follows the host part, so the user name or password holds a character that must be percent-encoded: write `/` as %2F, `?` as %3F, `#` as %23, `@` as %40 and `:` as %3A in the user name and password (and `@` as %40 in parameter values)";

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidUrl {
        reason: reason.into(),
    }
}

fn decode(text: &str, what: &str) -> Result<String, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "the {what} has a bad percent-escape: write `%` as `%25`"
                    ))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        invalid(format!(
            "the {what} is not valid UTF-8 after percent-decoding"
        ))
    })
}

/// The query parameters a URL may carry.
const PARAMETERS: &[&str] = &[
    "host",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "sslcert",
    "sslkey",
    "sslcrl",
    "target_session_attrs",
    "passfile",
    "application_name",
];

/// Validates the URL's settings for figment. Unlike values from files and
/// variables, a bad value is not echoed: a mis-split URL can put part of the
/// password into any of them.
pub(crate) fn values(parts: &UrlParts) -> Result<Vec<(&'static str, Value)>, Error> {
    let mut values = Vec::with_capacity(parts.settings.len());
    for (dotted, text) in &parts.settings {
        let key = schema::key(dotted).expect("URL keys are known");
        let value = schema::validate(key, Raw::Text(text), "env DATABASE_URL").map_err(|_| {
            let (what, expected) = match key.kind {
                Kind::Text => (dotted.trim_start_matches("database."), "a non-empty name"),
                Kind::Path => (dotted.trim_start_matches("database."), "a non-empty path"),
                kind => (
                    dotted.trim_start_matches("database."),
                    schema::expected(kind),
                ),
            };
            invalid(format!("its {what} is not valid: use {expected}"))
        })?;
        values.push((key.name, value));
    }
    Ok(values)
}

/// Parses a `postgres://` or `postgresql://` URL.
pub(crate) fn parse(url: &SecretString) -> Result<UrlParts, Error> {
    let url = url.expose_secret().trim();
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or_else(|| invalid("it must start with postgres:// or postgresql://"))?;
    let mut parts = UrlParts::default();

    // libpq's rule: credentials end at the first `@` that comes before any `/`.
    let credentials_end = rest
        .find(['@', '/'])
        .filter(|&at| rest.as_bytes()[at] == b'@');
    let rest = match credentials_end {
        Some(at) => {
            let userinfo = &rest[..at];
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                parts
                    .settings
                    .push(("database.user", decode(user, "user name")?));
            }
            if let Some(password) = password {
                if !password.is_empty() {
                    parts.password = Some(SecretString::from(decode(password, "password")?));
                }
            }
            &rest[at + 1..]
        }
        None => rest,
    };
    // Whatever follows the credentials becomes host, port, database name and
    // parameters, all of which are shown in messages and by `config show`. A
    // literal `@` there means the credentials were cut short by an unencoded
    // `/` (or `@`) in them, so part of the password would be shown: refuse,
    // without saying anything about the values.
    if rest.contains('@') {
        return Err(invalid(UNENCODED_CREDENTIALS));
    }

    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    if !authority.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for spec in authority.split(',') {
            let (host, port) = if let Some(v6) = spec.strip_prefix('[') {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| invalid("an IPv6 host lacks its closing `]`"))?;
                (host, after.strip_prefix(':'))
            } else {
                match spec.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (spec, None),
                }
            };
            if !host.is_empty() {
                hosts.push(decode(host, "host")?);
            }
            ports.push(port.filter(|port| !port.is_empty()));
        }
        if !hosts.is_empty() {
            parts.settings.push(("database.host", hosts.join(",")));
        }
        // Each host has its own port; as in libpq, a host without one gets 5432.
        let given: Vec<&str> = ports.iter().flatten().copied().collect();
        let first = given.first().copied();
        if given.len() == ports.len() && given.iter().all(|port| Some(*port) == first) {
            if let Some(port) = first {
                parts.settings.push(("database.port", port.to_owned()));
            }
        } else if !given.is_empty() {
            let list: Vec<&str> = ports.iter().map(|port| port.unwrap_or("5432")).collect();
            parts.settings.push(("database.port", list.join(",")));
        }
    }

    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let dbname = path.strip_prefix('/').unwrap_or(path);
    if !dbname.is_empty() {
        parts
            .settings
            .push(("database.dbname", decode(dbname, "database name")?));
    }
    for (position, pair) in query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter(|pair| !pair.is_empty())
        .enumerate()
    {
        // Nothing of the query is echoed: with a password in `?password=` that
        // holds an unencoded `&`, any later name or value may be part of it.
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            invalid(format!(
                "query parameter {} lacks `=value`: write name=value pairs separated by `&`",
                position + 1
            ))
        })?;
        let name = decode(name, "name of a query parameter")?;
        if name == "password" {
            parts.password = Some(SecretString::from(decode(value, "password")?));
            continue;
        }
        let key = match name.as_str() {
            "host" => "database.host",
            "port" => "database.port",
            "dbname" => "database.dbname",
            "user" => "database.user",
            "sslmode" => "database.sslmode",
            "sslrootcert" => "database.sslrootcert",
            "connect_timeout" => "database.connect_timeout",
            "sslcert" => "database.sslcert",
            "sslkey" => "database.sslkey",
            "sslcrl" => "database.sslcrl",
            "target_session_attrs" => "database.target_session_attrs",
            "passfile" => "database.passfile",
            "application_name" => continue,
            _ => {
                let suggestion = schema::closest(&name, PARAMETERS.iter().copied())
                    .map(|near| format!(" (did you mean `{near}`?)"))
                    .unwrap_or_default();
                return Err(invalid(format!(
                    "query parameter {} is not supported{suggestion}: use {}",
                    position + 1,
                    PARAMETERS.join(", ")
                )));
            }
        };
        let value = decode(value, &format!("value of `{name}`"))?;
        let value = if key == "database.connect_timeout" {
            let seconds: u64 = value.trim().parse().map_err(|_| {
                invalid("connect_timeout is not a whole number of seconds: write it as connect_timeout=10")
            })?;
            format!("{seconds}s")
        } else {
            value
        };
        parts.settings.retain(|(existing, _)| *existing != key);
        parts.settings.push((key, value));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, settings: &[(&str, &str)], password: Option<&str>) {
        let parts = parse(&SecretString::from(url)).unwrap_or_else(|err| panic!("{url}: {err}"));
        let got: Vec<(&str, &str)> = parts
            .settings
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        assert_eq!(got, settings, "{url}");
        assert_eq!(
            parts.password.as_ref().map(|p| p.expose_secret()),
            password,
            "{url}"
        );
    }

    #[test]
    fn parses() {
        check(
            "postgres://app:p%40ss@db.example:6432/eco?sslmode=verify-full&connect_timeout=3",
            &[
                ("database.user", "app"),
                ("database.host", "db.example"),
                ("database.port", "6432"),
                ("database.dbname", "eco"),
                ("database.sslmode", "verify-full"),
                ("database.connect_timeout", "3s"),
            ],
            Some("p@ss"),
        );
        check(
            "postgresql://[::1]:5433/x",
            &[
                ("database.host", "::1"),
                ("database.port", "5433"),
                ("database.dbname", "x"),
            ],
            None,
        );
        check(
            "postgres://a:7,b:7/d",
            &[
                ("database.host", "a,b"),
                ("database.port", "7"),
                ("database.dbname", "d"),
            ],
            None,
        );
        check(
            "postgres://a:5432,b:5433/d?target_session_attrs=read-write",
            &[
                ("database.host", "a,b"),
                ("database.port", "5432,5433"),
                ("database.dbname", "d"),
                ("database.target_session_attrs", "read-write"),
            ],
            None,
        );
        check(
            "postgres://a,b:5433/d",
            &[
                ("database.host", "a,b"),
                ("database.port", "5432,5433"),
                ("database.dbname", "d"),
            ],
            None,
        );
        check(
            "postgres:///d?host=/run/pg",
            &[("database.dbname", "d"), ("database.host", "/run/pg")],
            None,
        );
        check(
            "postgres://u@h",
            &[("database.user", "u"), ("database.host", "h")],
            None,
        );
    }

    #[test]
    fn errors_never_show_the_url() {
        // (URL, texts that must not appear: the password or pieces of it).
        let cases: &[(&str, &[&str])] = &[
            ("mysql://u:hunter2pw@h/d", &["hunter2pw"]),
            ("postgres://u:hunter2pw@h/d?sslmod=require", &["hunter2pw"]),
            ("postgres://u:hunter2pw%zz@h/d", &["hunter2pw"]),
            ("postgres://u:hunter2pw@a:1,b:x/d", &["hunter2pw"]),
            (
                "postgres://u:hunter2pw@a,b/d?target_session_attrs=primary",
                &["hunter2pw"],
            ),
            (
                "postgres://u:hunter2pw@h/d?connect_timeout=soon",
                &["hunter2pw", "soon"],
            ),
            // An unencoded `/`, `?`, `#` or `@` in the password splits it.
            ("postgres://u:s3cr/etP4ss@h/db", &["s3cr", "etP4ss"]),
            ("postgres://u:5432/etP4ss@h/db", &["5432", "etP4ss"]),
            ("postgres://u:s3cr?et/P4ss@h/db", &["s3cr", "P4ss"]),
            ("postgres://u:s3cr#et/P4ss@h/db", &["s3cr", "P4ss"]),
            ("postgres://u:s3cr@etP4ss@h/db", &["s3cr", "etP4ss"]),
            ("postgres://:s3cr/etP4ss@h", &["s3cr", "etP4ss"]),
            (
                "postgres://u:s3cr/etP4ss@h:5432/db?sslmode=require",
                &["s3cr", "etP4ss"],
            ),
            // A password in the query with an unencoded `&`.
            ("postgres://h/d?password=s3cr&etP4ss=1", &["s3cr", "etP4ss"]),
            ("postgres://h/d?password=s3cr&etP4ss", &["s3cr", "etP4ss"]),
            (
                "postgres://h/d?password=s3cr&port=etP4ss",
                &["s3cr", "etP4ss"],
            ),
            (
                "postgres://h/d?password=s3cr&connect_timeout=etP4ss",
                &["s3cr", "etP4ss"],
            ),
            (
                "postgres://h/d?password=s3cr&sslmode=etP4ss",
                &["s3cr", "etP4ss"],
            ),
            (
                "postgres://h/d?password=s3cr&dbname=etP4ss%zz",
                &["s3cr", "etP4ss"],
            ),
            (
                "postgres://h/d?password=s3cr&etP4ss%zz=1",
                &["s3cr", "etP4ss"],
            ),
        ];
        for (url, secrets) in cases {
            let parsed = parse(&SecretString::from(*url));
            let err = match parsed.and_then(|parts| values(&parts)) {
                Ok(_) => panic!("{url} was accepted"),
                Err(err) => format!("{err} {err:?}"),
            };
            for secret in *secrets {
                assert!(!err.contains(secret), "{url}: {err}");
            }
            assert!(!err.contains(url), "{err}");
            assert!(!err.contains("host=") && !err.contains("`h`"), "{err}");
        }
    }

    #[test]
    fn an_at_sign_after_the_credentials_asks_for_percent_encoding() {
        for url in [
            "postgres://u:s3cr/etP4ss@h/db",
            "postgres://u:5432/etP4ss@h/db",
            "postgres://u:p@ss@h/db",
            "postgres://u@h/db?application_name=me@laptop",
        ] {
            let err = parse(&SecretString::from(url))
                .err()
                .expect(url)
                .to_string();
            assert!(
                err.contains("write `/` as %2F, `?` as %3F, `#` as %23, `@` as %40 and `:` as %3A in the user name and password"),
                "{url}: {err}"
            );
            for value in ["u", "h", "db", "5432", "s3cr", "etP4ss", "ss", "laptop"] {
                assert!(
                    !err.contains(&format!(" {value} ")) && !err.contains(&format!("`{value}`")),
                    "{url}: {err}"
                );
            }
        }
        // Encoded, the same passwords are fine, and so are `?` and `#` before the `@`.
        check(
            "postgres://u:s3cr%2FetP4ss@h/db",
            &[
                ("database.user", "u"),
                ("database.host", "h"),
                ("database.dbname", "db"),
            ],
            Some("s3cr/etP4ss"),
        );
        check(
            "postgres://u:s3?c#r:et@h/db",
            &[
                ("database.user", "u"),
                ("database.host", "h"),
                ("database.dbname", "db"),
            ],
            Some("s3?c#r:et"),
        );
    }
}
