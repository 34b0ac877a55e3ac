//! The daemon's HTTP endpoints: `/healthz`, `/readyz` and `/metrics`.
//!
//! Owns the axum router and its serve loop. `/healthz` answers while the
//! process runs; `/readyz` only when Redis answers `PING` and contracts are
//! loaded; `/metrics` is the Prometheus text exposition of the bus's
//! registry, with the per-stream and per-group gauges refreshed from
//! `XINFO` on each scrape. The server stops when the shutdown token is cancelled.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::telemetry::{InternalEvent, RedisCommandFailed};

/// Builds the router for a bus.
pub fn router(bus: Bus) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(bus)
}

async fn readyz(State(bus): State<Bus>) -> impl IntoResponse {
    if bus.registry().is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no contracts loaded\n".to_owned(),
        );
    }
    match bus.ping().await {
        Ok(()) => (
            StatusCode::OK,
            format!("ready: redis ok, {} contracts\n", bus.registry().len()),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("redis unreachable: {e}\n"),
        ),
    }
}

async fn metrics(State(bus): State<Bus>) -> impl IntoResponse {
    // Fresh per-group and per-stream figures on every scrape; if Redis is
    // slow or down, the last known values are served.
    let timeout = bus.settings().command_timeout;
    match tokio::time::timeout(timeout, crate::status::collect(&bus)).await {
        Ok(Ok(status)) => crate::status::publish_gauges(&bus, &status),
        Ok(Err(e)) => {
            RedisCommandFailed::warn(&e, "reading stream status for /metrics failed")
                .stream("(all)")
                .emit(bus.metrics());
        }
        Err(_) => tracing::warn!(
            stream = "(all)",
            "reading stream status for /metrics timed out"
        ),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        bus.metrics().encode(),
    )
}

/// Binds `addr` and serves until `shutdown` is cancelled. Returns the bound
/// address through `on_bound` (useful with port 0).
///
/// # Errors
/// When the address cannot be bound or serving fails.
pub async fn serve(
    addr: SocketAddr,
    bus: Bus,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    on_bound(listener.local_addr()?);
    serve_on(listener, bus, shutdown).await
}

/// As [`serve`], on a listener the caller has bound.
///
/// # Errors
/// When serving fails.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    bus: Bus,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(bus))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
