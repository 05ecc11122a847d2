//! Integration tests of the configuration loader: precedence, bad input, the
//! repository's environment files, connections and TLS against real sandbox
//! clusters, and that no password ever leaks.

// figment's `Jail` closures must return `figment::Result`, whose error is large.
#![allow(clippy::result_large_err)]

mod bad_input;
mod harness;
mod leak;
mod libpq;
mod policy;
mod precedence;
mod repository;
mod server;
