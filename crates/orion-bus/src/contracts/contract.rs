//! One contract: its versions ([`ContractVersion`], each schema compiled
//! once), and validation against the version a message names.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::registry::check_name;
use super::{
    ContractError, ContractOptions, MAX_VIOLATION_MESSAGE, Violation, Violations, truncate,
};

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
    pub(super) name: Arc<str>,
    /// Sorted oldest first (by version, compared numerically part by part).
    pub(super) versions: Vec<ContractVersion>,
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
    pub(super) fn add_version(
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
pub(super) fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
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
