//! The README, run: every ```` ```sh ```` block is executed with bash, in
//! order, from the repository's root, with the `orion-bus` this test built
//! on `PATH` and `ORION_BUS_REDIS_URL` pointing at a throwaway Redis (the
//! README's "a Redis on 127.0.0.1:6379, or `ORION_BUS_REDIS_URL` set to
//! yours"). Set-up lines that cannot run here are listed in [`NOT_RUN`],
//! each with the check made instead. Also: every shipped example message is
//! valid against its contract, and the README's Rust examples are still
//! compiled as doc tests of the library.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orion_bus_harness::certs::TestPki;
use orion_bus_harness::{RedisServer, RedisServerOptions};

/// How long one block may take; the README's commands all end by themselves.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// README lines not run by this test: (the command, why not, what is
/// checked instead). Any other line starting with `./scripts/` or `cargo `
/// fails the test, so that a new one is looked at before it runs here.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "./scripts/demo.sh",
        "a release build of minutes; `orion-bus demo` runs in cli.rs (the script is syntax-checked)",
    ),
    (
        "./scripts/test.sh",
        "it is what runs this test (the script is syntax-checked)",
    ),
    (
        "cargo install --locked --path crates/orion-bus-cli",
        "the binary this test built is put on PATH instead (its [[bin]] name is checked)",
    ),
];

/// ORION's contracts in the README's examples, where the tests look for them.
const README_ORION_DIR: &str = "../shared/orion-contracts";

/// In the README's TLS example: (as written, replaced by in this test).
const TLS_URL: &str = "rediss://orion:secret@redis.home.arpa:6380";
const TLS_CA: &str = "/etc/orion/ca.pem";
const TLS_CERT: &str = "/etc/orion/bus.pem";
const TLS_KEY: &str = "/etc/orion/bus.key";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("read README.md")
}

/// ORION's contracts, found as the other tests find them.
fn orion_contracts() -> PathBuf {
    std::env::var_os("ORION_CONTRACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(README_ORION_DIR))
}

/// A fenced code block: its info string, its first line's number, its text.
struct Block {
    info: String,
    line: usize,
    text: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_owned(),
                    line: i + 2,
                    text: String::new(),
                });
            }
            (Some(_), Some("")) => out.extend(open.take()),
            (Some(b), _) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md: a code block is never closed");
    out
}

/// A line without its trailing `# comment`, trimmed.
fn command(line: &str) -> &str {
    line.split(" #").next().unwrap_or(line).trim()
}

/// The check that stands in for running a [`NOT_RUN`] line.
fn check_not_run(cmd: &str) {
    let root = root();
    if let Some(script) = cmd.strip_prefix("./") {
        let path = root.join(script);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{script}: {e}"))
                .permissions(),
        );
        assert!(mode & 0o111 != 0, "{script} is not executable");
        let status = Command::new("bash")
            .arg("-n")
            .arg(&path)
            .status()
            .expect("bash");
        assert!(status.success(), "{script} does not parse");
    } else {
        let manifest = std::fs::read_to_string(root.join("crates/orion-bus-cli/Cargo.toml"))
            .expect("read the CLI's Cargo.toml");
        assert!(
            manifest.contains("[[bin]]\nname = \"orion-bus\""),
            "crates/orion-bus-cli no longer installs a binary named orion-bus"
        );
    }
}

/// Runs `script` with bash (`-euo pipefail`) from the repository's root;
/// panics with its output unless it exits 0 within [`BLOCK_TIMEOUT`].
fn run_block(line: usize, script: &str, redis_url: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_orion-bus"))
        .parent()
        .expect("binary dir")
        .to_owned();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .expect("PATH");

    let mut c = Command::new("bash");
    c.args(["-euo", "pipefail", "-c", script])
        .current_dir(root())
        .env("PATH", path)
        .env("ORION_BUS_REDIS_URL", redis_url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ORION_BUS_") && k != "ORION_BUS_REDIS_URL" {
            c.env_remove(k);
        }
    }
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut child = c.spawn().expect("spawn bash");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for bash") {
            break Some(status);
        }
        if started.elapsed() > BLOCK_TIMEOUT {
            // The whole group: bash and whatever it started.
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    eprintln!("--- README.md:{line}\n{script}--- stdout\n{stdout}--- stderr\n{stderr}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "README.md:{line}: the block exited with {s}\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        ),
        None => panic!(
            "README.md:{line}: the block did not finish within {BLOCK_TIMEOUT:?}\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        ),
    }
}

/// A TLS-only server with a private CA, client certificates required, and
/// the README's ACL user `orion` (password `secret`).
fn tls_server(pki: &TestPki) -> RedisServer {
    let mut options = RedisServerOptions::default().tls(pki.server_tls(true));
    for arg in ["--user", "orion", "on", ">secret", "~*", "&*", "+@all"] {
        options = options.arg(arg);
    }
    RedisServer::start_with(options)
        .unwrap_or_else(|e| panic!("cannot start a TLS redis-server: {e}"))
}

fn replace_all(script: &str, line: usize, pairs: &[(&str, String)]) -> String {
    pairs.iter().fold(script.to_owned(), |s, (from, to)| {
        assert!(
            s.contains(from),
            "README.md:{line}: the TLS example no longer has {from}; update this test"
        );
        s.replace(from, to)
    })
}

#[test]
fn readme_opens_with_the_two_setup_commands() {
    let all = blocks(&readme());
    let first = all.first().expect("README.md has code blocks");
    assert_eq!(first.info, "sh", "README.md's first code block is not sh");
    let commands: Vec<&str> = first.text.lines().map(command).collect();
    assert_eq!(commands, ["./scripts/demo.sh", "./scripts/test.sh"]);
}

#[test]
fn readme_shell_examples_run_as_written() {
    let server = RedisServer::start().unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let orion = orion_contracts();
    let mut ran = 0;
    for block in blocks(&readme()).into_iter().filter(|b| b.info == "sh") {
        let mut script = String::new();
        for text in block.text.lines() {
            let cmd = command(text);
            if let Some((_, why)) = NOT_RUN.iter().find(|(c, _)| *c == cmd) {
                eprintln!("README.md:{}: not run: {cmd}: {why}", block.line);
                check_not_run(cmd);
            } else if cmd.starts_with("./scripts/") || cmd.starts_with("cargo ") {
                panic!(
                    "README.md:{}: `{cmd}` is new: run it here, or add it to NOT_RUN with a check",
                    block.line
                );
            } else {
                script.push_str(text);
                script.push('\n');
            }
        }
        if script.trim().is_empty() {
            continue;
        }
        if script.contains(README_ORION_DIR) {
            if !orion.is_dir() {
                eprintln!(
                    "SKIPPED: README.md:{}: ORION contracts not found at {} (set ORION_CONTRACTS_DIR)",
                    block.line,
                    orion.display()
                );
                continue;
            }
            script = script.replace(README_ORION_DIR, &orion.display().to_string());
        }
        // The TLS example, against a TLS server of the test's own: kept
        // alive until its block has run.
        let mut tls = None;
        if script.contains("rediss://") {
            let pki = TestPki::generate("readme")
                .unwrap_or_else(|e| panic!("cannot generate certificates: {e}"));
            let server = tls_server(&pki);
            script = replace_all(
                &script,
                block.line,
                &[
                    (
                        TLS_URL,
                        format!("rediss://orion:secret@127.0.0.1:{}", server.port()),
                    ),
                    (TLS_CA, pki.ca_file().display().to_string()),
                    (TLS_CERT, pki.client_cert_file().display().to_string()),
                    (TLS_KEY, pki.client_key_file().display().to_string()),
                ],
            );
            tls = Some((pki, server));
        }
        run_block(block.line, &script, &server.url());
        drop(tls);
        ran += 1;
    }
    assert!(ran >= 2, "only {ran} README blocks ran");
}

#[test]
fn every_example_message_is_valid() {
    let root = root();
    let orion = orion_contracts();
    let mut checked = 0;
    let mut dirs = vec![root.join("examples/messages")];
    while let Some(dir) = dirs.pop() {
        let is_orion = dir.ends_with("orion");
        for entry in std::fs::read_dir(&dir).expect("read examples/messages") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let Some(contract) = name
                .strip_suffix(".ndjson")
                .or_else(|| name.strip_suffix(".json"))
            else {
                continue;
            };
            let contracts = if is_orion {
                if !orion.is_dir() {
                    eprintln!(
                        "SKIPPED: {}: ORION contracts not found at {} (set ORION_CONTRACTS_DIR)",
                        path.display(),
                        orion.display()
                    );
                    continue;
                }
                orion.clone()
            } else {
                root.join("contracts")
            };
            let out = Command::new(env!("CARGO_BIN_EXE_orion-bus"))
                .args(["validate", contract])
                .arg(&path)
                .env("ORION_BUS_CONTRACTS_DIR", &contracts)
                .output()
                .expect("run orion-bus validate");
            assert!(
                out.status.success(),
                "{} is not a valid {contract}: {}{}",
                path.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} example messages checked");
}

#[test]
fn readme_rust_examples_are_doc_tests() {
    // The library's lib.rs includes the README under `cfg(doctest)`, so
    // `cargo test` compiles every ```rust block of it (the quickstart too).
    let lib =
        std::fs::read_to_string(root().join("crates/orion-bus/src/lib.rs")).expect("read lib.rs");
    assert!(
        lib.contains("#[cfg(doctest)]") && lib.contains("include_str!(\"../../../README.md\")"),
        "crates/orion-bus/src/lib.rs no longer compiles the README's examples as doc tests"
    );
    let readme = readme();
    let quickstart = blocks(&readme)
        .into_iter()
        .find(|b| b.info.starts_with("rust"))
        .expect("a Rust example");
    for needed in [
        "tracing_subscriber",
        "StartId::Beginning",
        "StartId::New",
        ".await?;",
    ] {
        assert!(
            quickstart.text.contains(needed),
            "README.md:{}: the quickstart no longer shows {needed}",
            quickstart.line
        );
    }
}
