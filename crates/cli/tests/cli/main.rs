//! The `ecomind-db` binary's integration tests, one test binary: the commands end to end
//! against this process's sandbox cluster, what every command prints (insta snapshots), secrets
//! and bad input against a password sandbox, `dry-run` on dumps it makes, and the authoring commands
//! without a database.

mod authoring;
mod commands;
mod dry_run;
mod outputs;
mod secrets;
