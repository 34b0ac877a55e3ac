//! `orion-bus publish`: every message validated, then written in
//! transactions of up to [`PUBLISH_CHUNK`], printing the ids Redis confirmed.

use std::io::Write;

use orion_bus::PublishError;

use std::process::ExitCode;

use super::fail;
use super::{connect, load_contracts};
use crate::config::Settings;
use crate::input::{read_input, split_json_input};
use crate::{EXIT_FAILED, EXIT_USAGE};

/// Largest number of messages `publish` writes in one transaction.
const PUBLISH_CHUNK: usize = 1000;

/// Invalid messages listed one per line before the summary, at most.
const MAX_LISTED_ERRORS: usize = 20;

pub(crate) async fn run(settings: &Settings, contract: &str, file: &str) -> ExitCode {
    let registry = match load_contracts(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let Err(e) = registry.get(contract) {
        return fail(EXIT_USAGE, e);
    }
    let text = match read_input(file) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let messages = split_json_input(&text);
    if messages.is_empty() {
        return fail(EXIT_FAILED, "no message in the input");
    }
    let bus = match connect(settings, registry).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    // Validate everything before writing anything.
    let mut prepared = Vec::with_capacity(messages.len());
    let mut errors = Vec::new();
    for (line, message) in &messages {
        match bus.prepare_json(contract, message.as_bytes()) {
            Ok(p) => prepared.push(p),
            Err(e) => errors.push(format!("line {line}: {}", describe(&e))),
        }
    }
    if !errors.is_empty() {
        for e in errors.iter().take(MAX_LISTED_ERRORS) {
            eprintln!("{e}");
        }
        if errors.len() > MAX_LISTED_ERRORS {
            eprintln!("... and {} more", errors.len() - MAX_LISTED_ERRORS);
        }
        return fail(
            EXIT_FAILED,
            format!(
                "{} of {} message(s) invalid; nothing was published",
                errors.len(),
                messages.len()
            ),
        );
    }
    // Each chunk is one transaction: written whole or not at all. Only ids
    // Redis confirmed are printed.
    let total = prepared.len();
    for (n, chunk) in prepared.chunks(PUBLISH_CHUNK).enumerate() {
        let first = n * PUBLISH_CHUNK;
        match bus.publish_prepared(chunk).await {
            Ok(ids) => {
                let mut stdout = std::io::stdout().lock();
                for id in ids {
                    let _ = writeln!(stdout, "{id}");
                }
                let _ = stdout.flush();
            }
            Err(e) => {
                let last = first + chunk.len();
                let line = |i: usize| messages.get(i).map_or(0, |(l, _)| *l);
                let this = format!(
                    "messages {}-{} (lines {}-{})",
                    first + 1,
                    last,
                    line(first),
                    line(last - 1)
                );
                let what = if e.may_have_been_written() {
                    format!("{this}: outcome unknown, all or none of them were written")
                } else {
                    format!("{this}: not written")
                };
                let rest = if last < total {
                    format!("; messages {}-{total} not sent", last + 1)
                } else {
                    String::new()
                };
                return fail(
                    EXIT_FAILED,
                    format!("{e}; {first} message(s) written (ids printed); {what}{rest}"),
                );
            }
        }
    }
    ExitCode::SUCCESS
}

fn describe(e: &PublishError) -> String {
    match e {
        PublishError::Invalid { violations, .. } => violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}
