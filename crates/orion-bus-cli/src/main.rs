//! The `orion-bus` command: parses arguments, resolves settings, sets up
//! logging and signals, and calls into the `orion_bus` library.
//!
//! Exit codes: 0 success; 1 invalid input or a failed operation; 2 a usage
//! or configuration error.

mod bench;
mod commands;
mod config;
mod demo;
mod input;
mod signal;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Given, LogFormat, SETTINGS, Settings, Source};
use clap::{
    Arg, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, parser::ValueSource,
};

/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for invalid input or a failed operation.
pub const EXIT_FAILED: u8 = 1;

/// A contract-validated event bus on Redis Streams, wire-compatible with
/// the ORION Python bus.
///
/// Every setting below can also come from an ORION_BUS_* environment
/// variable or from a TOML file (--config), in that order of precedence:
/// flag, environment, file, default.
#[derive(Debug, Parser)]
#[command(name = "orion-bus", version, max_term_width = 100)]
struct Cli {
    /// TOML file with settings (keys as the flags, with '_' for '-').
    #[arg(long, global = true, env = "ORION_BUS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate Rust types for the contracts in --contracts-dir.
    ///
    /// One module per contract version, with `ContractType` impls for
    /// typed publishing and consuming (see docs/CONTRACTS.md). The output
    /// needs the crates `orion-bus`, `serde` (derive), `serde_json` and
    /// `regress`. Only in a binary built with the `codegen` feature
    /// (`cargo install --path crates/orion-bus-cli --features codegen`).
    Codegen {
        /// Output file, or `-` for standard output. Written whole or not
        /// at all.
        #[arg(long, default_value = "-")]
        out: String,
    },
    /// Validate messages against a contract, offline (no Redis).
    ///
    /// Reads one JSON document or NDJSON. Exits 0 if every message is
    /// valid, 1 if any is invalid (violations printed), 2 on a usage or
    /// configuration error.
    Validate {
        /// Contract name, e.g. `event` or `edge.telemetry`.
        contract: String,
        /// Input file, or `-` for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Validate and publish messages (one JSON document or NDJSON).
    ///
    /// Every message is validated first; if any is invalid nothing is
    /// written and the exit code is 1. On success prints one stream id per
    /// message, in input order.
    Publish {
        /// Contract name.
        contract: String,
        /// Input file, or `-` for standard input.
        #[arg(default_value = "-")]
        file: String,
    },
    /// Consume from a consumer group and print each message as NDJSON.
    ///
    /// Each line is `{"contract":..,"stream":..,"id":..,"data":{..}}`; the
    /// entry is acked once its line is written. Poison entries go to the
    /// dead-letter stream. Stops on SIGINT/SIGTERM, or after --count.
    Consume {
        /// Contracts to consume (one consumer can read several streams).
        #[arg(required = true)]
        contracts: Vec<String>,
        /// Consumer group.
        #[arg(long)]
        group: String,
        /// Consumer name within the group.
        #[arg(long)]
        consumer: String,
        /// Exit after this many messages; never reads more than that, so
        /// it leaves nothing pending.
        #[arg(long)]
        count: Option<u64>,
        /// Also serve /healthz, /readyz and /metrics (this consumer's
        /// handler, ack and dead-letter figures) on --http-addr.
        #[arg(long)]
        metrics: bool,
    },
    /// Read a stream without a group and mark entries that break their
    /// contract. Never acks.
    Tail {
        /// Contract name.
        contract: String,
        /// Start at this id (inclusive). Default: the last --count entries.
        #[arg(long, value_name = "ID")]
        from: Option<String>,
        /// How many entries to show (without --follow, then exit). Default 10.
        #[arg(long)]
        count: Option<usize>,
        /// Keep waiting for new entries until interrupted.
        #[arg(long)]
        follow: bool,
    },
    /// Inspect and operate on a contract's dead-letter stream ({stream}:dlq).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Run the daemon: /healthz, /readyz and /metrics over HTTP.
    ///
    /// With --observe it also reads every contract stream without joining a
    /// group, validates every entry, and counts violations by contract and
    /// source (migration phase 1). Stops gracefully on SIGINT/SIGTERM.
    Serve {
        /// Observe every contract stream (no group, no acks).
        #[arg(long)]
        observe: bool,
        /// With --observe, also count the entries already in the streams.
        #[arg(long, requires = "observe")]
        from_beginning: bool,
        /// With --observe, how often to log a summary.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        summary_every: std::time::Duration,
    },
    /// One table of streams, groups, consumers and dead-letter sizes.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move a group's position so that its consumers re-read from a point.
    ///
    /// Pending entries are left as they are. Asks for confirmation unless
    /// given --yes.
    Replay {
        /// Contract.
        contract: String,
        /// The group to move.
        #[arg(long)]
        group: String,
        /// Re-read the entries after this id.
        #[arg(
            long,
            value_name = "ID",
            conflicts_with = "from_time",
            required_unless_present = "from_time"
        )]
        from_id: Option<String>,
        /// Re-read the entries stored at or after this RFC 3339 time.
        #[arg(long, value_name = "RFC3339")]
        from_time: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Run the end-to-end demo against a throwaway redis-server.
    ///
    /// Starts redis-server on a free port in a temp dir (unless a Redis URL
    /// is given), publishes and consumes the example contracts with some
    /// deliberately invalid and poison messages, prints what happened, and
    /// stops the server.
    Demo {
        /// Valid messages to publish.
        #[arg(long, default_value_t = 3000)]
        messages: u64,
    },
    /// Generate load and report throughput, latency percentiles, peak RSS
    /// and CPU time.
    ///
    /// Scenarios: `publish` (validated publishing, single or pipelined),
    /// `e2e` (publish, consume with validation, handle and ack, with N
    /// consumers in one group) and `rate` (a fixed offered load, for latency
    /// under load). Starts a throwaway redis-server unless a Redis URL is
    /// given; uses the example contracts under a stream prefix of its own,
    /// deleted afterwards. Progress goes to stderr. Consumers take
    /// --concurrency, --max-in-flight, --read-count and --block from the
    /// settings. See docs/BENCHMARKS.md.
    Bench(commands::bench::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum DlqAction {
    /// List dead letters as NDJSON, oldest first.
    ///
    /// Each payload and metadata value is cut to 256 bytes; the record then
    /// names what was cut (`truncated`) and the payload's full size
    /// (`data_bytes`). `--full`, or `dlq show`, gives everything.
    List {
        /// Contract whose dead letters to list.
        contract: String,
        /// Start at this dead-letter id (inclusive).
        #[arg(long, default_value = "-", value_name = "ID")]
        from: String,
        /// How many to list.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Show payloads and metadata whole, however large.
        #[arg(long)]
        full: bool,
    },
    /// Show one dead letter in full, payload included.
    Show {
        /// Contract.
        contract: String,
        /// Dead-letter id.
        id: String,
    },
    /// Re-validate dead letters and re-publish them to their original
    /// stream. Only those re-published are removed; the rest stay, with
    /// the reason printed. Exits 1 if any stayed.
    Redrive {
        /// Contract.
        contract: String,
        /// Dead-letter ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead letter of the contract.
        #[arg(long)]
        all: bool,
    },
    /// Delete exactly the given dead letters, nothing else.
    Purge {
        /// Contract.
        contract: String,
        /// Dead-letter ids.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every dead letter of the contract (needs --yes).
        #[arg(long, requires = "yes")]
        all: bool,
        /// Confirm --all.
        #[arg(long)]
        yes: bool,
    },
}

fn main() -> ExitCode {
    let command = SETTINGS.iter().fold(Cli::command(), |cmd, spec| {
        let mut help = spec.help.to_owned();
        if let Some(default) = spec.default {
            help.push_str(&format!(" [default: {default}]"));
        }
        let arg = Arg::new(spec.key)
            .long(spec.flag())
            .env(spec.env)
            .hide_env_values(spec.key.contains("password"))
            .value_name(spec.key.to_uppercase())
            .help(help)
            .global(true)
            .help_heading("Settings");
        // Switches (default false) also work bare: `--wait-for-name`.
        cmd.arg(if spec.default == Some("false") {
            arg.num_args(0..=1).default_missing_value("true")
        } else {
            arg
        })
    });
    let matches = command.get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let given = given(&matches);
    let mut settings = match config::resolve(&given, cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprint!("orion-bus: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // `bench` runs many consumers whose start/stop lines would drown its
    // progress: warnings only, unless a log level was asked for.
    if matches!(cli.command, Command::Bench(_) | Command::Codegen { .. })
        && !given.contains_key("log_level")
    {
        settings.log_level = "warn".to_owned();
    }
    init_logging(&settings);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = settings.worker_threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("orion-bus: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    // The command runs on a runtime worker, not on this thread: `block_on`
    // polls its future here, and every hand-over between it and the tasks
    // it spawns (reader, workers, acker) would wake another thread.
    let code = runtime.block_on(async move {
        tokio::spawn(commands::run(cli.command, settings))
            .await
            .unwrap_or_else(|e| {
                eprintln!("orion-bus: the command failed: {e}");
                ExitCode::from(EXIT_FAILED)
            })
    });
    // Do not wait for stray blocking reads: everything that matters was
    // drained and acked inside `run`.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// The settings given as flags or environment variables.
fn given(matches: &ArgMatches) -> Given {
    let mut out = Given::new();
    for spec in SETTINGS {
        let (Some(value), Some(source)) = (
            find_value(matches, spec.key),
            find_source(matches, spec.key),
        ) else {
            continue;
        };
        let source = match source {
            ValueSource::CommandLine => Source::Flag,
            ValueSource::EnvVariable => Source::Env,
            _ => continue,
        };
        out.insert(spec.key, (value, source));
    }
    out
}

fn find_value(matches: &ArgMatches, key: &str) -> Option<String> {
    if let Ok(Some(v)) = matches.try_get_one::<String>(key) {
        return Some(v.clone());
    }
    matches
        .subcommand()
        .and_then(|(_, sub)| find_value(sub, key))
}

fn find_source(matches: &ArgMatches, key: &str) -> Option<ValueSource> {
    if let Some(source) = matches.value_source(key)
        && source != ValueSource::DefaultValue
    {
        return Some(source);
    }
    matches
        .subcommand()
        .and_then(|(_, sub)| find_source(sub, key))
}

fn init_logging(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|e| {
        eprintln!(
            "orion-bus: invalid log_level {:?} ({e}); using info",
            settings.log_level
        );
        EnvFilter::new("info")
    });
    // Colours only for a person at a terminal: not in files, pipes or
    // journald, and never with NO_COLOR set (https://no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}
