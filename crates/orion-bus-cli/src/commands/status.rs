//! `orion-bus status`: streams, groups, consumers and dead letters, as a
//! table or JSON.

use std::io::Write as _;

use std::process::ExitCode;

use super::fail;
use super::{connect, load_contracts};
use crate::EXIT_FAILED;
use crate::config::Settings;

pub(crate) async fn run(settings: &Settings, json: bool) -> ExitCode {
    let registry = match load_contracts(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let bus = match connect(settings, registry).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    match orion_bus::status::collect(&bus).await {
        Ok(all) if json => match serde_json::to_string_pretty(&all) {
            Ok(text) => {
                let _ = say!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_FAILED, e),
        },
        Ok(all) => {
            let _ = say!("{}", orion_bus::status::render(&all).trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, e),
    }
}
