//! Retention against a real redis-server: safe trimming keeps what groups
//! still need (unread and pending entries), the hard cap is the last
//! resort, and entries trimmed before a group read them are counted.

mod common;

use std::time::Duration;

use orion_bus::retention::{Retention, StreamState, TRIM_INTERVAL};
use orion_bus::{BusOptions, CancellationToken, Consumer, ConsumerOptions, Delivery, HandlerError};
use orion_bus_examples as examples;

const STREAM: &str = "orion:sensor.readings";

async fn publish_n(bus: &orion_bus::Bus, from: u64, n: u64) -> Vec<String> {
    let mut ids = Vec::new();
    let msgs: Vec<_> = (from..from + n).map(examples::sensor_reading).collect();
    for chunk in msgs.chunks(500) {
        ids.extend(
            bus.publish_batch("sensor.reading", chunk)
                .await
                .expect("publish"),
        );
    }
    ids
}

/// Publishes one more message after the trim interval, so the background
/// trim/check runs, then waits for it.
async fn trigger_retention(bus: &orion_bus::Bus, n: u64) {
    tokio::time::sleep(TRIM_INTERVAL + Duration::from_millis(100)).await;
    publish_n(bus, n, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn metric(text: &str, group: &str) -> u64 {
    let prefix = format!(
        "orion_bus_trimmed_unread_messages_total{{stream=\"{STREAM}\",group=\"{group}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn safe_retention_never_trims_what_a_group_still_needs() {
    let server = common::server();
    let bus = common::bus_with(
        &server,
        BusOptions::default()
            .max_len(100)
            .retention(Retention::Safe {
                hard_cap: 1_000_000,
            }),
    )
    .await;
    let mut raw = common::raw(&server).await;
    Consumer::new(
        &bus,
        ConsumerOptions::new("slow", "c").contract("sensor.reading"),
    )
    .await
    .expect("group");
    let ids = publish_n(&bus, 0, 3000).await;
    trigger_retention(&bus, 3000).await;
    assert_eq!(
        common::xlen(&mut raw, STREAM).await,
        3001,
        "nothing unread was trimmed"
    );

    // The group reads 2000; entry #100 fails and stays pending.
    let keep = ids[100].clone();
    let k = keep.clone();
    Consumer::new(
        &bus,
        ConsumerOptions::new("slow", "c")
            .contract("sensor.reading")
            .retry_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
            .limit(2000),
    )
    .await
    .expect("consumer")
    .run(
        move |d: Delivery| {
            let fail = d.id() == k;
            async move {
                if fail {
                    Err(HandlerError::retryable("later"))
                } else {
                    Ok(())
                }
            }
        },
        CancellationToken::new(),
    )
    .await
    .expect("run");
    trigger_retention(&bus, 3001).await;
    let len = common::xlen(&mut raw, STREAM).await;
    let first = common::entries(&mut raw, STREAM).await;
    let first_id = first
        .first()
        .map(|(id, _)| id.clone())
        .expect("entries left");
    // The pending entry pins the start of the stream.
    let parse = |id: &str| -> (u64, u64) {
        let (a, b) = id.split_once('-').expect("id");
        (a.parse().expect("ms"), b.parse().expect("seq"))
    };
    assert!(
        parse(&first_id) <= parse(&keep),
        "pending entry {keep} kept (first is {first_id})"
    );
    assert!(first.iter().any(|(id, _)| *id == keep));
    assert!(
        (2902..=3002).contains(&len),
        "only entries before the pending #100 may go, got {len}"
    );

    // Once it is acked (here: dead-lettered), trimming moves up to the unread part.
    let mut conn = raw.clone();
    redis::cmd("XACK")
        .arg(STREAM)
        .arg("slow")
        .arg(&keep)
        .query_async::<u64>(&mut conn)
        .await
        .expect("XACK");
    trigger_retention(&bus, 3002).await;
    let len = common::xlen(&mut raw, STREAM).await;
    assert!(len >= 1003, "the 1003 unread entries are kept, got {len}");
    assert!(len < 3003, "acked entries were trimmed, got {len}");
    let state = StreamState::read(&mut raw, STREAM).await.expect("state");
    assert_eq!(
        state.groups[0].lag,
        Some(1003),
        "nothing the group needs is gone"
    );
    assert_eq!(
        metric(&bus.metrics().encode(), "slow"),
        0,
        "no loss reported"
    );
}

#[tokio::test]
async fn the_hard_cap_loses_unread_entries_and_says_so() {
    let server = common::server();
    let bus = common::bus_with(
        &server,
        BusOptions::default().retention(Retention::Safe { hard_cap: 100 }),
    )
    .await;
    let mut raw = common::raw(&server).await;
    publish_n(&bus, 0, 1).await;
    Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c")
            .contract("sensor.reading")
            .limit(1),
    )
    .await
    .expect("consumer")
    .run(|_d: Delivery| async { Ok(()) }, CancellationToken::new())
    .await
    .expect("run");
    publish_n(&bus, 1, 1000).await;
    trigger_retention(&bus, 1001).await;
    let len = common::xlen(&mut raw, STREAM).await;
    assert!(len < 1002, "the hard cap trimmed, got {len}");
    let lost = metric(&bus.metrics().encode(), "g");
    assert_eq!(
        lost,
        1001 - len,
        "every unread entry that was trimmed is counted"
    );
}

#[tokio::test]
async fn a_group_that_has_read_nothing_yet_still_has_its_losses_counted() {
    let server = common::server();
    let bus = common::bus_with(
        &server,
        BusOptions::default().retention(Retention::Safe { hard_cap: 100 }),
    )
    .await;
    let mut raw = common::raw(&server).await;
    // A group waiting at 0 (a module not started yet) on an empty stream.
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg("idle")
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(&mut raw)
        .await
        .expect("XGROUP CREATE");
    publish_n(&bus, 0, 1000).await;
    trigger_retention(&bus, 1000).await;
    let len = common::xlen(&mut raw, STREAM).await;
    assert!(len < 1001, "the hard cap trimmed, got {len}");
    assert_eq!(
        metric(&bus.metrics().encode(), "idle"),
        1001 - len,
        "every entry trimmed before the group's first read is counted"
    );
}

#[tokio::test]
async fn approximate_trimming_losses_are_detected() {
    let server = common::server();
    let bus = common::bus_with(&server, BusOptions::default().max_len(100)).await;
    let mut raw = common::raw(&server).await;
    publish_n(&bus, 0, 1).await;
    Consumer::new(
        &bus,
        ConsumerOptions::new("lagging", "c")
            .contract("sensor.reading")
            .limit(1),
    )
    .await
    .expect("consumer")
    .run(|_d: Delivery| async { Ok(()) }, CancellationToken::new())
    .await
    .expect("run");
    publish_n(&bus, 1, 2000).await;
    trigger_retention(&bus, 2001).await;
    let len = common::xlen(&mut raw, STREAM).await;
    assert!(len < 2002, "MAXLEN ~ 100 trimmed, got {len}");
    let text = bus.metrics().encode();
    assert_eq!(metric(&text, "lagging"), 2002 - 1 - len, "{text}");
    // Checking again does not count the same gap twice.
    trigger_retention(&bus, 2002).await;
    let len2 = common::xlen(&mut raw, STREAM).await;
    assert_eq!(metric(&bus.metrics().encode(), "lagging"), 2003 - 1 - len2);
}
