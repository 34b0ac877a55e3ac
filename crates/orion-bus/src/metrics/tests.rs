//! The list of every metric family and every label value the bus can
//! emit, checked against `encode()`: a renamed metric, a new label or a
//! changed label value is a visible diff here.

use std::time::Duration;

use super::*;
use crate::telemetry::{
    EntriesClaimed, EntriesMissed, EntryDeadLettered, EntryObserved, GroupRecreated, InternalEvent,
    LossCause, MessageRejected, RedisCommandFailed, StaleConsumerRemoved, UnreadEntriesLost,
};

#[test]
fn names_follow_the_convention() {
    let m = Metrics::new();
    m.publisher("event").published.inc();
    m.rejected(
        "event",
        RejectReason::Poison(PoisonReason::ContractViolation),
    );
    let c = m.consumer("orion:events", "event", "g");
    c.handled(Duration::from_millis(2), false);
    c.acked.inc();
    m.dead_lettered(
        "orion:events",
        "event",
        "g",
        DeadLetterReason::Poison(PoisonReason::InvalidJson),
    );
    let text = m.encode();
    for line in [
        "orion_bus_published_messages_total{contract=\"event\"} 1",
        "orion_bus_rejected_messages_total{contract=\"event\",reason=\"contract_violation\"} 1",
        "orion_bus_consumed_messages_total{stream=\"orion:events\",contract=\"event\",group=\"g\"} 1",
        "orion_bus_handler_errors_total{stream=\"orion:events\",contract=\"event\",group=\"g\"} 1",
        "orion_bus_acked_messages_total{stream=\"orion:events\",contract=\"event\",group=\"g\"} 1",
        "orion_bus_dead_lettered_messages_total{stream=\"orion:events\",contract=\"event\",group=\"g\",reason=\"invalid_json\"} 1",
        "orion_bus_handler_duration_seconds_count{stream=\"orion:events\",contract=\"event\",group=\"g\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

/// One of every event (every value of every reason and outcome), then
/// the gauges; returns the registry.
fn one_of_each() -> Metrics {
    let m = Metrics::new();
    let (s, c, g) = ("s", "c", "g");
    m.publisher(c).published.inc();
    for reason in RejectReason::ALL {
        MessageRejected {
            contract: c,
            reason,
            error: &"e",
        }
        .emit(&m);
    }
    let counters = m.consumer(s, c, g);
    counters.handled(Duration::from_millis(1), false);
    counters.acked.inc();
    counters.end_to_end.observe(0.1);
    for reason in DeadLetterReason::ALL {
        EntryDeadLettered {
            stream: s,
            contract: c,
            group: g,
            id: "1-0",
            reason,
        }
        .emit(&m);
    }
    EntriesClaimed {
        stream: s,
        group: g,
        id: "1-0",
        from: "dead",
    }
    .emit(&m);
    GroupRecreated {
        stream: s,
        group: g,
        at: "0-0",
        new_stream: true,
    }
    .emit(&m);
    StaleConsumerRemoved {
        stream: s,
        group: g,
        consumer: "old",
        idle_ms: 1,
    }
    .emit(&m);
    UnreadEntriesLost {
        stream: s,
        group: g,
        gap: "",
        lost: 1,
        cause: LossCause::StreamGone,
    }
    .emit(&m);
    let io = redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "reset",
    ));
    RedisCommandFailed::warn(&io, "testing").stream(s).emit(&m);
    EntryObserved {
        stream: s,
        contract: c,
        id: "1-0",
        invalid: None,
    }
    .emit(&m);
    for reason in PoisonReason::ALL {
        EntryObserved {
            stream: s,
            contract: c,
            id: "1-0",
            invalid: Some((reason, "src")),
        }
        .emit(&m);
    }
    EntriesMissed {
        stream: s,
        contract: c,
        missed: 1,
    }
    .emit(&m);
    m.group_state(s, g, 1, Some(1), 1);
    m.stream_state(s, 1, 1);
    m.workers_busy().set(1);
    m.workers_capacity().set(1);
    m
}

/// `encode()` reduced to what must not change by accident: the `# TYPE`
/// lines and each series' name and labels (values and histogram buckets
/// left out), sorted.
fn listing(m: &Metrics) -> String {
    let mut lines: Vec<String> = m
        .encode()
        .lines()
        .filter(|l| l.starts_with("# TYPE") || !l.starts_with('#'))
        .filter(|l| !l.contains("_bucket{"))
        .map(|l| match l.strip_prefix("# TYPE ") {
            Some(t) => format!("# TYPE {t}"),
            None => l
                .rsplit_once(' ')
                .map_or(l, |(series, _)| series)
                .to_owned(),
        })
        .collect();
    lines.sort();
    lines.join("\n") + "\n"
}

/// Every family and every label value the bus can emit.
const EXPECTED: &str = include_str!("expected_series.txt");

#[test]
fn every_metric_and_label_value_is_listed() {
    let actual = listing(&one_of_each());
    assert!(
        actual == EXPECTED,
        "the metrics changed; if on purpose, update crates/orion-bus/src/metrics/expected_series.txt (and docs/OPERATIONS.md) to:\n{actual}"
    );
}
