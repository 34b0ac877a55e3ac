//! One function per subcommand: glue between the command line and the
//! library. Data goes to stdout, diagnostics to stderr.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use orion_bus::config::Settings;
use orion_bus::inspect::{self, split_json_input};
use orion_bus::{Bus, Consumer, ContractRegistry, Delivery, HandlerError, Metrics, PublishError};
use orion_bus_harness::RedisServer;
use tokio::io::AsyncWriteExt as _;

use crate::{Command, DlqAction, EXIT_FAILED, EXIT_USAGE};

/// Writes a line to standard output; `false` when it is gone (a closed
/// pipe, as in `orion-bus tail --follow | head`), where `println!` would
/// panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        writeln!(out, $($arg)*).and_then(|()| out.flush()).is_ok()
    }};
}

/// Largest number of messages `publish` writes in one transaction.
const PUBLISH_CHUNK: usize = 1000;

/// Invalid messages listed one per line before the summary, at most.
const MAX_LISTED_ERRORS: usize = 20;

pub async fn run(command: Command, settings: Settings) -> ExitCode {
    match command {
        Command::Codegen { out } => codegen(&settings, &out),
        Command::Validate { contract, file } => validate(&settings, &contract, &file),
        Command::Publish { contract, file } => publish(&settings, &contract, &file).await,
        Command::Consume {
            contracts,
            group,
            consumer,
            count,
            metrics,
        } => consume(&settings, contracts, group, consumer, count, metrics).await,
        Command::Tail {
            contract,
            from,
            count,
            follow,
        } => tail(&settings, &contract, from, count, follow).await,
        Command::Dlq { action } => dlq(&settings, action).await,
        Command::Serve {
            observe,
            from_beginning,
            summary_every,
        } => serve(&settings, observe, from_beginning, summary_every).await,
        Command::Status { json } => status(&settings, json).await,
        Command::Replay {
            contract,
            group,
            from_id,
            from_time,
            yes,
        } => replay(&settings, &contract, &group, from_id, from_time, yes).await,
        Command::Demo { messages } => demo(&settings, messages).await,
        Command::Bench {
            scenario,
            duration,
            consumers,
            rate,
            pipeline,
            publishers,
            contract,
            sample,
            payload_bytes,
            json,
        } => {
            let sample = match sample.map(|path| read_sample(&path)).transpose() {
                Ok(s) => s,
                Err(e) => return fail(EXIT_USAGE, e),
            };
            let scenario = match scenario.parse() {
                Ok(s) => s,
                Err(e) => return fail(EXIT_USAGE, e),
            };
            let mut options = orion_bus::bench::BenchOptions::new(scenario);
            options.duration = duration;
            options.consumers = consumers;
            options.rate = rate;
            options.pipeline = pipeline;
            options.publishers = publishers;
            options.contract = contract;
            options.sample = sample;
            options.payload_bytes = payload_bytes;
            options.consumer = settings.consumer.clone();
            bench(&settings, options, json).await
        }
    }
}

/// One JSON message from a file (`-` for standard input).
fn read_sample(path: &str) -> Result<serde_json::Value, String> {
    let text = if path == "-" {
        let mut t = String::new();
        std::io::stdin()
            .read_to_string(&mut t)
            .map_err(|e| format!("--sample -: {e}"))?;
        t
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("--sample {path}: {e}"))?
    };
    serde_json::from_str(&text).map_err(|e| format!("--sample {path}: not one JSON message: {e}"))
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("orion-bus: {message}");
    ExitCode::from(code)
}

/// The example contracts, or the `--contracts-dir` ones when it was given
/// (`demo` and `bench` run on the examples by default).
fn examples_unless_given(settings: &Settings) -> Result<ContractRegistry, ExitCode> {
    if settings.contracts_dir_given {
        load_contracts(settings)
    } else {
        orion_bus::examples::registry(settings.contracts).map_err(|e| fail(EXIT_USAGE, e))
    }
}

fn load_contracts(settings: &Settings) -> Result<ContractRegistry, ExitCode> {
    ContractRegistry::load_dir(&settings.contracts_dir, settings.contracts)
        .map_err(|e| fail(EXIT_USAGE, e))
}

async fn connect(settings: &Settings, registry: ContractRegistry) -> Result<Bus, ExitCode> {
    Bus::connect(
        settings.redis.clone(),
        registry,
        settings.bus.clone(),
        Metrics::new(),
    )
    .await
    .map_err(|e| fail(EXIT_FAILED, e))
}

fn read_input(file: &str) -> Result<String, ExitCode> {
    let mut text = String::new();
    let result = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    result.map_err(|e| fail(EXIT_USAGE, format!("cannot read {file}: {e}")))?;
    Ok(text)
}

fn validate(settings: &Settings, contract: &str, file: &str) -> ExitCode {
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

async fn publish(settings: &Settings, contract: &str, file: &str) -> ExitCode {
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

/// One line of `consume`'s output.
#[derive(serde::Serialize)]
struct ConsumedLine<'a> {
    contract: &'a str,
    stream: &'a str,
    id: &'a str,
    data: &'a serde_json::value::RawValue,
}

async fn consume(
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

async fn tail(
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
    let mut after = match last.take() {
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
    let mut backoff = orion_bus::backoff::Backoff::redis();
    loop {
        let read = tokio::select! {
            () = shutdown.cancelled() => return ExitCode::SUCCESS,
            r = inspect::read_after(&mut reader, &stream, &after, 100, settings.consumer.block) => r,
        };
        match read {
            Ok(entries) => {
                backoff.reset();
                for entry in &entries {
                    if !print(entry) {
                        return ExitCode::SUCCESS;
                    }
                    after.clone_from(&entry.id);
                }
            }
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "XREAD failed; retrying");
                if !backoff.wait(&shutdown).await {
                    return ExitCode::SUCCESS;
                }
            }
        }
    }
}

async fn serve(
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
        tokio::spawn(
            async move { orion_bus::observer::run(&bus, from, summary_every, token).await },
        )
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

async fn status(settings: &Settings, json: bool) -> ExitCode {
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

async fn replay(
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

async fn demo(settings: &Settings, messages: u64) -> ExitCode {
    // A throwaway server unless the user pointed us at one.
    let mut server = None;
    let mut redis = settings.redis.clone();
    if !settings.redis_url_given {
        match RedisServer::start() {
            Ok(s) => {
                let _ = say!(
                    "started a throwaway redis-server on {} (data in {})",
                    s.url(),
                    s.dir().display()
                );
                redis = orion_bus::RedisSettings::new(s.url());
                server = Some(s);
            }
            Err(e) => return fail(EXIT_FAILED, e),
        }
    }
    let registry = match examples_unless_given(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let options = settings.bus.clone().prefix(orion_bus::demo::DEMO_PREFIX);
    let bus = match Bus::connect(redis, registry, options, Metrics::new()).await {
        Ok(b) => b,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    let shutdown = crate::signal::shutdown_token();
    let timeout = Duration::from_secs(120);
    let result =
        tokio::time::timeout(timeout, orion_bus::demo::run(&bus, messages, shutdown)).await;
    let code = match result {
        Ok(Ok(report)) => {
            let _ = say!("{report}");
            if report.is_consistent() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Ok(Err(e)) => fail(EXIT_FAILED, e),
        Err(_) => fail(
            EXIT_FAILED,
            format!("demo did not finish within {timeout:?}"),
        ),
    };
    if let Some(mut s) = server {
        s.stop();
        let _ = say!("stopped the throwaway redis-server");
    }
    code
}

async fn bench(
    settings: &Settings,
    options: orion_bus::bench::BenchOptions,
    json: bool,
) -> ExitCode {
    // A throwaway server unless the user pointed us at one (as `demo`).
    let mut server = None;
    let mut redis = settings.redis.clone();
    if !settings.redis_url_given {
        match RedisServer::start() {
            Ok(s) => {
                eprintln!("started a throwaway redis-server on {}", s.url());
                redis = orion_bus::RedisSettings::new(s.url());
                server = Some(s);
            }
            Err(e) => return fail(EXIT_FAILED, e),
        }
    }
    let progress: Arc<dyn Fn(&orion_bus::bench::Progress) + Send + Sync> =
        Arc::new(|p: &orion_bus::bench::Progress| eprintln!("{p}"));
    let shutdown = crate::signal::shutdown_token();
    let registry = match examples_unless_given(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = orion_bus::bench::run(
        redis,
        settings.bus.clone(),
        registry,
        options,
        progress,
        shutdown,
    )
    .await;
    if let Some(mut s) = server {
        s.stop();
    }
    match result {
        Ok(report) => {
            if json {
                match serde_json::to_string(&report) {
                    Ok(line) => {
                        let _ = say!("{line}");
                    }
                    Err(e) => return fail(EXIT_FAILED, e),
                }
            } else {
                let _ = say!("{report}");
            }
            if report.is_complete() {
                ExitCode::SUCCESS
            } else {
                fail(
                    EXIT_FAILED,
                    format!("{} published message(s) were not handled", report.unhandled),
                )
            }
        }
        Err(orion_bus::bench::BenchError::Options(e)) => fail(EXIT_USAGE, e),
        Err(e) => fail(EXIT_FAILED, e),
    }
}

async fn dlq(settings: &Settings, action: DlqAction) -> ExitCode {
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

/// `orion-bus codegen`: types for the contracts directory, to a file
/// (written to a temporary file and renamed) or standard output.
fn codegen(settings: &Settings, out: &str) -> ExitCode {
    let code = match orion_bus_codegen::generate_dir(&settings.contracts_dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("orion-bus: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if out == "-" {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        return match stdout
            .write_all(code.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(EXIT_FAILED, format!("cannot write the types: {e}")),
        };
    }
    let path = std::path::Path::new(out);
    let tmp = path.with_extension("rs.tmp");
    let written = std::fs::write(&tmp, &code).and_then(|()| std::fs::rename(&tmp, path));
    match written {
        Ok(()) => {
            eprintln!(
                "orion-bus: wrote {} ({} lines) from {}",
                path.display(),
                code.lines().count(),
                settings.contracts_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            eprintln!("orion-bus: cannot write {}: {e}", path.display());
            ExitCode::from(EXIT_FAILED)
        }
    }
}
