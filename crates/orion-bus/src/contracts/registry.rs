//! The [`ContractRegistry`]: every contract of a directory (or of a list
//! of sources), compiled once and shared read-only afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::{Contract, ContractError, ContractOptions, SCHEMA_SUFFIX};

/// A contract name becomes part of a Redis key (`{prefix}:{name}s`), so it
/// must be non-empty printable ASCII without separators or braces.
pub(super) fn check_name(name: &str) -> Result<(), &'static str> {
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
