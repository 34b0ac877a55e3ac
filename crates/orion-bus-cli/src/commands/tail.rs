//! `orion-bus tail`: a stream read without a group, each entry judged
//! against its contract; never acks.

use std::io::Write as _;

use orion_bus::inspect;

use std::process::ExitCode;

use super::fail;
use super::{connect, load_contracts};
use crate::config::Settings;
use crate::{EXIT_FAILED, EXIT_USAGE};

pub(crate) async fn run(
    settings: &Settings,
    contract_name: &str,
    from: Option<String>,
    count: Option<usize>,
    follow: bool,
) -> ExitCode {
    let registry = match load_contracts(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let contract = match registry.get(contract_name) {
        Ok(c) => c.clone(),
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let bus = match connect(settings, registry).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let stream = match bus.stream_for(contract_name) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let max_bytes = settings.bus.max_message_bytes;
    let count = count.unwrap_or(10);
    let mut conn = bus.connection();
    let first = match &from {
        Some(id) => inspect::range_from(&mut conn, &stream, id, count).await,
        None => inspect::last_entries(&mut conn, &stream, count).await,
    };
    let entries = match first {
        Ok(e) => e,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    let mut last = entries.last().map(|e| e.id.clone());
    // `false` once standard output is gone (`tail --follow | head`).
    let print = |entry: &orion_bus::wire::RawEntry| {
        let record = inspect::judge(&contract, &stream, entry, max_bytes);
        match serde_json::to_string(&record) {
            Ok(line) => say!("{line}"),
            Err(e) => {
                eprintln!("orion-bus: cannot print {}: {e}", entry.id);
                true
            }
        }
    };
    if !entries.iter().all(print) {
        return ExitCode::SUCCESS;
    }
    if !follow {
        return ExitCode::SUCCESS;
    }
    let after = match last.take() {
        Some(id) => id,
        None => match &from {
            Some(id) => id.clone(),
            None => match inspect::last_id(&mut conn, &stream).await {
                Ok(id) => id,
                Err(e) => return fail(EXIT_FAILED, e),
            },
        },
    };
    let shutdown = crate::signal::shutdown_token();
    let mut reader = match settings
        .redis
        .connect_blocking(settings.consumer.block)
        .await
    {
        Ok(c) => c,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    inspect::follow(
        &mut reader,
        &stream,
        after,
        settings.consumer.block,
        &shutdown,
        print,
    )
    .await;
    ExitCode::SUCCESS
}
