//! `orion-bus codegen`: Rust types for the contracts directory, in a
//! binary built with the `codegen` feature; without it, a usage error that
//! says how to get one.

use std::process::ExitCode;

use crate::EXIT_USAGE;
use crate::config::Settings;

/// Without the `codegen` feature: says how to install a binary with it.
#[cfg(not(feature = "codegen"))]
pub(crate) fn run(_settings: &Settings, _out: &str) -> ExitCode {
    super::fail(
        EXIT_USAGE,
        "this orion-bus was built without the code generator; build one with it: \
         cargo install --path crates/orion-bus-cli --features codegen",
    )
}

/// `orion-bus codegen`: types for the contracts directory, to a file
/// (written to a temporary file and renamed) or standard output.
#[cfg(feature = "codegen")]
pub(crate) fn run(settings: &Settings, out: &str) -> ExitCode {
    use super::fail;
    use crate::EXIT_FAILED;
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
