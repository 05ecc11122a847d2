//! ecomind-snapshot's integration tests, one test binary, against real PostgreSQL servers the
//! tests start themselves: clusters and sandboxes, dumps and restores.

mod clusters;
mod restore;
