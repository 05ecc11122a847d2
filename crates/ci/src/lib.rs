//! The CI matrix of ecomind-db: every environment file against every supported PostgreSQL
//! major (the axes and the steps are data, in `ci/matrix.toml`), and the check that a branch
//! adds only versions above the main branch's head. `cargo xtask ci` runs it; it returns data
//! (cell reports) and leaves printing to its binary.

pub mod branch;
pub mod cell;
pub mod matrix;

pub use branch::{check_branch_versions, BranchCheck};
pub use cell::{run_major, CellReport, CellSetup, StepReport};
pub use matrix::{Cell, Major, Matrix, Source, Step};

/// Why the matrix could not be read, a cell could not be set up, or a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

/// An error and its causes, joined with `: `.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
