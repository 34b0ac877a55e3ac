//! Contracts: loading JSON Schema (Draft 2020-12) files and validating messages.
//!
//! Owns the [`ContractRegistry`] (every contract compiled once at start-up
//! and shared read-only afterwards), the [`Violation`] list a failed
//! validation produces, and [`ContractError`], the error boundary for
//! everything contract-related.
//!
//! A contract's name is its file name without `.schema.json`:
//! `edge.telemetry.schema.json` holds the contract `edge.telemetry`.
//!
//! One contract may have several versions side by side, one file each:
//! `event.schema.json` and `event@2.0.schema.json` are both the contract
//! `event`. Every version's schema pins its `version` with a `const` (the
//! part after `@` must agree with it), and a message is validated against
//! the version its own `version` field names.
//!
//! One file per concern: this one owns the errors and options;
//! `violations.rs` what a failed validation reports; `contract.rs` one
//! contract and its versions; `registry.rs` loading a directory or a list
//! of sources.

use std::path::PathBuf;

mod contract;
mod registry;
#[cfg(test)]
mod tests;
mod violations;

pub use contract::{Contract, ContractVersion};
pub use registry::ContractRegistry;
pub(crate) use violations::truncate;
pub use violations::{Violation, Violations};

/// The file-name suffix that marks a contract schema.
pub const SCHEMA_SUFFIX: &str = ".schema.json";

/// How long one violation's message may get before it is cut, so that a
/// huge offending value cannot flood logs or dead-letter entries.
const MAX_VIOLATION_MESSAGE: usize = 300;

/// Errors of the contracts boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// The contracts directory could not be listed.
    #[error("cannot read contracts directory {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory holds no `*.schema.json` file.
    #[error("contracts directory {path} holds no *{SCHEMA_SUFFIX} file")]
    Empty {
        /// The directory.
        path: PathBuf,
    },
    /// A schema file could not be read.
    #[error("cannot read schema file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A schema file is not valid JSON.
    #[error("schema file {path} is not valid JSON: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A schema file is JSON but not a valid Draft 2020-12 schema.
    #[error("schema file {path} is not a valid JSON Schema: {message}")]
    InvalidSchema {
        /// The file.
        path: PathBuf,
        /// What the schema compiler said.
        message: String,
    },
    /// The contract name is not a usable stream name part.
    #[error("schema file {path} gives the contract name {name:?}, which is not allowed: {why}")]
    BadName {
        /// The file.
        path: PathBuf,
        /// The name derived from it.
        name: String,
        /// Why it is rejected.
        why: &'static str,
    },
    /// A `name@version` file whose schema pins another version, or a
    /// contract with several versions whose schema pins none.
    #[error("schema file {path}: {why}")]
    Version {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A contract name was asked for that no schema defines.
    #[error("unknown contract {name:?}; known contracts: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
}

/// Validation settings for a registry.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ContractOptions {
    /// Assert `format` (`uuid`, `date-time`, ...). On by default, because
    /// ORION's contracts say invalid UUIDs and timestamps MUST be rejected.
    /// The Python bus does not assert formats; turn this off only for a
    /// lenient migration period.
    pub assert_formats: bool,
}

impl Default for ContractOptions {
    fn default() -> Self {
        Self {
            assert_formats: true,
        }
    }
}

impl ContractOptions {
    /// Sets format assertion.
    #[must_use]
    pub fn assert_formats(mut self, on: bool) -> Self {
        self.assert_formats = on;
        self
    }
}
