//! `orion-bus replay`: a group moved back to re-read from an id or a time,
//! after confirmation.

use std::io::Write as _;

use std::process::ExitCode;

use super::fail;
use super::{connect, load_contracts};
use crate::config::Settings;
use crate::{EXIT_FAILED, EXIT_USAGE};

pub(crate) async fn run(
    settings: &Settings,
    contract: &str,
    group: &str,
    from_id: Option<String>,
    from_time: Option<String>,
    yes: bool,
) -> ExitCode {
    use orion_bus::status::ReplayFrom;
    let from = match (from_id, from_time) {
        (Some(id), _) => match id.parse::<orion_bus::StartId>() {
            Ok(_) => ReplayFrom::Id(id),
            Err(e) => return fail(EXIT_USAGE, e),
        },
        (None, Some(t)) => match humantime::parse_rfc3339_weak(&t) {
            Ok(at) => ReplayFrom::Time(at),
            Err(e) => return fail(EXIT_USAGE, format!("--from-time {t:?}: {e}")),
        },
        (None, None) => return fail(EXIT_USAGE, "give --from-id or --from-time"),
    };
    let registry = match load_contracts(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let Err(e) = registry.get(contract) {
        return fail(EXIT_USAGE, e);
    }
    if !yes {
        eprint!(
            "Move group {group} on contract {contract} to re-read {from}? Its consumers will re-read from there. [y/N] "
        );
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).is_err()
            || !matches!(answer.trim(), "y" | "Y" | "yes")
        {
            return fail(EXIT_FAILED, "not confirmed; nothing changed");
        }
    }
    let bus = match connect(settings, registry).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    match orion_bus::status::replay(&bus, contract, group, &from).await {
        Ok(id) => {
            let _ = say!("group {group} now re-reads {contract} after {id}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, e),
    }
}
