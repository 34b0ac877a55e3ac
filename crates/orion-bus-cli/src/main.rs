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
/// Each subcommand lists the settings it uses in its --help; they go after
/// the subcommand's name. Every setting can also come from an ORION_BUS_*
/// environment variable or from a TOML file (--config), in that order of
/// precedence: flag, environment, file, default.
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

/// The command line: [`Cli`], each subcommand with the settings it uses.
fn command() -> clap::Command {
    let mut cmd = Cli::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(&name, |sub| {
            let inner: Vec<String> = sub
                .get_subcommands()
                .map(|leaf| leaf.get_name().to_owned())
                .collect();
            if inner.is_empty() {
                return with_settings(sub, &name);
            }
            inner.into_iter().fold(sub, |sub, leaf| {
                let path = format!("{name} {leaf}");
                sub.mut_subcommand(&leaf, |c| with_settings(c, &path))
            })
        });
    }
    cmd
}

/// `cmd` with a flag for each setting the subcommand at `path` uses.
fn with_settings(cmd: clap::Command, path: &str) -> clap::Command {
    SETTINGS
        .iter()
        .filter(|spec| spec.used_by(path))
        .fold(cmd, |cmd, spec| {
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
                .help_heading("Settings");
            // Switches (default false) also work bare: `--wait-for-name`.
            cmd.arg(if spec.default == Some("false") {
                arg.num_args(0..=1).default_missing_value("true")
            } else {
                arg
            })
        })
}

/// Exits on a command-line error; a setting's flag given where it does
/// not apply (another subcommand's, or before the subcommand's name) gets
/// a note naming the subcommands that take it.
fn parse_error(e: &clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let _ = e.print();
    if e.kind() == ErrorKind::UnknownArgument
        && let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
    {
        let flag = arg.trim_start_matches('-');
        let flag = flag.split('=').next().unwrap_or(flag);
        if let Some(spec) = SETTINGS.iter().find(|s| s.flag() == flag) {
            eprintln!(
                "\nnote: --{flag} is a setting of: {}. Give it after one of those \
                 subcommands' names. As {} or in the --config file it is accepted \
                 by every subcommand, and ignored where unused.",
                spec.used_by.join(", "),
                spec.env
            );
        }
    }
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE))
}

fn main() -> ExitCode {
    let matches = match command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return parse_error(&e),
    };
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

/// The settings given as flags or environment variables. A setting the
/// subcommand does not take as a flag is still read from its environment
/// variable (as from the file): checked, and ignored where unused.
fn given(matches: &ArgMatches) -> Given {
    let mut out = Given::new();
    for spec in SETTINGS {
        if let Some((value, source)) = find(matches, spec.key) {
            let source = match source {
                ValueSource::CommandLine => Source::Flag,
                ValueSource::EnvVariable => Source::Env,
                _ => continue,
            };
            out.insert(spec.key, (value, source));
        } else if let Some(value) = std::env::var(spec.env).ok().filter(|v| !v.is_empty()) {
            out.insert(spec.key, (value, Source::Env));
        }
    }
    out
}

/// The value of setting `key` and where clap found it, from the
/// (sub)command that defines it; `None` where none does or it is unset.
fn find(matches: &ArgMatches, key: &str) -> Option<(String, ValueSource)> {
    if matches.ids().any(|id| id.as_str() == key) {
        let value = matches.get_one::<String>(key)?.clone();
        return Some((value, matches.value_source(key)?));
    }
    matches.subcommand().and_then(|(_, sub)| find(sub, key))
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

#[cfg(test)]
mod tests {
    use super::{SETTINGS, command};
    use crate::config::ALL;

    /// The leaf subcommands' paths (`publish`, `dlq redrive`).
    fn leaves(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in cmd.get_subcommands() {
            let path = format!("{prefix}{}", sub.get_name());
            if sub.has_subcommands() {
                leaves(sub, &format!("{path} "), out);
            } else {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_setting_names_real_subcommands() {
        let mut found = Vec::new();
        leaves(&command(), "", &mut found);
        found.sort();
        let mut all: Vec<String> = ALL.iter().map(|s| (*s).to_owned()).collect();
        all.sort();
        assert_eq!(found, all, "config::ALL is not the list of subcommands");
        for spec in SETTINGS {
            assert!(!spec.used_by.is_empty(), "{} is used by nothing", spec.key);
            for path in spec.used_by {
                assert!(ALL.contains(path), "{}: no subcommand {path:?}", spec.key);
            }
        }
        command().debug_assert();
    }
}
