//! `orion-bus bench`: the load generator's options from the command line,
//! and its report, on a throwaway redis-server unless a Redis URL was
//! given.

use std::io::{Read, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

use orion_bus_harness::RedisServer;

use super::{examples_unless_given, fail};
use crate::config::Settings;
use crate::{EXIT_FAILED, EXIT_USAGE};

// The arguments of `orion-bus bench` (its settings come from `Settings`);
// no doc comment, so that the subcommand's own help stays its about text.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// publish, e2e or rate.
    #[arg(value_parser = ["publish", "e2e", "rate"])]
    pub(crate) scenario: String,
    /// How long to publish, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub(crate) duration: std::time::Duration,
    /// Consumers in the group (e2e, rate; 0 makes `rate` publish only).
    /// [default: 20 for e2e, 1 for rate]
    #[arg(long)]
    pub(crate) consumers: Option<usize>,
    /// Offered load of `rate`, in messages per second.
    #[arg(long, default_value_t = 1000)]
    pub(crate) rate: u64,
    /// Messages per publish call (publish, e2e). [default: 1 for
    /// publish, 64 for e2e]
    #[arg(long)]
    pub(crate) pipeline: Option<usize>,
    /// Concurrent publishing tasks (publish, e2e). [default: 1 for
    /// publish, 4 for e2e]
    #[arg(long)]
    pub(crate) publishers: Option<usize>,
    /// Contract to publish: an example one (sensor.reading, alert,
    /// command), or, with --contracts-dir and --sample, any contract.
    #[arg(long, default_value = "sensor.reading")]
    pub(crate) contract: String,
    /// A file (or - for stdin) holding one valid message of --contract,
    /// published over and over with a timestamp written into one of
    /// its free string fields. Required for a non-example contract.
    #[arg(long, value_name = "FILE")]
    pub(crate) sample: Option<String>,
    /// Encoded size of each message in bytes. [default: the sample's
    /// natural size]
    #[arg(long)]
    pub(crate) payload_bytes: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Runs `bench` as the command line asked.
pub(crate) async fn run(settings: &Settings, args: BenchArgs) -> ExitCode {
    let BenchArgs {
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
    } = args;
    let sample = match sample.map(|path| read_sample(&path)).transpose() {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let scenario = match scenario.parse() {
        Ok(s) => s,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let mut options = crate::bench::BenchOptions::new(scenario);
    options.duration = duration;
    options.consumers = consumers;
    options.rate = rate;
    options.pipeline = pipeline;
    options.publishers = publishers;
    options.contract = contract;
    options.sample = sample;
    options.payload_bytes = payload_bytes;
    options.consumer = settings.consumer.clone();
    bench(settings, options, json).await
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

async fn bench(settings: &Settings, options: crate::bench::BenchOptions, json: bool) -> ExitCode {
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
    let progress: Arc<dyn Fn(&crate::bench::Progress) + Send + Sync> =
        Arc::new(|p: &crate::bench::Progress| eprintln!("{p}"));
    let shutdown = crate::signal::shutdown_token();
    let registry = match examples_unless_given(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = crate::bench::run(
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
        Err(crate::bench::BenchError::Options(e)) => fail(EXIT_USAGE, e),
        Err(e) => fail(EXIT_FAILED, e),
    }
}
