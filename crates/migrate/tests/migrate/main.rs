//! The engine's integration tests, one binary against this process's sandbox cluster (a fresh
//! database per test): the apply loop and observer, repair, round trips and rollback, verify
//! and baseline.

mod common;
mod engine;
mod repair;
mod roundtrip;
mod verify;
