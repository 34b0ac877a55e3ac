//! One run from start to verdict: start Redis and the consumers, publish
//! while the nemesis acts, heal, wait for quiet, stop everything cleanly,
//! read what Redis holds, judge, and keep the evidence on failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::check::{self, EndState, Failure};
use crate::context::Run;
use crate::error::ChaosError;
use crate::fleet::Fleet;
use crate::history::Event;
use crate::nemesis::Nemesis;
use crate::options::{ChaosOptions, KEEP_ENV};
use crate::publisher;
use crate::report::{ChaosReport, timeline};
use crate::server::Server;

/// How long consumers get to come up, at the start and after the nemesis
/// (a same-name restart may wait out its predecessor's 10 s name lease).
const UP_LIMIT: Duration = Duration::from_secs(30);
/// How often quiet is checked.
const QUIET_POLL: Duration = Duration::from_millis(500);
/// Pending rows shown in a failure.
const PENDING_ROWS: usize = 200;

fn phase(run: &Run, what: impl Into<String>) {
    run.history.record(Event::Phase(what.into()));
}

/// Runs the checker once. See the crate docs.
///
/// # Errors
/// When the run cannot be carried out; a run that finds problems returns
/// a report whose [`ChaosReport::passed`] is false.
pub async fn run(options: ChaosOptions) -> Result<ChaosReport, ChaosError> {
    let server = Server::start().await?;
    let dir = tempfile::Builder::new()
        .prefix("orion-bus-chaos-")
        .tempdir()?;
    let run = Arc::new(Run::new(
        options.clone(),
        server.url().to_owned(),
        dir.path().to_owned(),
    ));
    let admin = Admin::connect(&run.url, &run.stream, &run.dead_letters).await?;

    phase(&run, format!("starting consumers against {}", run.url));
    let fleet = Arc::new(Fleet::start(&run));
    if !fleet.wait_all_up(UP_LIMIT).await {
        run.history
            .record(Event::Note("not every consumer started in time".to_owned()));
    }

    phase(
        &run,
        format!(
            "publishing; nemesis acts for {} s",
            options.nemesis_for.as_secs()
        ),
    );
    let stop_publishing = CancellationToken::new();
    let mut publishers = publisher::spawn(&run, &stop_publishing);
    let stop_nemesis = CancellationToken::new();
    let nemesis = tokio::spawn(
        Nemesis::new(run.clone(), server.clone(), fleet.clone(), admin.clone())
            .run(stop_nemesis.clone()),
    );
    tokio::time::sleep(options.nemesis_for).await;
    stop_nemesis.cancel();
    let faults = nemesis
        .await
        .map_err(|e| ChaosError::Task(format!("nemesis: {e}")))??;
    stop_publishing.cancel();
    while publishers.join_next().await.is_some() {}

    phase(&run, "healing: Redis and every consumer back up");
    server.resume().await?;
    if !server.is_up().await? {
        server.start_again(&run).await?;
    }
    if !fleet.wait_all_up(UP_LIMIT).await {
        run.history.record(Event::Note(
            "not every consumer came back in time".to_owned(),
        ));
    }

    phase(&run, "waiting for quiet");
    let time_to_quiet = wait_quiet(&run, &admin, options.quiet_timeout).await;

    phase(&run, "stopping consumers");
    match Arc::into_inner(fleet) {
        Some(fleet) => fleet.stop().await,
        None => return Err(ChaosError::Task("the fleet is still shared".to_owned())),
    }

    phase(&run, "checking");
    let end = EndState {
        dead_letters: admin.dead_letters().await?,
        pending: admin.pending_count().await?,
        pending_rows: admin.pending_rows(PENDING_ROWS).await?,
        stream: admin.stream_entries().await?,
    };
    let snapshot = run.ledger.snapshot();
    let mut verdict = check::judge(&snapshot, &end, options.idempotency);
    if time_to_quiet.is_none() {
        verdict.failures.push(Failure::NotQuiet(
            options.quiet_timeout,
            still_open(&run, &admin).await,
        ));
    }
    let history = run.history.events();
    let kept_dir = if verdict.failures.is_empty() && std::env::var_os(KEEP_ENV).is_none() {
        None
    } else {
        std::fs::write(
            dir.path().join("timeline.txt"),
            timeline(&history, &snapshot),
        )?;
        std::fs::write(dir.path().join("redis.log"), server.log())?;
        Some(dir.keep())
    };
    Ok(ChaosReport {
        label: options.label.clone(),
        seed: options.seed,
        nemesis_for: options.nemesis_for,
        idempotency: options.idempotency,
        consumers: (options.library.len(), options.cli_count()),
        figures: verdict.figures,
        faults,
        time_to_quiet,
        failures: verdict.failures,
        warnings: verdict.warnings,
        repeats: verdict.repeats,
        history,
        kept_dir,
        snapshot,
    })
}

/// What keeps a run from being quiet, in one line.
async fn still_open(run: &Run, admin: &Admin) -> String {
    let rows = admin.pending_rows(10).await.unwrap_or_default();
    let dead = admin.dead_letters().await.unwrap_or_default();
    let stream = admin.stream_entries().await.unwrap_or_default();
    let (acked, in_stream) = check::open_entries(&run.ledger.snapshot(), &dead, &stream);
    let pending: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} on {} idle {} ms after {} deliveries",
                r.entry, r.consumer, r.idle_ms, r.deliveries
            )
        })
        .collect();
    format!(
        "pending [{}]; acknowledged publishes unaccounted {} (first {:?}); stream entries unaccounted {} (first {:?})",
        pending.join(", "),
        acked.len(),
        acked.iter().take(5).collect::<Vec<_>>(),
        in_stream.len(),
        in_stream.iter().take(5).collect::<Vec<_>>(),
    )
}

/// Waits until nothing is pending in the group and every written message
/// is accounted for; returns how long that took, `None` past `limit`.
async fn wait_quiet(run: &Run, admin: &Admin, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if let (Ok(Some(0)), Ok(dead), Ok(stream)) = (
            admin.pending_count().await,
            admin.dead_letters().await,
            admin.stream_entries().await,
        ) && check::unaccounted(&run.ledger.snapshot(), &dead, &stream) == 0
        {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(QUIET_POLL).await;
    }
}
