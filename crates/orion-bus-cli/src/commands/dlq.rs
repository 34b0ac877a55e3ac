//! `orion-bus dlq`: list, show, redrive and purge a contract's dead
//! letters.

use std::io::Write as _;

use std::process::ExitCode;

use super::fail;
use super::{connect, load_contracts};
use crate::DlqAction;
use crate::config::Settings;
use crate::{EXIT_FAILED, EXIT_USAGE};

pub(crate) async fn run(settings: &Settings, action: DlqAction) -> ExitCode {
    let contract = match &action {
        DlqAction::List { contract, .. }
        | DlqAction::Show { contract, .. }
        | DlqAction::Redrive { contract, .. }
        | DlqAction::Purge { contract, .. } => contract.clone(),
    };
    let registry = match load_contracts(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if let Err(e) = registry.get(&contract) {
        return fail(EXIT_USAGE, e);
    }
    let bus = match connect(settings, registry).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let stream = match bus.stream_for(&contract) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let dlq = orion_bus::wire::dead_letter_stream(&stream);
    let mut conn = bus.connection();
    // `false` once standard output is gone.
    let print = |letter: &orion_bus::dlq::DeadLetter| match serde_json::to_string(letter) {
        Ok(line) => say!("{line}"),
        Err(e) => {
            eprintln!("orion-bus: cannot print {}: {e}", letter.dlq_id);
            true
        }
    };
    match action {
        DlqAction::List {
            from, count, full, ..
        } => {
            match orion_bus::dlq::list(&mut conn, &dlq, &from, count).await {
                Ok(letters) => {
                    // Readable by default: a 3 MB payload is not a line.
                    let _ = letters
                        .into_iter()
                        .map(|l| {
                            if full {
                                l
                            } else {
                                l.truncated(orion_bus::dlq::PREVIEW_BYTES)
                            }
                        })
                        .all(|l| print(&l));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_FAILED, e),
            }
        }
        DlqAction::Show { id, .. } => match orion_bus::dlq::show(&mut conn, &dlq, &id).await {
            Ok(Some(letter)) => {
                match serde_json::to_string_pretty(&letter) {
                    Ok(text) => {
                        let _ = say!("{text}");
                    }
                    Err(e) => return fail(EXIT_FAILED, e),
                }
                ExitCode::SUCCESS
            }
            Ok(None) => fail(EXIT_FAILED, format!("no dead letter {id} in {dlq}")),
            Err(e) => fail(EXIT_FAILED, e),
        },
        DlqAction::Redrive { ids, all, .. } => {
            let ids = match select_ids(&mut conn, &dlq, ids, all).await {
                Ok(ids) => ids,
                Err(e) => return fail(EXIT_FAILED, e),
            };
            match orion_bus::dlq::redrive(&bus, &contract, &ids).await {
                Ok(report) => {
                    for (dlq_id, new_id) in &report.redriven {
                        let _ = say!("redriven {dlq_id} -> {stream} {new_id}");
                    }
                    for (dlq_id, why) in &report.kept {
                        eprintln!("kept {dlq_id}: {why}");
                    }
                    if report.kept.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(EXIT_FAILED)
                    }
                }
                Err(e) => fail(EXIT_FAILED, e),
            }
        }
        DlqAction::Purge { ids, all, .. } => {
            let ids = match select_ids(&mut conn, &dlq, ids, all).await {
                Ok(ids) => ids,
                Err(e) => return fail(EXIT_FAILED, e),
            };
            match orion_bus::dlq::purge(&mut conn, &dlq, &ids).await {
                Ok(n) => {
                    let _ = say!("purged {n} of {} dead letter(s) from {dlq}", ids.len());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EXIT_FAILED, e),
            }
        }
    }
}

async fn select_ids(
    conn: &mut redis::aio::ConnectionManager,
    dlq: &str,
    ids: Vec<String>,
    all: bool,
) -> redis::RedisResult<Vec<String>> {
    if all {
        orion_bus::dlq::all_ids(conn, dlq).await
    } else {
        Ok(ids)
    }
}
