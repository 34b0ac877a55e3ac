//! `orion-bus serve`: `/healthz`, `/readyz` and `/metrics`, and with
//! `--observe` the observer over every contract stream.

use std::time::Duration;

use std::process::ExitCode;

use super::fail;
use super::{connect, load_contracts};
use crate::EXIT_FAILED;
use crate::config::Settings;

pub(crate) async fn run(
    settings: &Settings,
    observe: bool,
    from_beginning: bool,
    summary_every: Duration,
) -> ExitCode {
    let registry = match load_contracts(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let bus = match connect(settings, registry).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let shutdown = crate::signal::shutdown_token();
    let observer = observe.then(|| {
        let bus = bus.clone();
        let token = shutdown.clone();
        let from = if from_beginning {
            orion_bus::observer::ObserveFrom::Beginning
        } else {
            orion_bus::observer::ObserveFrom::Now
        };
        let check_every = settings.observe_check_interval;
        tokio::spawn(async move {
            orion_bus::observer::run(&bus, from, summary_every, check_every, token).await
        })
    });
    let result = orion_bus::http::serve(settings.http_addr, bus, shutdown.clone(), |addr| {
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    })
    .await;
    shutdown.cancel();
    if let Some(task) = observer {
        match task.await {
            Ok(Ok(report)) => tracing::info!(observed = report.total(), "observer stopped"),
            Ok(Err(e)) => return fail(EXIT_FAILED, e),
            Err(e) => return fail(EXIT_FAILED, e),
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(
            EXIT_FAILED,
            format!("http server on {}: {e}", settings.http_addr),
        ),
    }
}
