//! Parses `DATABASE_URL` (`postgres://user:password@host:port/dbname?sslmode=...`)
//! without ever putting the URL or its password in an error.

use secrecy::{ExposeSecret, SecretString};

use crate::Error;

/// The parts of a connection URL; values are still text, validated by the caller.
#[derive(Default)]
pub(crate) struct UrlParts {
    /// `(dotted key, value)` for every non-secret setting the URL gives.
    pub settings: Vec<(&'static str, String)>,
    /// The password, if the URL carries one.
    pub password: Option<SecretString>,
}

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
            if let Some(port) = port.filter(|port| !port.is_empty()) {
                ports.push(port.to_owned());
            }
        }
        if !hosts.is_empty() {
            parts.settings.push(("database.host", hosts.join(",")));
        }
        ports.dedup();
        match ports.as_slice() {
            [] => {}
            [port] => parts.settings.push(("database.port", port.clone())),
            _ => {
                return Err(invalid(
                    "its hosts have different ports: use one port for all hosts",
                ))
            }
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
    for pair in query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| invalid("a query parameter lacks `=value`"))?;
        let name = decode(name, "parameter name")?;
        if name == "password" {
            parts.password = Some(SecretString::from(decode(value, "password")?));
            continue;
        }
        let value = decode(value, &format!("parameter `{name}`"))?;
        let key = match name.as_str() {
            "host" => "database.host",
            "port" => "database.port",
            "dbname" => "database.dbname",
            "user" => "database.user",
            "sslmode" => "database.sslmode",
            "sslrootcert" => "database.sslrootcert",
            "connect_timeout" => {
                let seconds: u64 = value.trim().parse().map_err(|_| {
                    invalid(format!(
                        "connect_timeout={value} is not a whole number of seconds"
                    ))
                })?;
                parts
                    .settings
                    .push(("database.connect_timeout", format!("{seconds}s")));
                continue;
            }
            "application_name" => continue,
            other => {
                return Err(invalid(format!(
                    "unsupported parameter `{other}`: use host, port, dbname, user, sslmode, sslrootcert, connect_timeout or application_name"
                )));
            }
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
            "postgres://a,b:7/d",
            &[
                ("database.host", "a,b"),
                ("database.port", "7"),
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
        for url in [
            "mysql://u:hunter2pw@h/d",
            "postgres://u:hunter2pw@h/d?sslmod=require",
            "postgres://u:hunter2pw%zz@h/d",
            "postgres://u:hunter2pw@a:1,b:2/d",
            "postgres://u:hunter2pw@h/d?connect_timeout=soon",
        ] {
            let err = parse(&SecretString::from(url))
                .err()
                .expect(url)
                .to_string();
            assert!(!err.contains("hunter2pw"), "{err}");
            assert!(!err.contains(url), "{err}");
        }
    }
}
