//! What a run prints: [`ChaosReport`], its figures, and on failure the
//! seed, every failure with what is known about it, and the history of
//! faults; [`timeline`] writes the full history (every publish and
//! handling too) to a file.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use crate::check::{Failure, Figures, explain, outage_near};
use crate::history::{Event, FaultKind, at};
use crate::ledger::{Handling, PublishOutcome, Snapshot};
use crate::options::{SECS_ENV, SEED_ENV};

/// Failures printed in full; the rest are counted.
const SHOWN: usize = 25;
/// How long before a repeated message's first handling faults are shown.
const NEAR: Duration = Duration::from_secs(2);
/// Unexplained repeats shown for a run without idempotency.
const REPEATS_SHOWN: usize = 5;

/// The outcome of a completed run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChaosReport {
    /// The configuration's label.
    pub label: String,
    /// The seed.
    pub seed: u64,
    /// Nemesis time.
    pub nemesis_for: Duration,
    /// Whether consumers used idempotency.
    pub idempotency: bool,
    /// `library + CLI` consumers.
    pub consumers: (usize, usize),
    /// The figures.
    pub figures: Figures,
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// From the end of the nemesis (everything back up) to quiet; `None`
    /// if it never got quiet.
    pub time_to_quiet: Option<Duration>,
    /// Broken guarantees; empty when the run passed.
    pub failures: Vec<Failure>,
    /// Worth a look.
    pub warnings: Vec<String>,
    /// Without idempotency: repeats no crash explains (allowed).
    pub repeats: Vec<(String, Vec<Handling>)>,
    /// Faults, lifecycle and phases.
    pub history: Vec<(Duration, Event)>,
    /// The full timeline and the CLI consumers' logs, kept on failure.
    pub kept_dir: Option<PathBuf>,
    /// The ledger, for details of failures.
    pub(crate) snapshot: Snapshot,
}

impl ChaosReport {
    /// True when no guarantee was broken.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// A message's handlings, with what is known about each.
    fn handlings(
        &self,
        out: &mut String,
        title: &str,
        msg: &str,
        handlings: &[Handling],
    ) -> fmt::Result {
        let s = &self.snapshot;
        writeln!(out, "  {title}: {msg}")?;
        for h in handlings {
            let end = s.instances.get(&h.instance).and_then(|i| i.end.clone());
            let near = outage_near(s, h).map_or(String::new(), |o| {
                format!(
                    "; Redis {} from{} to {}",
                    o.what,
                    at(o.from),
                    o.to.map_or("the end".to_owned(), |t| at(t).trim().to_owned())
                )
            });
            writeln!(
                out,
                "    at{} by {} (entry {}); instance ended: {}; a repeat of it is explained: {}{near}",
                at(h.at),
                h.instance,
                h.entry,
                end.map_or("no".to_owned(), |(t, how)| format!("{how:?} at{}", at(t))),
                explain(s, h).unwrap_or("no")
            )?;
        }
        // The faults from shortly before the first handling to the last.
        if let (Some(first), Some(last)) = (handlings.first(), handlings.last()) {
            let from = first.at.saturating_sub(NEAR);
            for (t, e) in &self.history {
                if *t >= from && *t <= last.at && matches!(e, Event::Fault { .. } | Event::Redis(_))
                {
                    writeln!(out, "    meanwhile at{} {e}", at(*t))?;
                }
            }
        }
        Ok(())
    }

    fn failure(&self, out: &mut String, failure: &Failure) -> fmt::Result {
        let s = &self.snapshot;
        match failure {
            Failure::Lost { msg, entry, acked } => {
                let publish = s.publishes.iter().find(|p| &p.msg == msg);
                write!(
                    out,
                    "  LOST {msg} entry {} ({})",
                    entry.as_deref().unwrap_or("?"),
                    if *acked {
                        "acknowledged"
                    } else {
                        "unknown outcome, but found in the stream"
                    }
                )?;
                if let Some(p) = publish {
                    write!(
                        out,
                        ", published by publisher {} at{}",
                        p.publisher,
                        at(p.sent_at)
                    )?;
                    if let PublishOutcome::Unknown(e) = &p.outcome {
                        write!(out, " (error: {e})")?;
                    }
                }
                writeln!(out)
            }
            Failure::Pending { count, rows } => {
                writeln!(out, "  PENDING at end: {count}")?;
                for r in rows.iter().take(SHOWN) {
                    let msg = s
                        .publishes
                        .iter()
                        .find(|p| p.entry() == Some(r.entry.as_str()));
                    let removed = s.removed.get(&r.entry).map(|x| {
                        format!(", removed by nemesis ({}) at{}", x.how.label(), at(x.at))
                    });
                    writeln!(
                        out,
                        "    {} on {} idle {} ms, {} deliveries, message {}{}",
                        r.entry,
                        r.consumer,
                        r.idle_ms,
                        r.deliveries,
                        msg.map_or("?", |p| p.msg.as_str()),
                        removed.unwrap_or_default()
                    )?;
                }
                Ok(())
            }
            Failure::Duplicate { msg, handlings } => {
                self.handlings(out, "HANDLED TWICE with idempotency", msg, handlings)
            }
            Failure::AckedUnhandled {
                msg,
                entry,
                removed,
            } => writeln!(
                out,
                "  LOST {msg} entry {entry}: acknowledged by the group (delivered, not pending) but never handled nor dead-lettered; then removed by the nemesis ({removed})"
            ),
            Failure::SpuriousDeadLetter(d) => writeln!(
                out,
                "  DEAD-LETTERED as {:?} but never removed by the nemesis: entry {} (message {})",
                d.reason,
                d.entry,
                d.msg.as_deref().unwrap_or("?")
            ),
            Failure::NotQuiet(waited, open) => writeln!(
                out,
                "  NOT QUIET: still pending or unaccounted after {:.1} s: {open}",
                waited.as_secs_f64()
            ),
        }
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.figures;
        let mut out = String::new();
        writeln!(
            out,
            "orion-bus chaos [{}]: seed {} ({}), idempotency {}, {} library + {} CLI consumers",
            self.label,
            self.seed,
            reproduce(self.seed, self.nemesis_for),
            if self.idempotency { "on" } else { "off" },
            self.consumers.0,
            self.consumers.1,
        )?;
        let faults: u64 = self.faults.values().sum();
        writeln!(
            out,
            "  nemesis {:.0} s, {faults} faults: {}",
            self.nemesis_for.as_secs_f64(),
            list(self.faults.iter().map(|(k, n)| (k.label(), *n)))
        )?;
        writeln!(
            out,
            "  published (acked) {}, unknown outcome {} (of which handled or dead-lettered {})",
            g.published, g.unknown_outcome, g.unknown_outcome_handled
        )?;
        writeln!(
            out,
            "  handled {} messages in {} handlings; dead-lettered {} ({}); both handled and dead-lettered {}",
            g.handled,
            g.handlings,
            g.dead_lettered.values().sum::<usize>(),
            list(g.dead_lettered.iter().map(|(k, n)| (k.as_str(), *n))),
            g.handled_and_dead_lettered
        )?;
        writeln!(
            out,
            "  duplicates: {} messages handled more than once; repeats explained by a crash {}, unexplained {} (of which after a handling near a Redis outage {}){}",
            g.duplicates,
            g.duplicates_explained,
            g.duplicates_unexplained,
            g.duplicates_near_outage,
            if self.idempotency {
                ""
            } else {
                " (allowed without idempotency)"
            }
        )?;
        writeln!(
            out,
            "  removed by the nemesis (all / never handled nor dead-lettered): {}",
            if g.removed.is_empty() {
                "none".to_owned()
            } else {
                g.removed
                    .iter()
                    .map(|(k, (all, unhandled))| format!("{k} {all}/{unhandled}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )?;
        writeln!(
            out,
            "  lost {} (must be 0), pending at end {} (must be 0), time to quiet {}",
            g.lost,
            g.pending_at_end,
            self.time_to_quiet
                .map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
        )?;
        for w in &self.warnings {
            writeln!(out, "  warning: {w}")?;
        }
        for (msg, hs) in self.repeats.iter().take(REPEATS_SHOWN) {
            self.handlings(&mut out, "repeat (allowed without idempotency)", msg, hs)?;
        }
        if self.passed() {
            writeln!(out, "  PASSED")?;
            return f.write_str(&out);
        }
        writeln!(
            out,
            "  FAILED: {} failures; seed {}",
            self.failures.len(),
            self.seed
        )?;
        for failure in self.failures.iter().take(SHOWN) {
            self.failure(&mut out, failure)?;
        }
        if self.failures.len() > SHOWN {
            writeln!(out, "  ... and {} more", self.failures.len() - SHOWN)?;
        }
        writeln!(out, "  history of faults and consumers:")?;
        for (t, e) in &self.history {
            writeln!(out, "   {} {e}", at(*t))?;
        }
        if let Some(dir) = &self.kept_dir {
            writeln!(
                out,
                "  full timeline (every publish and handling) and CLI logs kept in {}",
                dir.display()
            )?;
        }
        writeln!(
            out,
            "  reproduce: {}",
            reproduce(self.seed, self.nemesis_for)
        )?;
        f.write_str(&out)
    }
}

fn reproduce(seed: u64, nemesis_for: Duration) -> String {
    format!("{SEED_ENV}={seed} {SECS_ENV}={}", nemesis_for.as_secs())
}

fn list<'a>(items: impl Iterator<Item = (&'a str, impl fmt::Display)>) -> String {
    let v: Vec<String> = items.map(|(k, n)| format!("{k} {n}")).collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}

/// Every event, publish and handling of a run, one line each, in time order.
#[must_use]
pub fn timeline(history: &[(Duration, Event)], s: &Snapshot) -> String {
    let mut lines: Vec<(Duration, String)> =
        history.iter().map(|(t, e)| (*t, e.to_string())).collect();
    for p in &s.publishes {
        let what = match &p.outcome {
            PublishOutcome::Acked(e) => format!(
                "publish {} -> {e} (publisher {}, returned at{})",
                p.msg,
                p.publisher,
                at(p.done_at)
            ),
            PublishOutcome::Unknown(e) => format!(
                "publish {} -> ERROR {e} (publisher {}, returned at{})",
                p.msg,
                p.publisher,
                at(p.done_at)
            ),
        };
        lines.push((p.sent_at, what));
    }
    for h in &s.handlings {
        lines.push((
            h.at,
            format!("handled {} entry {} by {}", h.msg, h.entry, h.instance),
        ));
    }
    for (entry, r) in &s.removed {
        lines.push((
            r.at,
            format!(
                "removed {entry} ({}{})",
                r.how.label(),
                if r.acked {
                    ", acknowledged by the group"
                } else {
                    ""
                }
            ),
        ));
    }
    lines.sort_by_key(|(t, _)| *t);
    let mut out = String::new();
    for (t, l) in lines {
        let _ = writeln!(out, "{} {l}", at(t));
    }
    out
}
