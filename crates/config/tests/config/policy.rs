//! A reviewed policy (its file says `require_confirm = true`) can be tightened by variables,
//! never loosened; and the policy's own checks of destructive commands.

use std::time::Duration;

use ecomind_config::{ConfirmError, Error};

use crate::harness::{run, Setup};

/// A production-like file: reviewed, so variables may only tighten it.
const REVIEWED: &str = "[database]\nhost = \"db\"\n\n[policy]\nlock_wait = \"5min\"\nlock_timeout = \"3s\"\nstatement_timeout = \"30min\"\nallow_rollback = false\nrequire_confirm = true\n";

#[test]
fn a_variable_that_loosens_a_reviewed_policy_is_refused() {
    let loosening = [
        ("ECOMIND_DB_ALLOW_ROLLBACK", "true", "policy.allow_rollback"),
        (
            "ECOMIND_DB_REQUIRE_CONFIRM",
            "false",
            "policy.require_confirm",
        ),
        ("ECOMIND_DB_LOCK_TIMEOUT", "10s", "policy.lock_timeout"),
        ("ECOMIND_DB_LOCK_TIMEOUT", "0", "policy.lock_timeout"),
        (
            "ECOMIND_DB_STATEMENT_TIMEOUT",
            "0",
            "policy.statement_timeout",
        ),
        ("ECOMIND_DB_LOCK_WAIT", "1h", "policy.lock_wait"),
    ];
    for (variable, value, key) in loosening {
        let outcome = run(&Setup::file(REVIEWED).var(variable, value));
        for result in [outcome.load.map(|_| ()), outcome.explain.map(|_| ())] {
            let err = result.expect_err(variable);
            assert!(
                matches!(err, Error::PolicyLoosened { .. }),
                "{variable}: {err}"
            );
            let message = err.to_string();
            assert_eq!(
                message,
                format!("env {variable} would loosen {key} of environment 'qa', whose file environments/qa.toml says require_confirm = true, so variables and flags may only tighten its policy; unset it, or change {key} in environments/qa.toml"),
            );
        }
    }
}

#[test]
fn a_variable_that_tightens_a_reviewed_policy_is_honoured() {
    let outcome = run(&Setup::file(REVIEWED)
        .var("ECOMIND_DB_LOCK_TIMEOUT", "1s")
        .var("ECOMIND_DB_STATEMENT_TIMEOUT", "5min")
        .var("ECOMIND_DB_LOCK_WAIT", "30s")
        .var("ECOMIND_DB_ALLOW_ROLLBACK", "false")
        .var("ECOMIND_DB_REQUIRE_CONFIRM", "true"));
    let policy = outcome.load.expect("tightening is honoured").policy;
    assert_eq!(policy.lock_timeout, Some(Duration::from_secs(1)));
    assert_eq!(policy.statement_timeout, Some(Duration::from_secs(300)));
    assert_eq!(policy.lock_wait, Duration::from_secs(30));
    assert!(!policy.allow_rollback && policy.require_confirm);
}

#[test]
fn a_file_that_does_not_require_confirmation_may_be_loosened() {
    let dev = "[policy]\nallow_rollback = false\nrequire_confirm = false\nlock_timeout = \"3s\"\n";
    let outcome = run(&Setup::file(dev)
        .var("ECOMIND_DB_ALLOW_ROLLBACK", "true")
        .var("ECOMIND_DB_LOCK_TIMEOUT", "0"));
    let policy = outcome.load.expect("not a reviewed policy").policy;
    assert!(policy.allow_rollback);
    assert_eq!(policy.lock_timeout, Some(Duration::ZERO));
}

#[test]
fn destructive_commands_are_checked_on_the_policy() {
    let policy = run(&Setup::file(REVIEWED)).load.expect("loads").policy;
    assert_eq!(
        policy.check_rollback("qa", Some("qa")),
        Err(ConfirmError::RollbackForbidden {
            env: "qa".to_owned()
        })
    );
    assert_eq!(
        policy.check_repair("qa", Some(3), None),
        Err(ConfirmError::ChecksumUnconfirmed {
            version: 3,
            env: "qa".to_owned()
        })
    );
    assert_eq!(policy.check_repair("qa", Some(3), Some("qa")), Ok(()));
    assert_eq!(
        policy.check_confirm("qa", None),
        Err(ConfirmError::Required {
            env: "qa".to_owned()
        })
    );
    let relaxed = run(&Setup::file(
        "[policy]\nallow_rollback = true\nrequire_confirm = false\n",
    ))
    .load
    .expect("loads")
    .policy;
    assert_eq!(relaxed.check_rollback("qa", None), Ok(()));
    assert_eq!(
        relaxed.check_repair("qa", Some(1), None),
        Err(ConfirmError::ChecksumUnconfirmed {
            version: 1,
            env: "qa".to_owned()
        }),
        "rewriting history always needs --confirm"
    );
}
