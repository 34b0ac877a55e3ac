//! Observer mode: watch every contract stream without joining a group.
//!
//! Owns `serve --observe`, phase 1 of a migration: it reads each stream
//! with plain `XREAD` (never a group, never an ack, so the Python bus is
//! untouched), validates every entry, counts outcomes by contract and
//! violations by the message's `source` field, and logs a summary
//! periodically. It keeps nothing it reads: memory is constant, bounded by
//! the number of contracts and of distinct sources (capped at
//! [`MAX_SOURCES`] per contract; the rest are counted as `other`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::bus::Bus;
use crate::wire;

/// Distinct `source` label values per contract before `other` is used.
pub const MAX_SOURCES: usize = 64;

/// Entries read per `XREAD`.
const BATCH: usize = 500;

/// Where the observer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObserveFrom {
    /// Only entries added from now on.
    Now,
    /// Every entry still in the streams, then new ones.
    Beginning,
}

/// Counts since the observer started (also on `/metrics`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ObserverReport {
    /// `contract -> (valid, invalid)`.
    pub by_contract: BTreeMap<String, (u64, u64)>,
    /// `(contract, source) -> invalid entries`.
    pub violations_by_source: BTreeMap<(String, String), u64>,
}

impl ObserverReport {
    /// Total entries observed.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_contract.values().map(|(v, i)| v + i).sum()
    }
}

/// A `source` value safe to use as a label: short, plain, and one of the
/// first [`MAX_SOURCES`] seen for the contract; anything else is `other`.
fn source_label(value: Option<&serde_json::Value>, seen: &mut HashSet<String>) -> String {
    let Some(s) = value.and_then(|v| v.as_str()) else {
        return "unknown".to_owned();
    };
    let plain = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !plain {
        return "other".to_owned();
    }
    if seen.contains(s) || seen.len() < MAX_SOURCES {
        seen.insert(s.to_owned());
        s.to_owned()
    } else {
        "other".to_owned()
    }
}

/// Observes until `shutdown`, logging a summary every `summary_every`.
///
/// # Errors
/// Only if the reading connection cannot be opened.
pub async fn run(
    bus: &Bus,
    from: ObserveFrom,
    summary_every: Duration,
    shutdown: CancellationToken,
) -> Result<ObserverReport, crate::connection::ConnectError> {
    let block = Duration::from_secs(1);
    let mut conn = bus.settings().connect_blocking(block).await?;
    let mut backoff = Backoff::redis();
    let contracts: Vec<_> = bus.registry().iter().cloned().collect();
    let streams: Vec<String> = contracts
        .iter()
        .filter_map(|c| bus.stream_for(c.name()).ok().map(|s| s.to_string()))
        .collect();
    // "$" is re-read at every XREAD, which would skip entries added to one
    // stream while another was being read: pin each start id instead.
    let mut last_ids = Vec::with_capacity(streams.len());
    for s in &streams {
        last_ids.push(match from {
            ObserveFrom::Beginning => "0-0".to_owned(),
            ObserveFrom::Now => loop {
                match crate::inspect::last_id(&mut conn, s).await {
                    Ok(id) => break id,
                    Err(e) => {
                        bus.metrics().redis_error(&e);
                        tracing::warn!(stream = %s, error = %e, "observer start failed; retrying");
                        if !backoff.wait(&shutdown).await {
                            return Ok(ObserverReport::default());
                        }
                    }
                }
            },
        });
    }
    let mut sources: Vec<HashSet<String>> = vec![HashSet::new(); streams.len()];
    let mut report = ObserverReport::default();
    let max_bytes = bus.options().max_message_bytes;
    let mut next_summary = tokio::time::Instant::now() + summary_every;
    tracing::info!(streams = ?streams, "observer started (no group, no acks)");
    loop {
        if tokio::time::Instant::now() >= next_summary {
            summarize(&report);
            next_summary = tokio::time::Instant::now() + summary_every;
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(1000)
            .arg("STREAMS");
        cmd.arg(&streams).arg(&last_ids);
        let reply = tokio::select! {
            () = shutdown.cancelled() => break,
            r = cmd.query_async::<redis::Value>(&mut conn) => r,
        };
        let reply = match reply {
            Ok(r) => {
                backoff.reset();
                r
            }
            Err(e) => {
                bus.metrics().redis_error(&e);
                tracing::warn!(error = %e, "observer XREAD failed; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        let parsed = match wire::parse_read_reply(reply) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "unreadable XREAD reply");
                continue;
            }
        };
        for read in parsed {
            let Some(idx) = streams.iter().position(|s| *s == read.stream) else {
                continue;
            };
            let contract = &contracts[idx];
            for entry in read.entries {
                let (valid, source) = match entry.decode(max_bytes) {
                    Ok(value) => {
                        let ok = contract.is_valid(&value);
                        (
                            ok,
                            (!ok).then(|| source_label(value.get("source"), &mut sources[idx])),
                        )
                    }
                    Err(_) => (false, Some("unknown".to_owned())),
                };
                bus.metrics()
                    .observed(contract.name(), valid, source.as_deref());
                let counts = report
                    .by_contract
                    .entry(contract.name().to_owned())
                    .or_default();
                if valid {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                    *report
                        .violations_by_source
                        .entry((contract.name().to_owned(), source.unwrap_or_default()))
                        .or_default() += 1;
                    tracing::debug!(stream = %read.stream, id = %entry.id, "observed a contract violation");
                }
                last_ids[idx] = entry.id;
            }
        }
    }
    summarize(&report);
    Ok(report)
}

fn summarize(report: &ObserverReport) {
    for (contract, (valid, invalid)) in &report.by_contract {
        tracing::info!(contract, valid, invalid, "observer summary");
    }
    for ((contract, source), n) in &report.violations_by_source {
        tracing::info!(
            contract,
            source,
            violations = n,
            "observer violations by source"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn source_labels_are_bounded() {
        let mut seen = HashSet::new();
        assert_eq!(
            source_label(Some(&json!("orion-guardian")), &mut seen),
            "orion-guardian"
        );
        assert_eq!(source_label(Some(&json!("has space")), &mut seen), "other");
        assert_eq!(source_label(Some(&json!(3)), &mut seen), "unknown");
        assert_eq!(source_label(None, &mut seen), "unknown");
        for i in 0..200 {
            let _ = source_label(Some(&json!(format!("s{i}"))), &mut seen);
        }
        assert_eq!(seen.len(), MAX_SOURCES);
        assert_eq!(source_label(Some(&json!("s199")), &mut seen), "other");
        assert_eq!(
            source_label(Some(&json!("orion-guardian")), &mut seen),
            "orion-guardian"
        );
    }
}
