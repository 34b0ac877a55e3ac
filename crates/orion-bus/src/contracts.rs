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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

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

/// One way a message breaks its contract.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON Pointer to the offending value in the message (`""` is the root).
    pub instance_path: String,
    /// JSON Pointer to the schema keyword that failed.
    pub schema_path: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.instance_path.is_empty() {
            "/"
        } else {
            &self.instance_path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// Every violation of one message, never just the first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    /// The individual violations.
    pub fn iter(&self) -> std::slice::Iter<'_, Violation> {
        self.0.iter()
    }

    /// How many violations there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none (never the case for a returned error).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// One version of a contract, compiled.
pub struct ContractVersion {
    version: Option<String>,
    schema: Value,
    validator: jsonschema::Validator,
}

impl fmt::Debug for ContractVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContractVersion")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl ContractVersion {
    fn compile(
        schema: Value,
        options: ContractOptions,
        origin: &Path,
    ) -> Result<Self, ContractError> {
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(options.assert_formats)
            .build(&schema)
            .map_err(|e| ContractError::InvalidSchema {
                path: origin.to_owned(),
                message: e.to_string(),
            })?;
        let version = schema
            .pointer("/properties/version/const")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Self {
            version,
            schema,
            validator,
        })
    }

    /// The `version` const the schema pins, if any (ORION contracts pin `"1.0"`).
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The schema document.
    #[must_use]
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// True when the message conforms to this version.
    #[must_use]
    pub fn is_valid(&self, message: &Value) -> bool {
        self.validator.is_valid(message)
    }

    /// Validates a message against this version, reporting every violation.
    ///
    /// # Errors
    /// The full list of violations when the message does not conform.
    pub fn validate(&self, message: &Value) -> Result<(), Violations> {
        if self.validator.is_valid(message) {
            return Ok(());
        }
        let list: Vec<Violation> = self
            .validator
            .iter_errors(message)
            .map(|e| Violation {
                instance_path: e.instance_path().as_str().to_owned(),
                schema_path: e.schema_path().as_str().to_owned(),
                message: truncate(e.to_string(), MAX_VIOLATION_MESSAGE),
            })
            .collect();
        if list.is_empty() {
            // `is_valid` and `iter_errors` disagreeing would be a validator
            // bug; never let it turn an invalid message into a valid one.
            return Err(Violations(vec![Violation {
                instance_path: String::new(),
                schema_path: String::new(),
                message: "message does not conform to its contract".to_owned(),
            }]));
        }
        Err(Violations(list))
    }
}

/// One contract: a name and one or more versions, each compiled once.
pub struct Contract {
    name: Arc<str>,
    /// Sorted oldest first (by version, compared numerically part by part).
    versions: Vec<ContractVersion>,
}

impl fmt::Debug for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contract")
            .field("name", &self.name)
            .field("versions", &self.version_names())
            .finish_non_exhaustive()
    }
}

impl Contract {
    /// Compiles one schema as a single-version contract. `origin` names
    /// the file in errors.
    ///
    /// # Errors
    /// [`ContractError::InvalidSchema`] or [`ContractError::BadName`].
    pub fn compile(
        name: &str,
        schema: Value,
        options: ContractOptions,
        origin: &Path,
    ) -> Result<Self, ContractError> {
        check_name(name).map_err(|why| ContractError::BadName {
            path: origin.to_owned(),
            name: name.to_owned(),
            why,
        })?;
        Ok(Self {
            name: Arc::from(name),
            versions: vec![ContractVersion::compile(schema, options, origin)?],
        })
    }

    /// The contract's name, e.g. `edge.telemetry`.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as a shared string (cheap to clone into deliveries).
    #[must_use]
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The newest version's pinned `version` const, if any (ORION
    /// contracts pin `"1.0"`).
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.newest().version()
    }

    /// The newest version's schema document.
    #[must_use]
    pub fn schema(&self) -> &Value {
        self.newest().schema()
    }

    /// Every version, oldest first.
    #[must_use]
    pub fn versions(&self) -> &[ContractVersion] {
        &self.versions
    }

    /// The version with this `version` const, if the contract has it.
    #[must_use]
    pub fn get_version(&self, version: &str) -> Option<&ContractVersion> {
        self.versions
            .iter()
            .find(|v| v.version.as_deref() == Some(version))
    }

    fn newest(&self) -> &ContractVersion {
        // A contract always has at least one version: `compile` makes one
        // and `add_version` only adds.
        &self.versions[self.versions.len() - 1]
    }

    fn version_names(&self) -> Vec<&str> {
        self.versions
            .iter()
            .map(|v| v.version().unwrap_or("(unpinned)"))
            .collect()
    }

    /// The version of this contract a message claims to be, by its
    /// `version` field; `Err` with the violation when the contract has
    /// several versions and the message names none of them.
    fn pick(&self, message: &Value) -> Result<&ContractVersion, Violation> {
        if self.versions.len() == 1 {
            return Ok(&self.versions[0]);
        }
        let claimed = message.get("version");
        if let Some(v) = claimed
            .and_then(Value::as_str)
            .and_then(|v| self.get_version(v))
        {
            return Ok(v);
        }
        let known = self.version_names().join(", ");
        let message = match claimed {
            None => format!(
                "\"version\" is required to tell which version of {} this is (known: {known})",
                self.name
            ),
            Some(v) => truncate(
                format!(
                    "{v} is not a known version of {} (known: {known})",
                    self.name
                ),
                MAX_VIOLATION_MESSAGE,
            ),
        };
        Err(Violation {
            instance_path: if claimed.is_some() {
                "/version".to_owned()
            } else {
                String::new()
            },
            schema_path: "/properties/version/const".to_owned(),
            message,
        })
    }

    /// True when the message conforms (to the version it names, when the
    /// contract has several). Cheaper than [`Self::validate`].
    #[must_use]
    pub fn is_valid(&self, message: &Value) -> bool {
        self.pick(message).is_ok_and(|v| v.is_valid(message))
    }

    /// Validates a message and reports every violation. When the contract
    /// has several versions, the message's `version` field picks the
    /// schema; a version the contract does not have is a violation.
    ///
    /// # Errors
    /// The full list of violations when the message does not conform.
    pub fn validate(&self, message: &Value) -> Result<(), Violations> {
        match self.pick(message) {
            Ok(v) => v.validate(message),
            Err(violation) => Err(Violations(vec![violation])),
        }
    }

    /// Adds another version; every version must pin a distinct `version`.
    fn add_version(
        &mut self,
        version: ContractVersion,
        origin: &Path,
    ) -> Result<(), ContractError> {
        let Some(new) = version.version() else {
            return Err(ContractError::Version {
                path: origin.to_owned(),
                why: format!(
                    "contract {} has several versions, so its schema must pin one with \"version\": {{\"const\": ...}}",
                    self.name
                ),
            });
        };
        if self.versions.iter().any(|v| v.version().is_none()) {
            return Err(ContractError::Version {
                path: origin.to_owned(),
                why: format!(
                    "another schema of contract {} pins no version; with several versions every one must pin its \"version\" const",
                    self.name
                ),
            });
        }
        if self.get_version(new).is_some() {
            return Err(ContractError::Version {
                path: origin.to_owned(),
                why: format!("contract {} version {new} is defined twice", self.name),
            });
        }
        self.versions.push(version);
        self.versions
            .sort_by(|a, b| version_order(a.version().unwrap_or(""), b.version().unwrap_or("")));
        Ok(())
    }
}

/// Orders versions numerically part by part (`1.10` after `1.9`), falling
/// back to text for parts that are not numbers.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if ord.is_ne() {
                    return ord;
                }
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes (on a char boundary), marking the cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// A contract name becomes part of a Redis key (`{prefix}:{name}s`), so it
/// must be non-empty printable ASCII without separators or braces.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err("only ASCII letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

/// Every known contract, compiled once. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct ContractRegistry {
    contracts: BTreeMap<Arc<str>, Arc<Contract>>,
    options: ContractOptions,
}

impl ContractRegistry {
    /// Loads and compiles every `*.schema.json` in `dir` (not recursive).
    /// Any unreadable or invalid file stops loading with an error naming it.
    ///
    /// # Errors
    /// See [`ContractError`].
    pub fn load_dir(dir: &Path, options: ContractOptions) -> Result<Self, ContractError> {
        let read_dir = std::fs::read_dir(dir).map_err(|source| ContractError::ReadDir {
            path: dir.to_owned(),
            source,
        })?;
        let mut files = Vec::new();
        for entry in read_dir {
            let entry = entry.map_err(|source| ContractError::ReadDir {
                path: dir.to_owned(),
                source,
            })?;
            let path = entry.path();
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(name) = file_name.strip_suffix(SCHEMA_SUFFIX) {
                files.push((name.to_owned(), path));
            }
        }
        if files.is_empty() {
            return Err(ContractError::Empty {
                path: dir.to_owned(),
            });
        }
        files.sort();
        let mut registry = Self {
            contracts: BTreeMap::new(),
            options,
        };
        for (name, path) in files {
            let text =
                std::fs::read_to_string(&path).map_err(|source| ContractError::ReadFile {
                    path: path.clone(),
                    source,
                })?;
            registry.add_source(&name, &text, &path)?;
        }
        Ok(registry)
    }

    /// Builds a registry from `(name, schema JSON text)` pairs, e.g. schemas
    /// embedded in the binary.
    ///
    /// # Errors
    /// See [`ContractError`].
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
        options: ContractOptions,
    ) -> Result<Self, ContractError> {
        let mut registry = Self {
            contracts: BTreeMap::new(),
            options,
        };
        for (name, text) in sources {
            let origin = PathBuf::from(format!("{name}{SCHEMA_SUFFIX}"));
            registry.add_source(name, text, &origin)?;
        }
        Ok(registry)
    }

    /// Adds one schema. `name` is a file stem: `event` or `event@2.0`.
    fn add_source(&mut self, name: &str, text: &str, origin: &Path) -> Result<(), ContractError> {
        let schema: Value = serde_json::from_str(text).map_err(|source| ContractError::Parse {
            path: origin.to_owned(),
            source,
        })?;
        let (name, declared) = match name.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (name, None),
        };
        let contract = Contract::compile(name, schema, self.options, origin)?;
        if let Some(declared) = declared {
            let pinned = contract.version();
            if pinned != Some(declared) {
                return Err(ContractError::Version {
                    path: origin.to_owned(),
                    why: format!(
                        "the file name says version {declared} but the schema pins {}",
                        pinned.map_or_else(|| "no version".to_owned(), |p| format!("version {p}"))
                    ),
                });
            }
        }
        match self.contracts.get_mut(name) {
            None => {
                self.contracts
                    .insert(contract.name.clone(), Arc::new(contract));
            }
            Some(existing) => {
                let existing = Arc::get_mut(existing).ok_or_else(|| ContractError::Version {
                    path: origin.to_owned(),
                    why: "the registry is already shared".to_owned(),
                })?;
                let Contract { mut versions, .. } = contract;
                existing.add_version(versions.remove(0), origin)?;
            }
        }
        Ok(())
    }

    /// Looks a contract up by name.
    ///
    /// # Errors
    /// [`ContractError::Unknown`] naming the known contracts.
    pub fn get(&self, name: &str) -> Result<&Arc<Contract>, ContractError> {
        self.contracts.get(name).ok_or_else(|| self.unknown(name))
    }

    /// The error for a name no contract has, listing the known ones.
    #[must_use]
    pub fn unknown(&self, name: &str) -> ContractError {
        ContractError::Unknown {
            name: name.to_owned(),
            known: self.names().collect::<Vec<_>>().join(", "),
        }
    }

    /// The contract names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.contracts.keys().map(|k| &**k)
    }

    /// All contracts, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Contract>> {
        self.contracts.values()
    }

    /// Number of contracts.
    #[must_use]
    pub fn len(&self) -> usize {
        self.contracts.len()
    }

    /// True when no contract is loaded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.contracts.is_empty()
    }

    /// The options the contracts were compiled with.
    #[must_use]
    pub fn options(&self) -> ContractOptions {
        self.options
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &str = r#"{
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["version", "id", "at"],
        "additionalProperties": false,
        "properties": {
            "version": {"const": "1.0"},
            "id": {"type": "string", "format": "uuid"},
            "at": {"type": "string", "format": "date-time"}
        }
    }"#;

    fn registry(assert_formats: bool) -> ContractRegistry {
        ContractRegistry::from_sources(
            [("thing", SCHEMA)],
            ContractOptions::default().assert_formats(assert_formats),
        )
        .expect("compiles")
    }

    #[test]
    fn reports_every_violation_with_its_path() {
        let reg = registry(true);
        let c = reg.get("thing").expect("known");
        assert_eq!(c.version(), Some("1.0"));
        let err = c
            .validate(&json!({"version": "2.0", "id": "nope", "at": "yesterday", "extra": 1}))
            .expect_err("invalid");
        let paths: Vec<&str> = err.iter().map(|v| v.instance_path.as_str()).collect();
        assert!(paths.contains(&"/version"), "{err}");
        assert!(paths.contains(&"/id"), "{err}");
        assert!(paths.contains(&"/at"), "{err}");
        assert!(paths.contains(&""), "additionalProperties at root: {err}");
        assert_eq!(err.len(), 4, "{err}");
    }

    #[test]
    fn formats_can_be_relaxed() {
        let msg = json!({"version": "1.0", "id": "nope", "at": "yesterday"});
        assert!(
            registry(true)
                .get("thing")
                .expect("k")
                .validate(&msg)
                .is_err()
        );
        assert!(
            registry(false)
                .get("thing")
                .expect("k")
                .validate(&msg)
                .is_ok()
        );
    }

    #[test]
    fn unknown_contract_names_the_known_ones() {
        let err = registry(true).get("nope").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown contract \"nope\"; known contracts: thing"
        );
    }

    #[test]
    fn invalid_schema_names_its_origin() {
        let err = ContractRegistry::from_sources(
            [("bad", r#"{"type": 12}"#)],
            ContractOptions::default(),
        )
        .expect_err("invalid schema");
        assert!(err.to_string().contains("bad.schema.json"), "{err}");
        let err = ContractRegistry::from_sources([("bad", "{")], ContractOptions::default())
            .expect_err("not json");
        assert!(matches!(err, ContractError::Parse { .. }), "{err}");
    }

    #[test]
    fn names_must_be_key_safe() {
        let err = ContractRegistry::from_sources([("a b", SCHEMA)], ContractOptions::default())
            .expect_err("space");
        assert!(matches!(err, ContractError::BadName { .. }), "{err}");
    }

    fn event(version: &str, extra_required: bool) -> String {
        let required = if extra_required { r#", "origin""# } else { "" };
        format!(
            r#"{{"type": "object", "required": ["version", "id"{required}], "additionalProperties": false,
               "properties": {{"version": {{"const": "{version}"}}, "id": {{"type": "integer"}}, "origin": {{"type": "string"}}}}}}"#
        )
    }

    #[test]
    fn versions_live_side_by_side_and_the_message_picks_one() {
        let (v1, v2) = (event("1.0", false), event("2.0", true));
        // Loading order must not matter.
        for sources in [
            [("event", v1.as_str()), ("event@2.0", v2.as_str())],
            [("event@2.0", v2.as_str()), ("event", v1.as_str())],
        ] {
            let reg = ContractRegistry::from_sources(sources, ContractOptions::default())
                .expect("compiles");
            assert_eq!(reg.len(), 1);
            let c = reg.get("event").expect("known");
            let names: Vec<_> = c.versions().iter().map(|v| v.version()).collect();
            assert_eq!(names, [Some("1.0"), Some("2.0")]);
            assert_eq!(c.version(), Some("2.0"), "newest");
            assert!(c.validate(&json!({"version": "1.0", "id": 1})).is_ok());
            let err = c
                .validate(&json!({"version": "2.0", "id": 1}))
                .expect_err("2.0 requires origin");
            assert!(err.to_string().contains("origin"), "{err}");
            assert!(
                c.validate(&json!({"version": "2.0", "id": 1, "origin": "x"}))
                    .is_ok()
            );
            let err = c
                .validate(&json!({"version": "3.0", "id": 1}))
                .expect_err("unknown version");
            assert_eq!(err.len(), 1);
            assert_eq!(err.0[0].instance_path, "/version");
            assert!(
                err.to_string()
                    .contains("\"3.0\" is not a known version of event (known: 1.0, 2.0)"),
                "{err}"
            );
            assert!(!c.is_valid(&json!({"id": 1})));
            let err = c.validate(&json!({"id": 1})).expect_err("no version");
            assert!(err.to_string().contains("\"version\" is required"), "{err}");
        }
    }

    #[test]
    fn version_files_must_agree_and_be_unique() {
        let v1 = event("1.0", false);
        let err = ContractRegistry::from_sources(
            [("event@2.0", v1.as_str())],
            ContractOptions::default(),
        )
        .expect_err("name says 2.0, schema says 1.0");
        assert!(err.to_string().contains("event@2.0.schema.json"), "{err}");
        assert!(err.to_string().contains("says version 2.0"), "{err}");
        let err = ContractRegistry::from_sources(
            [("event", v1.as_str()), ("event@1.0", v1.as_str())],
            ContractOptions::default(),
        )
        .expect_err("twice");
        assert!(err.to_string().contains("defined twice"), "{err}");
        let unpinned = r#"{"type": "object"}"#;
        let err = ContractRegistry::from_sources(
            [("event", unpinned), ("event@1.0", v1.as_str())],
            ContractOptions::default(),
        )
        .expect_err("unpinned sibling");
        assert!(err.to_string().contains("must pin"), "{err}");
    }

    #[test]
    fn versions_sort_numerically() {
        assert!(version_order("1.10", "1.9").is_gt());
        assert!(version_order("2.0", "10.0").is_lt());
        assert!(version_order("1.0", "1.0.1").is_lt());
    }

    #[test]
    fn long_messages_are_cut() {
        let s = truncate("é".repeat(400), MAX_VIOLATION_MESSAGE);
        assert!(s.len() <= MAX_VIOLATION_MESSAGE + 3);
        assert!(s.ends_with("..."));
    }
}
