//! `orion-bus validate`: messages checked against a contract, offline.

use std::io::Write as _;
use std::process::ExitCode;

use super::fail;
use super::load_contracts;
use crate::config::Settings;
use crate::input::{read_input, split_json_input};
use crate::{EXIT_FAILED, EXIT_USAGE};

pub(crate) fn run(settings: &Settings, contract: &str, file: &str) -> ExitCode {
    let registry = match load_contracts(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let contract = match registry.get(contract) {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let text = match read_input(file) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let messages = split_json_input(&text);
    if messages.is_empty() {
        return fail(EXIT_FAILED, "no message in the input");
    }
    let mut invalid = 0;
    for (line, message) in &messages {
        let problems: Vec<String> = match serde_json::from_str(message) {
            Err(e) => vec![format!("not valid JSON: {e}")],
            Ok(value) => match contract.validate(&value) {
                Ok(()) => continue,
                Err(v) => v.iter().map(ToString::to_string).collect(),
            },
        };
        invalid += 1;
        for p in problems {
            let _ = say!("line {line}: {p}");
        }
    }
    if invalid == 0 {
        let _ = say!(
            "{} message(s) valid against {}",
            messages.len(),
            contract.name()
        );
        ExitCode::SUCCESS
    } else {
        let _ = say!(
            "{invalid} of {} message(s) invalid against {}",
            messages.len(),
            contract.name()
        );
        ExitCode::from(EXIT_FAILED)
    }
}
