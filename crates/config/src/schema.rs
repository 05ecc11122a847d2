//! The keys an environment file may set, their types, their `ECOMIND_DB_*`
//! variables, and the validation shared by every layer.

use std::time::Duration;

use figment::value::Value;

use crate::{Error, SslMode};

/// The type of a key's value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// Free text (names).
    Text,
    /// One host name or socket folder, or several separated by commas.
    Hosts,
    /// A TCP port, 1..=65535, or a comma-separated list of them (one per host).
    Port,
    /// A duration with a unit (`500ms`, `5s`, `2min`, `1h`), or `0` for none.
    Duration,
    /// `true` or `false`.
    Bool,
    /// A libpq sslmode.
    SslMode,
    /// `managed` or `server`.
    Target,
    /// libpq's `target_session_attrs`: `any` or `read-write`.
    SessionAttrs,
    /// A file or folder; relative paths in a file are resolved against the repository root.
    Path,
}

/// One key of the environment file.
pub(crate) struct Key {
    /// Dotted name: section.key.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// The `ECOMIND_DB_*` variable that sets it.
    pub var: &'static str,
}

/// The keys that go through figment; secrets (`database.password`,
/// `database.password_file`) are handled apart so they never enter it.
pub(crate) const KEYS: &[Key] = &[
    Key {
        name: "database.target",
        kind: Kind::Target,
        var: "ECOMIND_DB_TARGET",
    },
    Key {
        name: "database.managed_root",
        kind: Kind::Path,
        var: "ECOMIND_DB_MANAGED_ROOT",
    },
    Key {
        name: "database.host",
        kind: Kind::Hosts,
        var: "ECOMIND_DB_HOST",
    },
    Key {
        name: "database.port",
        kind: Kind::Port,
        var: "ECOMIND_DB_PORT",
    },
    Key {
        name: "database.dbname",
        kind: Kind::Text,
        var: "ECOMIND_DB_DBNAME",
    },
    Key {
        name: "database.user",
        kind: Kind::Text,
        var: "ECOMIND_DB_USER",
    },
    Key {
        name: "database.sslmode",
        kind: Kind::SslMode,
        var: "ECOMIND_DB_SSLMODE",
    },
    Key {
        name: "database.sslrootcert",
        kind: Kind::Path,
        var: "ECOMIND_DB_SSLROOTCERT",
    },
    Key {
        name: "database.sslcert",
        kind: Kind::Path,
        var: "ECOMIND_DB_SSLCERT",
    },
    Key {
        name: "database.sslkey",
        kind: Kind::Path,
        var: "ECOMIND_DB_SSLKEY",
    },
    Key {
        name: "database.sslcrl",
        kind: Kind::Path,
        var: "ECOMIND_DB_SSLCRL",
    },
    Key {
        name: "database.target_session_attrs",
        kind: Kind::SessionAttrs,
        var: "ECOMIND_DB_TARGET_SESSION_ATTRS",
    },
    Key {
        name: "database.passfile",
        kind: Kind::Path,
        var: "ECOMIND_DB_PASSFILE",
    },
    Key {
        name: "database.connect_timeout",
        kind: Kind::Duration,
        var: "ECOMIND_DB_CONNECT_TIMEOUT",
    },
    Key {
        name: "policy.lock_wait",
        kind: Kind::Duration,
        var: "ECOMIND_DB_LOCK_WAIT",
    },
    Key {
        name: "policy.lock_timeout",
        kind: Kind::Duration,
        var: "ECOMIND_DB_LOCK_TIMEOUT",
    },
    Key {
        name: "policy.statement_timeout",
        kind: Kind::Duration,
        var: "ECOMIND_DB_STATEMENT_TIMEOUT",
    },
    Key {
        name: "policy.allow_rollback",
        kind: Kind::Bool,
        var: "ECOMIND_DB_ALLOW_ROLLBACK",
    },
    Key {
        name: "policy.require_confirm",
        kind: Kind::Bool,
        var: "ECOMIND_DB_REQUIRE_CONFIRM",
    },
];

/// The literal password key (allowed only in throwaway environments).
pub(crate) const PASSWORD: &str = "database.password";
/// The password file key.
pub(crate) const PASSWORD_FILE: &str = "database.password_file";

/// Variables with the `ECOMIND_DB_` prefix that are not settings but are ours.
pub(crate) const OTHER_VARS: &[&str] = &[
    "ECOMIND_DB_PASSWORD",
    "ECOMIND_DB_PASSWORD_FILE",
    "ECOMIND_DB_ENVIRONMENTS",
    "ECOMIND_DB_ENV",
    "ECOMIND_DB_BIN_DIR",
    "ECOMIND_DB_MIGRATIONS",
];

/// Environments in whose file a literal password is tolerated.
pub(crate) const THROWAWAY_ENVIRONMENTS: &[&str] = &["dev", "ci", "test"];

/// Looks up a key by its dotted name.
pub(crate) fn key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.name == name)
}

/// Every dotted name an environment file may hold.
pub(crate) fn all_file_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .map(|key| key.name)
        .chain([PASSWORD, PASSWORD_FILE])
}

/// A raw value as found in a file or in a variable.
pub(crate) enum Raw<'a> {
    /// From a TOML file.
    Toml(&'a toml::Value),
    /// From a variable, flag or URL.
    Text(&'a str),
}

fn toml_type(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(_) => "a date".to_owned(),
        toml::Value::Array(_) => "an array".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

pub(crate) fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "a string",
        Kind::Hosts => "a host name, a socket folder or a comma-separated list of them (a string)",
        Kind::Port => "an integer between 1 and 65535 (or a comma-separated list of them, one per host)",
        Kind::Duration => "a duration string with a unit, such as \"500ms\", \"5s\", \"2min\" or \"1h\" (\"0\" for none)",
        Kind::Bool => "true or false",
        Kind::SslMode => "one of \"disable\", \"prefer\", \"require\", \"verify-ca\", \"verify-full\"",
        Kind::Target => "\"managed\" or \"server\"",
        Kind::SessionAttrs => "\"any\" or \"read-write\"",
        Kind::Path => "a path (a string)",
    }
}

/// Checks a raw value against its key's type and returns the canonical value
/// that goes into figment.
pub(crate) fn validate(key: &Key, raw: Raw<'_>, origin: &str) -> Result<Value, Error> {
    let wrong = |found: String| Error::WrongType {
        origin: origin.to_owned(),
        key: key.name.to_owned(),
        expected: expected(key.kind).to_owned(),
        found,
    };
    let text = match raw {
        Raw::Text(text) => text,
        Raw::Toml(value) => match (key.kind, value) {
            (Kind::Port, toml::Value::Integer(port)) => {
                return match u16::try_from(*port) {
                    Ok(port) if port > 0 => Ok(Value::from(port)),
                    _ => Err(Error::InvalidPort {
                        origin: origin.to_owned(),
                        key: key.name.to_owned(),
                        value: port.to_string(),
                    }),
                };
            }
            (Kind::Bool, toml::Value::Boolean(b)) => return Ok(Value::from(*b)),
            (Kind::Port, toml::Value::String(list))
                if list.contains(',')
                    && list
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ') =>
            {
                list.as_str()
            }
            (Kind::Port | Kind::Bool, other) => return Err(wrong(toml_type(other))),
            (_, toml::Value::String(s)) => s.as_str(),
            (_, other) => return Err(wrong(toml_type(other))),
        },
    };
    let invalid = |message: String| Error::InvalidValue {
        origin: origin.to_owned(),
        key: key.name.to_owned(),
        message,
    };
    match key.kind {
        Kind::Text => {
            if text.trim().is_empty() {
                return Err(invalid(
                    "it is empty: give a name or remove the key".to_owned(),
                ));
            }
            Ok(Value::from(text.to_owned()))
        }
        Kind::Hosts => {
            parse_hosts(text).map_err(invalid)?;
            Ok(Value::from(text.to_owned()))
        }
        Kind::Port => {
            let ports = parse_ports(text).map_err(|_| Error::InvalidPort {
                origin: origin.to_owned(),
                key: key.name.to_owned(),
                value: format!("{text:?}"),
            })?;
            match ports.as_slice() {
                [port] => Ok(Value::from(*port)),
                _ => Ok(Value::from(
                    ports
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                )),
            }
        }
        Kind::SessionAttrs => {
            let attrs: crate::TargetSessionAttrs =
                text.parse().map_err(|_| wrong(format!("{text:?}")))?;
            Ok(Value::from(attrs.as_str().to_owned()))
        }
        Kind::Duration => {
            parse_duration(text).map_err(|message| invalid(format!("{text:?}: {message}")))?;
            Ok(Value::from(text.trim().to_owned()))
        }
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::from(true)),
            "false" | "0" | "no" | "off" => Ok(Value::from(false)),
            _ => Err(wrong(format!("{text:?}"))),
        },
        Kind::SslMode => {
            let mode: SslMode = text.parse().map_err(|_| wrong(format!("{text:?}")))?;
            Ok(Value::from(mode.as_str().to_owned()))
        }
        Kind::Target => match text.trim() {
            "managed" | "server" => Ok(Value::from(text.trim().to_owned())),
            _ => Err(wrong(format!("{text:?}"))),
        },
        Kind::Path => {
            if text.trim().is_empty() {
                return Err(invalid(
                    "it is empty: give a path or remove the key".to_owned(),
                ));
            }
            Ok(Value::from(text.to_owned()))
        }
    }
}

/// Splits a host list; each entry is a host name, an IP address or an absolute socket folder.
pub(crate) fn parse_hosts(text: &str) -> Result<Vec<String>, String> {
    let hosts: Vec<String> = text.split(',').map(|host| host.trim().to_owned()).collect();
    if hosts.iter().any(String::is_empty) {
        return Err(format!(
            "{text:?} has an empty host: write host names separated by single commas"
        ));
    }
    Ok(hosts)
}

/// Parses one port or a comma-separated list of ports (libpq's `port=5432,5433`).
pub(crate) fn parse_ports(text: &str) -> Result<Vec<u16>, String> {
    text.split(',')
        .map(|port| match port.trim().parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err(format!(
                "{text:?} is not a port or a comma-separated list of ports between 1 and 65535"
            )),
        })
        .collect()
}

/// The longest duration any setting accepts: 2147483647 ms (24 days, 20 h, 31 min and 23.647 s).
/// PostgreSQL's `lock_timeout` and `statement_timeout` are whole milliseconds in a 32-bit
/// integer and refuse anything longer, and one bound for every duration keeps waits on our side
/// (lock wait, connect timeout) from overflowing a clock.
pub const MAX_DURATION: Duration = Duration::from_millis(i32::MAX as u64);

/// Parses `500ms`, `5s`, `2min`, `1h`, `1d` or a bare `0`, up to [`MAX_DURATION`].
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let too_long = || {
        format!(
            "it is longer than the longest duration accepted, {}ms (about 24 days, the longest timeout PostgreSQL accepts): write a shorter one",
            MAX_DURATION.as_millis()
        )
    };
    let number: u64 = match number.parse() {
        Ok(number) => number,
        // Digits too many for 64 bits are a number, only far too long.
        Err(_) if !number.is_empty() => return Err(too_long()),
        Err(_) => {
            return Err("write a whole number followed by a unit (ms, s, min, h, d)".to_owned())
        }
    };
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err("add a unit (ms, s, min, h, d), for example \"5s\"".to_owned()),
        other => return Err(format!("unknown unit {other:?}: use ms, s, min, h or d")),
    };
    match number.checked_mul(millis_per_unit) {
        Some(millis) if millis <= MAX_DURATION.as_millis() as u64 => {
            Ok(Duration::from_millis(millis))
        }
        _ => Err(too_long()),
    }
}

/// The known name closest to `wanted`, if it is close enough to be a typo.
pub(crate) fn closest<'a>(
    wanted: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let wanted_last = wanted.rsplit('.').next().unwrap_or(wanted);
    known
        .into_iter()
        .map(|name| {
            let last = name.rsplit('.').next().unwrap_or(name);
            let distance = levenshtein(wanted, name).min(levenshtein(wanted_last, last));
            (distance, name)
        })
        .filter(|(distance, name)| *distance <= (name.len().max(wanted.len()) / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, expected) in [
            ("0", Some(Duration::ZERO)),
            ("500ms", Some(Duration::from_millis(500))),
            ("5s", Some(Duration::from_secs(5))),
            ("2min", Some(Duration::from_secs(120))),
            ("1h", Some(Duration::from_secs(3600))),
            (" 3 s ", Some(Duration::from_secs(3))),
            ("5", None),
            ("s", None),
            ("5 weeks", None),
            ("-1s", None),
            ("2147483647ms", Some(MAX_DURATION)),
            ("2147483s", Some(Duration::from_secs(2_147_483))),
            ("24d", Some(Duration::from_secs(24 * 86_400))),
            ("2147483648ms", None),
            ("25d", None),
            ("18446744073709551615s", None),
            ("18446744073709551616ms", None),
            ("99999999999999999999999999d", None),
        ] {
            assert_eq!(parse_duration(text).ok(), expected, "{text:?}");
        }
    }

    #[test]
    fn durations_past_the_bound_say_so() {
        for text in [
            "18446744073709551615s",
            "2147483648ms",
            "25d",
            "999999999999999999999999h",
        ] {
            let message = parse_duration(text).expect_err(text);
            assert!(
                message.contains("longer than the longest duration accepted, 2147483647ms"),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn suggestions() {
        let keys = || all_file_keys();
        assert_eq!(closest("database.prot", keys()), Some("database.port"));
        assert_eq!(closest("database.sslmod", keys()), Some("database.sslmode"));
        assert_eq!(
            closest("policy.lock_timout", keys()),
            Some("policy.lock_timeout")
        );
        assert_eq!(
            closest("database.passwordfile", keys()),
            Some("database.password_file")
        );
        assert_eq!(closest("database.completely_else", keys()), None);
        assert_eq!(closest("prd", ["dev", "staging", "prod"]), Some("prod"));
    }
}
