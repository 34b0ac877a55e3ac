//! The subcommands, one file each: glue between the command line and the
//! library. Data goes to stdout, diagnostics to stderr.
//!
//! Owns [`run`], which dispatches a parsed command, and what the
//! subcommands share: `say!`, [`fail`], loading the contracts and
//! connecting.

use std::process::ExitCode;

use orion_bus::{Bus, ContractRegistry, Metrics};

use crate::config::Settings;
use crate::{Command, EXIT_FAILED, EXIT_USAGE};

/// Writes a line to standard output; `false` when it is gone (a closed
/// pipe, as in `orion-bus tail --follow | head`), where `println!` would
/// panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        writeln!(out, $($arg)*).and_then(|()| out.flush()).is_ok()
    }};
}

pub(crate) mod bench;
mod codegen;
mod consume;
mod demo;
mod dlq;
mod publish;
mod replay;
mod serve;
mod status;
mod tail;
mod validate;

/// Runs one parsed command with its resolved settings.
pub async fn run(command: Command, settings: Settings) -> ExitCode {
    match command {
        Command::Codegen { out } => codegen::run(&settings, &out),
        Command::Validate { contract, file } => validate::run(&settings, &contract, &file),
        Command::Publish { contract, file } => publish::run(&settings, &contract, &file).await,
        Command::Consume {
            contracts,
            group,
            consumer,
            count,
            metrics,
        } => consume::run(&settings, contracts, group, consumer, count, metrics).await,
        Command::Tail {
            contract,
            from,
            count,
            follow,
        } => tail::run(&settings, &contract, from, count, follow).await,
        Command::Dlq { action } => dlq::run(&settings, action).await,
        Command::Serve {
            observe,
            from_beginning,
            summary_every,
        } => serve::run(&settings, observe, from_beginning, summary_every).await,
        Command::Status { json } => status::run(&settings, json).await,
        Command::Replay {
            contract,
            group,
            from_id,
            from_time,
            yes,
        } => replay::run(&settings, &contract, &group, from_id, from_time, yes).await,
        Command::Demo { messages } => demo::run(&settings, messages).await,
        Command::Bench(args) => bench::run(&settings, args).await,
    }
}

/// Reports `message` on stderr and gives the exit `code`.
pub(crate) fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("orion-bus: {message}");
    ExitCode::from(code)
}

/// The example contracts, or the `--contracts-dir` ones when it was given
/// (`demo` and `bench` run on the examples by default).
pub(crate) fn examples_unless_given(settings: &Settings) -> Result<ContractRegistry, ExitCode> {
    if settings.contracts_dir_given {
        load_contracts(settings)
    } else {
        orion_bus_examples::registry(settings.contracts).map_err(|e| fail(EXIT_USAGE, e))
    }
}

/// The `--contracts-dir` contracts; a usage error when they do not load.
pub(crate) fn load_contracts(settings: &Settings) -> Result<ContractRegistry, ExitCode> {
    ContractRegistry::load_dir(&settings.contracts_dir, settings.contracts)
        .map_err(|e| fail(EXIT_USAGE, e))
}

/// A bus on the configured Redis; a failure when it cannot connect.
pub(crate) async fn connect(
    settings: &Settings,
    registry: ContractRegistry,
) -> Result<Bus, ExitCode> {
    Bus::connect(
        settings.redis.clone(),
        registry,
        settings.bus.clone(),
        Metrics::new(),
    )
    .await
    .map_err(|e| fail(EXIT_FAILED, e))
}
