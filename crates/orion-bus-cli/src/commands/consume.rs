//! `orion-bus consume`: a consumer whose handler prints each message as
//! one NDJSON line, acking an entry only once its line was written.

use std::sync::Arc;

use orion_bus::{Consumer, Delivery, HandlerError};
use tokio::io::AsyncWriteExt as _;

use std::process::ExitCode;

use super::fail;
use super::{connect, load_contracts};
use crate::config::Settings;
use crate::{EXIT_FAILED, EXIT_USAGE};

/// One line of `consume`'s output.
#[derive(serde::Serialize)]
struct ConsumedLine<'a> {
    contract: &'a str,
    stream: &'a str,
    id: &'a str,
    data: &'a serde_json::value::RawValue,
}

pub(crate) async fn run(
    settings: &Settings,
    contracts: Vec<String>,
    group: String,
    consumer: String,
    count: Option<u64>,
    metrics: bool,
) -> ExitCode {
    let registry = match load_contracts(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    for c in &contracts {
        if let Err(e) = registry.get(c) {
            return fail(EXIT_USAGE, e);
        }
    }
    let bus = match connect(settings, registry).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let mut options = settings.consumer.clone();
    options.group = group;
    options.consumer = consumer;
    options.contracts = contracts;
    options.limit = count;
    // By default one entry at a time: the output stays in delivery order,
    // and when the output goes away only the entry being printed was read
    // for nothing (each read counts toward max_deliveries). Given values
    // are honoured: more throughput, output no longer in order.
    if !settings.explicit.contains("concurrency") {
        options.concurrency = 1;
    }
    if !settings.explicit.contains("max_in_flight") {
        options.max_in_flight = 1;
    }
    if !settings.explicit.contains("read_count") {
        options.read_count = 1;
    }
    let consumer = match Consumer::new(&bus, options).await {
        Ok(c) => c,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    // Written asynchronously: a reader that stops reading (a full pipe)
    // holds up this handler only, and the shutdown grace still ends it.
    let out = Arc::new(tokio::sync::Mutex::new(tokio::io::stdout()));
    let shutdown = crate::signal::shutdown_token();
    let http = if metrics {
        let listener = match tokio::net::TcpListener::bind(settings.http_addr).await {
            Ok(l) => l,
            Err(e) => {
                return fail(
                    EXIT_FAILED,
                    format!("http server on {}: {e}", settings.http_addr),
                );
            }
        };
        let (bus, token) = (bus.clone(), shutdown.clone());
        Some(tokio::spawn(async move {
            orion_bus::http::serve_on(listener, bus, token).await
        }))
    } else {
        None
    };
    let stop = shutdown.clone();
    let handler = move |d: Delivery| {
        let out = out.clone();
        let stop = stop.clone();
        async move {
            // The message with its numbers exactly as they were written
            // (a `Value` would turn integers beyond 64 bits into floats).
            let line = ConsumedLine {
                contract: d.contract(),
                stream: d.stream(),
                id: d.id(),
                data: &orion_bus::wire::exact_json(d.message(), d.data()),
            };
            let mut text = serde_json::to_string(&line)
                .map_err(|e| HandlerError::permanent(format!("cannot print the message: {e}")))?;
            text.push('\n');
            let mut out = out.lock().await;
            // The entry is acked only if its line was written. When the
            // output is gone (`consume | head -1`), stop: every further
            // entry would fail the same way and use up its deliveries.
            let written = async {
                out.write_all(text.as_bytes()).await?;
                out.flush().await
            };
            written.await.map_err(|e| {
                stop.cancel();
                HandlerError::retryable(format!("cannot write to standard output: {e}"))
            })
        }
    };
    let http_stop = shutdown.clone();
    let result = consumer.run(handler, shutdown).await;
    if let Some(task) = http {
        http_stop.cancel();
        if let Ok(Err(e)) = task.await {
            tracing::warn!(error = %e, "http server failed");
        }
    }
    match result {
        Ok(report) => {
            tracing::info!(?report, "consume finished");
            if report.handler_errors > 0 {
                ExitCode::from(EXIT_FAILED)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(EXIT_FAILED, e),
    }
}
