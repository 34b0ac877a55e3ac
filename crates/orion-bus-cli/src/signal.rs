//! Waits for SIGINT or SIGTERM and turns it into a cancelled token.
//!
//! Owns the process's only signal handling; the library never installs
//! handlers and takes the token as a parameter instead.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let name = wait().await;
        tracing::info!(signal = name, "shutdown requested");
        trigger.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; only SIGKILL will stop this process");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn wait() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "ctrl-c"
}
