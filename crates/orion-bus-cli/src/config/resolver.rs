//! Reading one setting's value: from the flags and environment, the TOML
//! file or the default, parsed and checked, with each problem recorded.
//!
//! Owns [`read_file`] (the TOML file, keys checked against [`SETTINGS`])
//! and [`Resolver`], which layers the sources and says where a bad value
//! came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::{Given, MAX_DURATION, SETTINGS, SettingSpec, Source};

/// The TOML file's values by key, as text; problems go to `problems`.
pub(super) fn read_file(path: &Path, problems: &mut Vec<String>) -> BTreeMap<String, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("config file {}: {e}", path.display()));
            return BTreeMap::new();
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("config file {}: {e}", path.display()));
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for (key, value) in table {
        if !SETTINGS.iter().any(|s| s.key == key) {
            problems.push(format!(
                "config file {}: unknown key {key:?}",
                path.display()
            ));
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                problems.push(format!(
                    "config file {}: {key} must be a string, number or boolean, not {}",
                    path.display(),
                    other.type_str()
                ));
                continue;
            }
        };
        out.insert(key, text);
    }
    out
}

/// Values of one resolution, and the problems found so far.
pub(super) struct Resolver<'a> {
    pub(super) given: &'a Given,
    pub(super) file: &'a BTreeMap<String, String>,
    pub(super) problems: Vec<String>,
}

impl Resolver<'_> {
    pub(super) fn spec(key: &str) -> &'static SettingSpec {
        let found = SETTINGS.iter().find(|s| s.key == key);
        debug_assert!(found.is_some(), "setting {key} is not in SETTINGS");
        found.unwrap_or(&SETTINGS[0])
    }

    pub(super) fn raw(&self, key: &str) -> Option<(String, Source)> {
        if let Some((v, src)) = self.given.get(key) {
            return Some((v.clone(), *src));
        }
        if let Some(v) = self.file.get(key) {
            return Some((v.clone(), Source::File));
        }
        Self::spec(key)
            .default
            .map(|d| (d.to_owned(), Source::Default))
    }

    pub(super) fn source(&self, key: &str) -> Source {
        self.raw(key).map_or(Source::Default, |(_, s)| s)
    }

    pub(super) fn origin(key: &str, source: Source) -> String {
        let spec = Self::spec(key);
        match source {
            Source::Flag => format!("--{}", spec.flag()),
            Source::Env => spec.env.to_owned(),
            Source::File => format!("config file key {key}"),
            Source::Default => format!("default of {key}"),
        }
    }

    pub(super) fn string(&self, key: &str) -> String {
        self.raw(key).map(|(v, _)| v).unwrap_or_default()
    }

    pub(super) fn opt_string(&self, key: &str) -> Option<String> {
        self.raw(key).map(|(v, _)| v).filter(|v| !v.is_empty())
    }

    pub(super) fn opt_parse<T: std::str::FromStr>(&mut self, key: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        let (v, src) = self.raw(key).filter(|(v, _)| !v.is_empty())?;
        match v.parse() {
            Ok(t) => Some(t),
            Err(e) => {
                self.problems.push(format!(
                    "{}: invalid value {v:?}: {e}",
                    Self::origin(key, src)
                ));
                None
            }
        }
    }

    pub(super) fn parse<T: std::str::FromStr>(&mut self, key: &str, fallback: T) -> T
    where
        T::Err: fmt::Display,
    {
        self.opt_parse(key).unwrap_or(fallback)
    }

    pub(super) fn positive(&mut self, key: &str, fallback: usize) -> usize {
        let v: usize = self.parse(key, fallback);
        if v == 0 {
            let src = self.source(key);
            self.problems
                .push(format!("{}: must be at least 1", Self::origin(key, src)));
            return fallback;
        }
        v
    }

    pub(super) fn duration(&mut self, key: &str) -> Duration {
        let Some((v, src)) = self.raw(key) else {
            return Duration::ZERO;
        };
        let problem = match humantime::parse_duration(&v) {
            Ok(d) if d <= MAX_DURATION => return d,
            Ok(_) => format!("{v:?} is too long; at most 365 days"),
            Err(e) => format!("invalid duration {v:?} ({e}); write e.g. 500ms, 5s or 1m"),
        };
        self.problems
            .push(format!("{}: {problem}", Self::origin(key, src)));
        Self::spec(key)
            .default
            .and_then(|d| humantime::parse_duration(d).ok())
            .unwrap_or(Duration::from_secs(1))
    }
}
