//! The checker: from the ledger and what Redis holds at the end, decides
//! whether every acknowledged publish was handled or dead-lettered (or
//! removed by the nemesis, counted apart), whether anything is left
//! pending, and, with idempotency, whether any message was handled twice
//! without a crash to explain it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::admin::{DeadLetter, PendingRow};
use crate::ledger::{Handling, InstanceEnd, Outage, Snapshot};

/// How close to its consumer's death a handling must be for a repeat of
/// it to be explained: the consumer may have died before it could ack or
/// record the idempotency key.
pub const CRASH_WINDOW: Duration = Duration::from_secs(1);
/// How close to a Redis outage a repeat's first handling must be for the
/// report to point at the outage.
pub const NEAR_OUTAGE: Duration = Duration::from_secs(2);

/// What Redis holds at the end of a run.
#[derive(Debug, Clone, Default)]
pub struct EndState {
    /// Every dead letter.
    pub dead_letters: Vec<DeadLetter>,
    /// `XPENDING` count; `None` when the group does not exist.
    pub pending: Option<u64>,
    /// Some of the pending rows.
    pub pending_rows: Vec<PendingRow>,
    /// Entries left in the stream (id, message id).
    pub stream: Vec<(String, Option<String>)>,
}

/// A way the run broke a guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// A message written to the stream was neither handled, nor
    /// dead-lettered, nor removed by the nemesis.
    Lost {
        /// Message id.
        msg: String,
        /// Entry id, when known.
        entry: Option<String>,
        /// Acknowledged, or an unknown-outcome publish found in the stream.
        acked: bool,
    },
    /// Entries still pending in the group at the end.
    Pending {
        /// How many.
        count: u64,
        /// Some of them.
        rows: Vec<PendingRow>,
    },
    /// With idempotency: a message handled again, not explained by a crash.
    Duplicate {
        /// Message id.
        msg: String,
        /// All its handlings, in time order.
        handlings: Vec<Handling>,
    },
    /// An acknowledged publish the group had acknowledged (delivered and
    /// not pending) when the nemesis removed it, yet never handled nor
    /// dead-lettered: acked without success.
    AckedUnhandled {
        /// Message id.
        msg: String,
        /// Entry id.
        entry: String,
        /// How the nemesis removed it afterwards.
        removed: &'static str,
    },
    /// A dead letter saying `deleted` for an entry nobody removed.
    SpuriousDeadLetter(DeadLetter),
    /// The consumers never became quiet: the limit, and what was still
    /// open at the last look.
    NotQuiet(Duration, String),
}

/// The figures of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Figures {
    /// Acknowledged publishes.
    pub published: usize,
    /// Publishes that returned an error.
    pub unknown_outcome: usize,
    /// Of those, handled or dead-lettered all the same.
    pub unknown_outcome_handled: usize,
    /// Distinct messages handled.
    pub handled: usize,
    /// Handlings in all (repeats included).
    pub handlings: usize,
    /// Dead letters by reason.
    pub dead_lettered: BTreeMap<String, usize>,
    /// Messages both handled and dead-lettered.
    pub handled_and_dead_lettered: usize,
    /// Messages handled more than once.
    pub duplicates: usize,
    /// Repeats explained by a crash of the consumer that handled it first.
    pub duplicates_explained: usize,
    /// Repeats not so explained.
    pub duplicates_unexplained: usize,
    /// Of those, how many first handlings were near a Redis outage.
    pub duplicates_near_outage: usize,
    /// Entries removed by the nemesis, by how: (all, never handled nor
    /// dead-lettered).
    pub removed: BTreeMap<&'static str, (usize, usize)>,
    /// Written messages lost.
    pub lost: usize,
    /// Pending in the group at the end.
    pub pending_at_end: u64,
}

/// Figures and failures.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// The figures.
    pub figures: Figures,
    /// Broken guarantees.
    pub failures: Vec<Failure>,
    /// Worth a look, not failures.
    pub warnings: Vec<String>,
    /// Without idempotency: messages handled again with no crash to
    /// explain it (allowed, shown for diagnosis), with their handlings.
    pub repeats: Vec<(String, Vec<Handling>)>,
}

/// Message ids that were handled or dead-lettered.
fn accounted<'a>(s: &'a Snapshot, dead: &'a [DeadLetter]) -> HashSet<&'a str> {
    let entry_to_msg: HashMap<&str, &str> = s
        .publishes
        .iter()
        .filter_map(|p| p.entry().map(|e| (e, p.msg.as_str())))
        .collect();
    let mut done: HashSet<&str> = s.handlings.iter().map(|h| h.msg.as_str()).collect();
    for d in dead {
        if let Some(m) = d
            .msg
            .as_deref()
            .or_else(|| entry_to_msg.get(d.entry.as_str()).copied())
        {
            done.insert(m);
        }
    }
    done
}

/// How many written messages are not accounted for yet: the run is
/// quiet when this is 0 and nothing is pending.
#[must_use]
pub fn unaccounted(
    s: &Snapshot,
    dead: &[DeadLetter],
    stream: &[(String, Option<String>)],
) -> usize {
    let (acked, in_stream) = open_entries(s, dead, stream);
    acked.len().max(in_stream.len())
}

/// The entry ids not accounted for yet: of acknowledged publishes, and of
/// messages in the stream.
#[must_use]
pub fn open_entries(
    s: &Snapshot,
    dead: &[DeadLetter],
    stream: &[(String, Option<String>)],
) -> (Vec<String>, Vec<String>) {
    let done = accounted(s, dead);
    let acked = s
        .publishes
        .iter()
        .filter_map(|p| p.entry().map(|e| (e, &p.msg)))
        .filter(|(e, m)| !done.contains(m.as_str()) && !s.removed.contains_key(*e))
        .map(|(e, _)| e.to_owned())
        .collect();
    // Entries the nemesis removed from the group's view (pending when it
    // destroyed the group) are counted apart, as in the verdict.
    let in_stream = stream
        .iter()
        .filter(|(e, m)| {
            m.as_deref().is_some_and(|m| !done.contains(m)) && !s.removed.contains_key(e)
        })
        .map(|(e, _)| e.clone())
        .collect();
    (acked, in_stream)
}

/// Judges a run.
#[must_use]
pub fn judge(s: &Snapshot, end: &EndState, idempotency: bool) -> Verdict {
    let mut v = Verdict::default();
    let done = accounted(s, &end.dead_letters);
    let mut by_msg: HashMap<&str, Vec<&Handling>> = HashMap::new();
    for h in &s.handlings {
        by_msg.entry(h.msg.as_str()).or_default().push(h);
    }
    let f = &mut v.figures;
    f.handled = by_msg.len();
    f.handlings = s.handlings.len();

    // Dead letters.
    let entry_to_msg: HashMap<&str, &str> = s
        .publishes
        .iter()
        .filter_map(|p| p.entry().map(|e| (e, p.msg.as_str())))
        .collect();
    for d in &end.dead_letters {
        *f.dead_lettered.entry(d.reason.clone()).or_insert(0) += 1;
        let msg = d
            .msg
            .as_deref()
            .or_else(|| entry_to_msg.get(d.entry.as_str()).copied());
        if msg.is_some_and(|m| by_msg.contains_key(m)) {
            f.handled_and_dead_lettered += 1;
        }
        if d.reason == "deleted" && !s.removed.contains_key(&d.entry) {
            v.failures.push(Failure::SpuriousDeadLetter(d.clone()));
        } else if d.reason != "deleted" {
            v.warnings.push(format!(
                "entry {} dead-lettered as {:?}: only nemesis deletions were expected to dead-letter",
                d.entry, d.reason
            ));
        }
    }

    // Every publish.
    let in_stream: HashSet<&str> = end
        .stream
        .iter()
        .filter_map(|(_, m)| m.as_deref())
        .collect();
    for p in &s.publishes {
        let handled = done.contains(p.msg.as_str());
        match p.entry() {
            Some(entry) => {
                f.published += 1;
                if let Some(removed) = s.removed.get(entry) {
                    let r = f.removed.entry(removed.how.label()).or_insert((0, 0));
                    r.0 += 1;
                    if !handled {
                        if removed.acked {
                            v.failures.push(Failure::AckedUnhandled {
                                msg: p.msg.clone(),
                                entry: entry.to_owned(),
                                removed: removed.how.label(),
                            });
                        } else {
                            r.1 += 1;
                        }
                    }
                } else if !handled {
                    v.failures.push(Failure::Lost {
                        msg: p.msg.clone(),
                        entry: Some(entry.to_owned()),
                        acked: true,
                    });
                }
            }
            None => {
                f.unknown_outcome += 1;
                if handled {
                    f.unknown_outcome_handled += 1;
                } else if in_stream.contains(p.msg.as_str()) {
                    v.failures.push(Failure::Lost {
                        msg: p.msg.clone(),
                        entry: end
                            .stream
                            .iter()
                            .find(|(_, m)| m.as_deref() == Some(p.msg.as_str()))
                            .map(|(e, _)| e.clone()),
                        acked: false,
                    });
                }
            }
        }
    }
    f.lost = v
        .failures
        .iter()
        .filter(|x| matches!(x, Failure::Lost { .. } | Failure::AckedUnhandled { .. }))
        .count();

    // Duplicates.
    let mut dups: Vec<(&str, Vec<&Handling>)> =
        by_msg.into_iter().filter(|(_, hs)| hs.len() > 1).collect();
    dups.sort_by(|a, b| a.0.cmp(b.0));
    f.duplicates = dups.len();
    for (msg, mut hs) in dups {
        hs.sort_by_key(|h| h.at);
        let mut unexplained = false;
        for pair in hs.windows(2) {
            if explain(s, pair[0]).is_some() {
                f.duplicates_explained += 1;
            } else {
                f.duplicates_unexplained += 1;
                if outage_near(s, pair[0]).is_some() {
                    f.duplicates_near_outage += 1;
                }
                unexplained = true;
            }
        }
        if unexplained {
            let handlings = hs.into_iter().cloned().collect();
            if idempotency {
                v.failures.push(Failure::Duplicate {
                    msg: msg.to_owned(),
                    handlings,
                });
            } else {
                v.repeats.push((msg.to_owned(), handlings));
            }
        }
    }

    // Pending.
    f.pending_at_end = end.pending.unwrap_or(0);
    if f.pending_at_end > 0 {
        v.failures.push(Failure::Pending {
            count: f.pending_at_end,
            rows: end.pending_rows.clone(),
        });
    }
    if end.pending.is_none() {
        v.warnings
            .push("the group does not exist at the end".to_owned());
    }
    let published: HashSet<&str> = s.publishes.iter().map(|p| p.msg.as_str()).collect();
    let unknown = s
        .handlings
        .iter()
        .filter(|h| !published.contains(h.msg.as_str()))
        .count();
    if unknown > 0 {
        v.warnings
            .push(format!("{unknown} handlings of messages never published"));
    }
    v
}

/// Why handling `first` may legitimately have been repeated, if it may:
/// its consumer was killed before it could ack it or record its key.
#[must_use]
pub fn explain(s: &Snapshot, first: &Handling) -> Option<&'static str> {
    // A SIGKILLed Redis with `appendfsync everysec` loses up to its last
    // second of writes: the idempotency key, the ack, even the delivery of
    // a handling from then may be gone (docs/DELIVERY.md: not durability
    // beyond Redis's).
    let lost_writes = s.outages.iter().any(|o| {
        o.what == "crashed"
            && o.from <= first.at + CRASH_WINDOW
            && o.to.is_none_or(|t| first.at <= t)
    });
    if lost_writes {
        return Some("Redis was SIGKILLed within 1 s of it and lost its last second of AOF writes");
    }
    let instance = s.instances.get(&first.instance)?;
    let (killed_at, InstanceEnd::Killed) = instance.end.as_ref()? else {
        return None;
    };
    let killed_at = *killed_at;
    if killed_at <= first.at + CRASH_WINDOW {
        return Some("its consumer was killed within 1 s of handling it");
    }
    // Redis went away within the window and the consumer died before it
    // came back (plus the window): it could not ack nor record the key.
    let blocked = s.outages.iter().any(|o| {
        o.from <= first.at + CRASH_WINDOW
            && o.to
                .is_none_or(|t| t >= first.at && killed_at <= t + CRASH_WINDOW)
    });
    blocked.then_some(
        "its consumer was killed before Redis came back from an outage that began as it handled it",
    )
}

/// The Redis outage around a handling, if any: one that began at most
/// [`NEAR_OUTAGE`] after it, or was going on then. Not an excuse; a hint
/// for whoever reads a failure.
#[must_use]
pub fn outage_near<'a>(s: &'a Snapshot, first: &Handling) -> Option<&'a Outage> {
    s.outages.iter().find(|o| {
        o.from <= first.at + NEAR_OUTAGE && o.to.is_none_or(|t| t + NEAR_OUTAGE >= first.at)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::{ConsumerKind, Instance, Publish, PublishOutcome, Removal, Removed};

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn publish(msg: &str, entry: Option<&str>) -> Publish {
        Publish {
            msg: msg.to_owned(),
            publisher: 0,
            sent_at: secs(1.0),
            done_at: secs(1.0),
            outcome: entry.map_or_else(
                || PublishOutcome::Unknown("timed out".to_owned()),
                |e| PublishOutcome::Acked(e.to_owned()),
            ),
        }
    }

    fn handling(msg: &str, entry: &str, instance: &str, at: f64) -> Handling {
        Handling {
            msg: msg.to_owned(),
            entry: entry.to_owned(),
            instance: Arc::from(instance),
            at: secs(at),
        }
    }

    fn instance(s: &mut Snapshot, id: &str, end: Option<(f64, InstanceEnd)>) {
        s.instances.insert(
            Arc::from(id),
            Instance {
                name: id.to_owned(),
                kind: ConsumerKind::Library,
                started: Duration::ZERO,
                end: end.map(|(t, how)| (secs(t), how)),
            },
        );
    }

    #[test]
    fn every_acked_publish_must_be_handled_dead_lettered_or_removed() {
        let mut s = Snapshot::default();
        for (m, e) in [
            ("a", "1-0"),
            ("b", "2-0"),
            ("c", "3-0"),
            ("d", "4-0"),
            ("e", "5-0"),
        ] {
            s.publishes.push(publish(m, Some(e)));
        }
        s.publishes.push(publish("u", None));
        s.handlings.push(handling("a", "1-0", "x#1", 2.0));
        let removed = |acked| Removed {
            how: Removal::Xdel,
            at: secs(1.5),
            acked,
        };
        // c was removed before the group acknowledged it: excused.
        s.removed.insert("3-0".to_owned(), removed(false));
        // e was removed after the group acknowledged it: it was acked
        // without being handled.
        s.removed.insert("5-0".to_owned(), removed(true));
        let end = EndState {
            dead_letters: vec![DeadLetter {
                entry: "2-0".to_owned(),
                reason: "deleted".to_owned(),
                msg: None,
            }],
            pending: Some(0),
            ..EndState::default()
        };
        let v = judge(&s, &end, false);
        // b's dead letter says deleted, but nobody deleted it.
        assert_eq!(
            v.failures,
            vec![
                Failure::SpuriousDeadLetter(end.dead_letters[0].clone()),
                Failure::Lost {
                    msg: "d".to_owned(),
                    entry: Some("4-0".to_owned()),
                    acked: true
                },
                Failure::AckedUnhandled {
                    msg: "e".to_owned(),
                    entry: "5-0".to_owned(),
                    removed: "xdel"
                }
            ]
        );
        assert_eq!(v.figures.published, 5);
        assert_eq!(v.figures.unknown_outcome, 1);
        assert_eq!(v.figures.lost, 2);
        assert_eq!(v.figures.removed.get("xdel"), Some(&(2, 1)));
        assert_eq!(unaccounted(&s, &end.dead_letters, &[]), 1);
    }

    #[test]
    fn an_unknown_outcome_found_in_the_stream_unhandled_is_lost() {
        let mut s = Snapshot::default();
        s.publishes.push(publish("u", None));
        let end = EndState {
            pending: Some(0),
            stream: vec![("9-0".to_owned(), Some("u".to_owned()))],
            ..EndState::default()
        };
        let v = judge(&s, &end, false);
        assert_eq!(
            v.failures,
            vec![Failure::Lost {
                msg: "u".to_owned(),
                entry: Some("9-0".to_owned()),
                acked: false
            }]
        );
        assert_eq!(unaccounted(&s, &[], &end.stream), 1);
    }

    #[test]
    fn with_idempotency_only_a_crash_right_after_handling_explains_a_repeat() {
        let mut s = Snapshot::default();
        for (m, e) in [("a", "1-0"), ("b", "2-0")] {
            s.publishes.push(publish(m, Some(e)));
        }
        // a: first handled by x#1, which was killed 0.5 s later.
        instance(&mut s, "x#1", Some((2.5, InstanceEnd::Killed)));
        // b: first handled by y#1, alive to the end.
        instance(&mut s, "y#1", Some((9.0, InstanceEnd::Stopped)));
        instance(&mut s, "z#1", None);
        s.handlings.push(handling("a", "1-0", "x#1", 2.0));
        s.handlings.push(handling("a", "1-0", "z#1", 4.0));
        s.handlings.push(handling("b", "2-0", "y#1", 2.0));
        s.handlings.push(handling("b", "2-0", "z#1", 4.0));
        let end = EndState {
            pending: Some(0),
            ..EndState::default()
        };
        let v = judge(&s, &end, true);
        assert_eq!(v.figures.duplicates, 2);
        assert_eq!(v.figures.duplicates_explained, 1);
        assert_eq!(v.figures.duplicates_unexplained, 1);
        assert!(
            matches!(&v.failures[..], [Failure::Duplicate { msg, .. }] if msg == "b"),
            "{:?}",
            v.failures
        );
        // Without idempotency repeats are figures, not failures.
        assert!(judge(&s, &end, false).failures.is_empty());
    }

    #[test]
    fn pending_entries_at_the_end_fail_the_run() {
        let s = Snapshot::default();
        let end = EndState {
            pending: Some(2),
            ..EndState::default()
        };
        let v = judge(&s, &end, false);
        assert!(matches!(
            &v.failures[..],
            [Failure::Pending { count: 2, .. }]
        ));
    }
}
