//! The command's input: one JSON document or NDJSON, from a file or
//! standard input, split into messages with their line numbers.

use std::io::Read as _;
use std::process::ExitCode;

/// The whole input: a file, or standard input for `-`; a usage error
/// (already reported) when it cannot be read.
pub fn read_input(file: &str) -> Result<String, ExitCode> {
    let mut text = String::new();
    let result = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    result.map_err(|e| {
        crate::commands::fail(crate::EXIT_USAGE, format!("cannot read {file}: {e}"))
    })?;
    Ok(text)
}

/// Splits CLI input into messages: the whole input if it is one JSON
/// document (pretty-printed or not), else one message per non-empty line
/// (NDJSON). Returns `(line number, text)` pairs; line numbers are 1-based.
#[must_use]
pub fn split_json_input(input: &str) -> Vec<(usize, &str)> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Vec::new();
    }
    if serde_json::from_str::<serde::de::IgnoredAny>(trimmed).is_ok() {
        let line = input.len() - input.trim_start().len();
        let line = input[..line].matches('\n').count() + 1;
        return vec![(line, trimmed)];
    }
    input
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_ndjson() {
        assert_eq!(
            split_json_input("{\n  \"a\": 1\n}\n"),
            vec![(1, "{\n  \"a\": 1\n}")]
        );
        assert_eq!(
            split_json_input("{\"a\":1}\n\n{\"a\":2}\n"),
            vec![(1, "{\"a\":1}"), (3, "{\"a\":2}")]
        );
        assert_eq!(
            split_json_input("{\"a\":1}\n{broken\n"),
            vec![(1, "{\"a\":1}"), (2, "{broken")]
        );
        assert!(split_json_input("  \n").is_empty());
    }
}
