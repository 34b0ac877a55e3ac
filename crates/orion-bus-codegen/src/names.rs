//! Names in the generated code: module names from contract names and
//! versions, type names from titles, made unique, and doc comments.

use std::collections::BTreeSet;

/// `name`, or `name2`, `name3`… whichever is not taken yet; marks it taken.
pub(super) fn unique(taken: &mut BTreeSet<String>, name: &str) -> String {
    let mut candidate = name.to_owned();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{name}{n}");
        n += 1;
    }
    candidate
}

/// [`pascal`], made a valid type name: `7zip` → `C7zip`.
pub(super) fn pascal_ident(text: &str) -> String {
    let name = pascal(text);
    if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name
    } else {
        format!("C{name}")
    }
}

pub(super) fn doc_comment(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("/// {}\n", l.trim()))
        .collect()
}

/// `edge.telemetry` → `edge_telemetry`; with a version, `event_v2_0`.
pub(super) fn module_name(contract: &str, version: Option<&str>) -> String {
    let mut name: String = contract
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    if let Some(v) = version {
        name.push_str("_v");
        name.extend(
            v.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    // A contract named `type` or `self` must not become a keyword.
    if syn::parse_str::<syn::Ident>(&name).is_err() {
        name.push('_');
    }
    name
}

/// `ORION Event` → `OrionEvent`, `edge.telemetry` → `EdgeTelemetry`.
pub(super) fn pascal(text: &str) -> String {
    let mut out = String::new();
    for word in text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            let rest: String = chars.collect();
            // `ORION` → `Orion`, but `batteryPercent` keeps its inner capital.
            if rest.chars().all(|c| !c.is_ascii_lowercase()) {
                out.push_str(&rest.to_ascii_lowercase());
            } else {
                out.push_str(&rest);
            }
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'T');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(pascal("ORION Event"), "OrionEvent");
        assert_eq!(pascal("edge.telemetry"), "EdgeTelemetry");
        assert_eq!(pascal("battery_percent"), "BatteryPercent");
        assert_eq!(module_name("edge.telemetry", None), "edge_telemetry");
        assert_eq!(module_name("event", Some("2.0")), "event_v2_0");
    }
}
