//! Regression tests for issue 11: delivery guarantees under faults, one
//! test (or two) per case of the issue, against a real redis-server. Each
//! asserts the exact ids handled, left pending and dead-lettered.
//!
//! 1. a dead consumer's entry is claimed even when the reader could hold
//!    every in-flight slot;
//! 2. claims are not starved by live consumers' backlogs;
//! 3. a restart with more own pending entries than `max_in_flight`;
//! 4. an entry deleted while its handler runs, which then fails;
//! 5. phantom pending entries on a live consumer;
//! 6. a group that vanishes (stream deleted, group destroyed);
//! 7. trimming losses before the first read, and in the observer;
//! 8. two consumers with the same name;
//! 9. stale consumers are removed;
//! 10. starting a consumer of an existing group at `maxmemory`;
//! 11. a CPU-bound handler on a current-thread runtime.

mod common;

use common::Running;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orion_bus::observer::{self, ObserveFrom};
use orion_bus::retention::StreamState;
use orion_bus::{
    Bus, BusOptions, CancellationToken, ConsumeError, Consumer, ConsumerOptions, ConsumerReport,
    ContractOptions, Delivery, Handler, HandlerError, Metrics, RedisSettings, StartId,
};
use orion_bus_examples as examples;
use redis::aio::ConnectionManager;

const COMMANDS: &str = "orion:commands";
const ALERTS: &str = "orion:alerts";
const READINGS: &str = "orion:sensor.readings";

/// `claim_idle` of most tests: an entry idle this long on another
/// consumer is taken over.
const CLAIM_IDLE: Duration = Duration::from_millis(500);

/// Fast settings for `command`: claim after [`CLAIM_IDLE`], retry after
/// 100 ms, short reads and grace.
fn fast(group: &str, consumer: &str) -> ConsumerOptions {
    ConsumerOptions::new(group, consumer)
        .contract("command")
        .claim_idle(CLAIM_IDLE)
        .retry_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .block(Duration::from_millis(100))
        .shutdown_grace(Duration::from_secs(2))
}

/// Ids handed to a handler, in the order it saw them.
type Log = Arc<Mutex<Vec<String>>>;

fn ids_of(log: &Log) -> Vec<String> {
    log.lock().expect("lock").clone()
}

fn len_of(log: &Log) -> usize {
    log.lock().expect("lock").len()
}

fn sorted<S: AsRef<str>>(ids: impl IntoIterator<Item = S>) -> Vec<String> {
    let mut v: Vec<String> = ids.into_iter().map(|s| s.as_ref().to_owned()).collect();
    v.sort();
    v
}

/// A handler that records each id and succeeds.
fn recorder(log: &Log) -> impl Handler {
    let log = log.clone();
    move |d: Delivery| {
        log.lock().expect("lock").push(d.id().to_owned());
        async { Ok::<(), HandlerError>(()) }
    }
}

/// A handler that records each id, then works until `release` (a slow
/// handler on a live, heartbeating consumer).
fn held_until(log: &Log, release: &CancellationToken) -> impl Handler {
    let (log, release) = (log.clone(), release.clone());
    move |d: Delivery| {
        log.lock().expect("lock").push(d.id().to_owned());
        let release = release.clone();
        async move {
            release.cancelled().await;
            Ok::<(), HandlerError>(())
        }
    }
}

/// Polls until `log` holds at least `n` ids; false after `timeout`.
async fn until_len(log: &Log, n: usize, timeout: Duration) -> bool {
    common::eventually(timeout, || {
        let len = len_of(log);
        async move { len >= n }
    })
    .await
}

async fn publish_commands(bus: &Bus, from: u64, n: u64) -> Vec<String> {
    let msgs: Vec<_> = (from..from + n).map(examples::command).collect();
    bus.publish_batch("command", &msgs).await.expect("publish")
}

/// A bus on `url` with the example contracts (for a runtime of its own).
async fn bus_at(settings: RedisSettings) -> Bus {
    let registry = examples::registry(ContractOptions::default()).expect("examples");
    Bus::connect(settings, registry, BusOptions::default(), Metrics::new())
        .await
        .expect("connect")
}

/// `XGROUP CREATE <stream> <group> <start> MKSTREAM`.
async fn xgroup_create(raw: &mut ConnectionManager, stream: &str, group: &str, start: &str) {
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(start)
        .arg("MKSTREAM")
        .query_async::<()>(raw)
        .await
        .expect("XGROUP CREATE");
}

/// `XREADGROUP ... COUNT n STREAMS <streams> > ...` as `consumer`, as a
/// process that then dies would: the ids it was delivered.
async fn xreadgroup(
    raw: &mut ConnectionManager,
    streams: &[&str],
    group: &str,
    consumer: &str,
    count: usize,
) -> Vec<String> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(streams);
    for _ in streams {
        cmd.arg(">");
    }
    let reply: redis::Value = cmd.query_async(raw).await.expect("XREADGROUP");
    read_ids(reply)
}

fn read_ids(reply: redis::Value) -> Vec<String> {
    orion_bus::wire::parse_read_reply(reply)
        .expect("XREADGROUP reply")
        .into_iter()
        .flat_map(|s| s.entries.into_iter().map(|e| e.id))
        .collect()
}

/// Names of the consumers of `group` (`XINFO CONSUMERS`), sorted.
async fn consumer_names(raw: &mut ConnectionManager, stream: &str, group: &str) -> Vec<String> {
    let reply: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(raw)
        .await
        .expect("XINFO CONSUMERS");
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let redis::Value::Array(consumers) = reply else {
        panic!("XINFO CONSUMERS: {reply:?}")
    };
    let mut names: Vec<String> = consumers
        .iter()
        .filter_map(|c| match c {
            redis::Value::Array(kv) => kv
                .chunks(2)
                .find(|p| text(&p[0]).as_deref() == Some("name"))
                .and_then(|p| p.get(1).and_then(text)),
            redis::Value::Map(kv) => kv
                .iter()
                .find(|(k, _)| text(k).as_deref() == Some("name"))
                .and_then(|(_, v)| text(v)),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

/// The value of counter `name` for `stream` and `group` on this bus's
/// metrics (0 when absent).
fn metric(bus: &Bus, name: &str, stream: &str, group: &str) -> f64 {
    let text = bus.metrics().encode();
    let prefix = format!("{name}{{");
    let (s, g) = (format!("stream=\"{stream}\""), format!("group=\"{group}\""));
    text.lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&s) && l.contains(&g))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Every field of the failures hash of `group` on `stream`.
async fn failure_fields(raw: &mut ConnectionManager, stream: &str, group: &str) -> Vec<String> {
    redis::cmd("HKEYS")
        .arg(format!("{stream}:failures:{group}"))
        .query_async(raw)
        .await
        .expect("HKEYS")
}

/// (original id, reason) of every dead letter of `stream`.
async fn dead_letters(raw: &mut ConnectionManager, stream: &str) -> Vec<(String, String)> {
    let field = |f: &[(Vec<u8>, Vec<u8>)], name: &str| {
        f.iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    common::entries(raw, &format!("{stream}:dlq"))
        .await
        .iter()
        .map(|(_, f)| (field(f, "id"), field(f, "reason")))
        .collect()
}

/// Pending ids of `group` on `stream`, sorted.
async fn pending(raw: &mut ConnectionManager, stream: &str, group: &str) -> Vec<String> {
    sorted(common::pending_ids(raw, stream, group).await)
}

// ---------------------------------------------------------------------
// 1. A dead consumer's entries are claimed whatever the reader does.
// ---------------------------------------------------------------------

#[tokio::test]
async fn dead_consumers_entries_are_claimed_when_read_count_fills_max_in_flight() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = publish_commands(&bus, 0, 3).await;
    xgroup_create(&mut raw, COMMANDS, "g", "0").await;
    assert_eq!(xreadgroup(&mut raw, &[COMMANDS], "g", "dead", 3).await, ids);
    // read_count x streams = max_in_flight: the reader asks for every slot.
    let log = Log::default();
    let live = Consumer::new(&bus, fast("g", "live").max_in_flight(32).read_count(32))
        .await
        .expect("consumer");
    let started = Instant::now();
    let running = Running::spawn(live, recorder(&log));
    until_len(&log, 3, CLAIM_IDLE + Duration::from_secs(3)).await;
    assert_eq!(
        sorted(ids_of(&log)),
        sorted(&ids),
        "the dead consumer's entries, claimed within claim_idle + 3 s (after {:?})",
        started.elapsed()
    );
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    let report = running.stop().await;
    assert_eq!(report.acked, 3, "{report:?}");
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
    assert_eq!(dead_letters(&mut raw, COMMANDS).await, vec![]);
}

#[tokio::test]
async fn dead_consumers_entries_are_claimed_on_two_streams_with_default_read_settings() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let command = bus
        .publish("command", &examples::command(1))
        .await
        .expect("publish");
    let alert = bus
        .publish("alert", &examples::alert(1))
        .await
        .expect("publish");
    xgroup_create(&mut raw, COMMANDS, "g", "0").await;
    xgroup_create(&mut raw, ALERTS, "g", "0").await;
    assert_eq!(
        xreadgroup(&mut raw, &[COMMANDS, ALERTS], "g", "dead", 1).await,
        vec![command.clone(), alert.clone()]
    );
    // Defaults: read_count 32 x 2 streams = max_in_flight 64.
    let log = Log::default();
    let live = Consumer::new(&bus, fast("g", "live").contracts(["command", "alert"]))
        .await
        .expect("consumer");
    let running = Running::spawn(live, recorder(&log));
    until_len(&log, 2, CLAIM_IDLE + Duration::from_secs(3)).await;
    assert_eq!(sorted(ids_of(&log)), sorted([&command, &alert]));
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    assert!(common::all_acked_within(&raw, ALERTS, "g", Duration::from_secs(2)).await);
    running.stop().await;
    assert_eq!(
        sorted(ids_of(&log)),
        sorted([&command, &alert]),
        "once each"
    );
}

// ---------------------------------------------------------------------
// 2. Live consumers' backlogs do not hide orphans.
// ---------------------------------------------------------------------

#[tokio::test]
async fn orphans_behind_more_than_a_page_of_live_pending_entries_are_claimed() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    // One claim_idle for everyone: 1 s, so that the live consumers'
    // heartbeat (every third of it) keeps their entries well clear of it.
    let claim_idle = Duration::from_secs(1);
    let release = CancellationToken::new();
    // Two live consumers each hold 70 entries in slow handlers: 140
    // pending rows, more than a 128-row XPENDING page, all before the
    // orphans in id order.
    let mut live = Vec::new();
    let mut live_ids = Vec::new();
    for (n, name) in ["busy-1", "busy-2"].into_iter().enumerate() {
        let ids = publish_commands(&bus, n as u64 * 70, 70).await;
        let log = Log::default();
        let c = Consumer::new(
            &bus,
            fast("g", name)
                .claim_idle(claim_idle)
                .concurrency(70)
                .max_in_flight(70)
                .read_count(70),
        )
        .await
        .expect("consumer");
        live.push((Running::spawn(c, held_until(&log, &release)), log.clone()));
        until_len(&log, 70, Duration::from_secs(5)).await;
        assert_eq!(sorted(ids_of(&log)), sorted(&ids), "{name} holds its 70");
        live_ids.extend(ids);
    }
    // A third takes the next 20 and crashes with all of them in flight.
    let orphans = publish_commands(&bus, 140, 20).await;
    let crashed_log = Log::default();
    let crashed = Consumer::new(
        &bus,
        fast("g", "crashed")
            .claim_idle(claim_idle)
            .concurrency(20)
            .max_in_flight(20)
            .read_count(20),
    )
    .await
    .expect("consumer");
    let crashed = Running::spawn(crashed, held_until(&crashed_log, &CancellationToken::new()));
    until_len(&crashed_log, 20, Duration::from_secs(5)).await;
    assert_eq!(sorted(ids_of(&crashed_log)), sorted(&orphans));
    crashed.crash().await;
    assert_eq!(
        pending(&mut raw, COMMANDS, "g").await,
        sorted(live_ids.iter().chain(&orphans))
    );
    // A rescuer with room to spare (64 slots, reads of 8). Its short retry
    // backoff makes its pending scan look at rows of any idle time, so the
    // live consumers' 140 rows always come first: deterministic.
    let rescued = Log::default();
    let rescuer = Consumer::new(
        &bus,
        fast("g", "rescuer")
            .claim_idle(claim_idle)
            .retry_backoff(Duration::from_millis(1), Duration::from_secs(1))
            .read_count(8),
    )
    .await
    .expect("consumer");
    let started = Instant::now();
    let rescuer = Running::spawn(rescuer, recorder(&rescued));
    until_len(&rescued, 20, claim_idle + Duration::from_secs(3)).await;
    assert_eq!(
        sorted(ids_of(&rescued)),
        sorted(&orphans),
        "every orphan claimed within claim_idle + 3 s (after {:?})",
        started.elapsed()
    );
    assert!(
        common::eventually(Duration::from_secs(2), || {
            let mut raw = raw.clone();
            let want = sorted(&live_ids);
            async move { pending(&mut raw, COMMANDS, "g").await == want }
        })
        .await
    );
    assert_eq!(
        pending(&mut raw, COMMANDS, "g").await,
        sorted(&live_ids),
        "the live consumers' entries stay theirs"
    );
    release.cancel();
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(5)).await);
    assert_eq!(rescuer.stop().await.acked, 20);
    for (running, log) in live {
        running.stop().await;
        assert_eq!(len_of(&log), 70, "each live entry handled once");
    }
    assert_eq!(sorted(ids_of(&rescued)), sorted(&orphans), "once each");
    assert_eq!(dead_letters(&mut raw, COMMANDS).await, vec![]);
}

// ---------------------------------------------------------------------
// 3. A restart with more own pending entries than in-flight slots.
// ---------------------------------------------------------------------

/// A handler that records each id when it starts, then takes `work`.
fn slow(log: &Log, work: Duration) -> impl Handler {
    let log = log.clone();
    move |d: Delivery| {
        log.lock().expect("lock").push(d.id().to_owned());
        async move {
            tokio::time::sleep(work).await;
            Ok::<(), HandlerError>(())
        }
    }
}

#[tokio::test]
async fn own_pending_entries_waiting_their_turn_are_not_handled_twice() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = publish_commands(&bus, 0, 12).await;
    xgroup_create(&mut raw, COMMANDS, "g", "0").await;
    assert_eq!(xreadgroup(&mut raw, &[COMMANDS], "g", "c1", 12).await, ids);
    // c2 is live and claims what looks dead after claim_idle.
    let other = Log::default();
    let c2 = Consumer::new(&bus, fast("g", "c2")).await.expect("c2");
    let c2 = Running::spawn(c2, slow(&other, Duration::from_millis(10)));
    // c1 restarts with 12 own entries, 2 slots, 1 s handlers: its later
    // batches wait far longer than claim_idle.
    let mine = Log::default();
    let c1 = Consumer::new(&bus, fast("g", "c1").max_in_flight(2).concurrency(2))
        .await
        .expect("c1");
    let c1 = Running::spawn(c1, slow(&mine, Duration::from_secs(1)));
    assert!(
        common::eventually(Duration::from_secs(15), || {
            let n = len_of(&mine) + len_of(&other);
            async move { n >= 12 }
        })
        .await
    );
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(10)).await);
    c1.stop().await;
    c2.stop().await;
    let mut all = ids_of(&mine);
    all.extend(ids_of(&other));
    assert_eq!(sorted(all), sorted(&ids), "each entry handled once");
}

#[tokio::test]
async fn many_orphans_are_claimed_together_not_one_per_read() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let orphans = publish_commands(&bus, 0, 8).await;
    xgroup_create(&mut raw, COMMANDS, "g", "0").await;
    assert_eq!(
        xreadgroup(&mut raw, &[COMMANDS], "g", "dead", 8).await,
        orphans
    );
    let log = Log::default();
    let started = Arc::new(Mutex::new(Vec::new()));
    let (at, l) = (started.clone(), log.clone());
    let live = Consumer::new(
        &bus,
        fast("g", "live")
            .block(Duration::from_secs(1))
            .concurrency(8)
            .max_in_flight(32)
            .read_count(32),
    )
    .await
    .expect("consumer");
    let begin = Instant::now();
    let running = Running::spawn(live, move |d: Delivery| {
        l.lock().expect("lock").push(d.id().to_owned());
        at.lock().expect("lock").push(begin.elapsed());
        async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<(), HandlerError>(())
        }
    });
    until_len(&log, 8, Duration::from_secs(15)).await;
    assert_eq!(sorted(ids_of(&log)), sorted(&orphans));
    let times = started.lock().expect("lock").clone();
    let first = times.iter().min().copied().unwrap_or_default();
    let last = times.iter().max().copied().unwrap_or_default();
    // One read's block (1 s) at most between the first and the last, not
    // one per orphan (about 7 s).
    assert!(
        last - first < Duration::from_millis(1500),
        "claimed over {:?}: {times:?}",
        last - first
    );
    running.stop().await;
}

#[tokio::test]
async fn a_frozen_redis_does_not_make_a_live_consumers_entries_look_dead() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = publish_commands(&bus, 0, 1).await;
    let log = Log::default();
    let release = CancellationToken::new();
    let owner = Consumer::new(&bus, fast("g", "owner"))
        .await
        .expect("owner");
    let owner = Running::spawn(owner, held_until(&log, &release));
    until_len(&log, 1, Duration::from_secs(5)).await;
    let other = Log::default();
    let c2 = Consumer::new(&bus, fast("g", "c2")).await.expect("c2");
    let c2 = Running::spawn(c2, recorder(&other));
    tokio::time::sleep(CLAIM_IDLE * 3).await;
    // Frozen for four claim_idle periods (and past the owner's lease TTL):
    // after it, every entry looks idle until the heartbeats get through.
    server.pause();
    tokio::time::sleep(CLAIM_IDLE * 4).await;
    server.resume();
    tokio::time::sleep(CLAIM_IDLE * 6).await;
    assert_eq!(
        ids_of(&other),
        Vec::<String>::new(),
        "not claimed from a live owner"
    );
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, ids);
    release.cancel();
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(3)).await);
    owner.stop().await;
    c2.stop().await;
    assert_eq!(ids_of(&log), ids, "handled once, by its owner");
    assert_eq!(ids_of(&other), Vec::<String>::new());
}

#[tokio::test]
async fn the_heartbeat_keeps_a_slow_handlers_entry_fresh_without_counting_a_delivery() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = publish_commands(&bus, 0, 1).await;
    let log = Log::default();
    let release = CancellationToken::new();
    let owner = Consumer::new(&bus, fast("g", "owner"))
        .await
        .expect("owner");
    let owner = Running::spawn(owner, held_until(&log, &release));
    until_len(&log, 1, Duration::from_secs(5)).await;
    tokio::time::sleep(CLAIM_IDLE * 4).await;
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(COMMANDS)
        .arg("g")
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut raw)
        .await
        .expect("XPENDING");
    let [(id, holder, idle, deliveries)] = rows.as_slice() else {
        panic!("one pending entry: {rows:?}")
    };
    assert_eq!((id, holder.as_str()), (&ids[0], "owner"));
    assert!(
        Duration::from_millis(*idle) < CLAIM_IDLE,
        "touched within claim_idle: idle {idle} ms"
    );
    assert_eq!(*deliveries, 1, "a touch is not a delivery");
    release.cancel();
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(3)).await);
    owner.stop().await;
}

#[tokio::test]
async fn an_entry_deleted_under_a_live_slow_handler_is_left_to_it() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = publish_commands(&bus, 0, 1).await;
    let log = Log::default();
    let release = CancellationToken::new();
    let owner = Consumer::new(&bus, fast("g", "owner"))
        .await
        .expect("owner");
    let owner = Running::spawn(owner, held_until(&log, &release));
    until_len(&log, 1, Duration::from_secs(5)).await;
    redis::cmd("XDEL")
        .arg(COMMANDS)
        .arg(&ids[0])
        .query_async::<u64>(&mut raw)
        .await
        .expect("XDEL");
    // Another consumer runs for several claim_idle periods meanwhile.
    let other = Log::default();
    let c2 = Consumer::new(&bus, fast("g", "c2")).await.expect("c2");
    let c2 = Running::spawn(c2, recorder(&other));
    tokio::time::sleep(CLAIM_IDLE * 6).await;
    assert_eq!(
        dead_letters(&mut raw, COMMANDS).await,
        Vec::new(),
        "not taken from a live owner"
    );
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, ids);
    release.cancel();
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(3)).await);
    owner.stop().await;
    c2.stop().await;
    assert_eq!(ids_of(&log), ids, "handled once, by its owner");
    assert_eq!(ids_of(&other), Vec::<String>::new());
    assert_eq!(dead_letters(&mut raw, COMMANDS).await, Vec::new());
}

#[tokio::test]
async fn a_restart_with_more_own_pending_entries_than_max_in_flight_handles_them_all() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let old = publish_commands(&bus, 0, 100).await;
    xgroup_create(&mut raw, COMMANDS, "g", "0").await;
    // Delivered to c1, which then went away: 100 pending on c1.
    assert_eq!(xreadgroup(&mut raw, &[COMMANDS], "g", "c1", 100).await, old);
    let new = publish_commands(&bus, 100, 5).await;
    let log = Log::default();
    let c1 = Consumer::new(&bus, fast("g", "c1").max_in_flight(16))
        .await
        .expect("consumer");
    let running = Running::spawn(c1, recorder(&log));
    until_len(&log, 105, Duration::from_secs(10)).await;
    let all = sorted(old.iter().chain(&new));
    assert_eq!(
        sorted(ids_of(&log)),
        all,
        "the 100 old entries, then the 5 new"
    );
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(3)).await);
    let report = running.stop().await;
    assert_eq!(report.acked, 105, "{report:?}");
    assert_eq!(sorted(ids_of(&log)), all, "once each");
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
}

// ---------------------------------------------------------------------
// 4. Deleted while its handler runs, then failed: dead-lettered.
// ---------------------------------------------------------------------

#[tokio::test]
async fn an_entry_deleted_while_its_handler_runs_and_fails_is_dead_lettered_as_deleted() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = publish_commands(&bus, 0, 3).await;
    let doomed = ids[1].clone();
    // claim_idle 300 ms: a heartbeat every 100 ms, several while the
    // doomed entry's handler runs on after the entry was deleted.
    let log = Log::default();
    let attempts = Log::default();
    let (l, a, d, r) = (log.clone(), attempts.clone(), doomed.clone(), raw.clone());
    let handler = move |delivery: Delivery| {
        let id = delivery.id().to_owned();
        let (log, attempts, doomed, mut raw) = (l.clone(), a.clone(), d.clone(), r.clone());
        async move {
            if id != doomed {
                log.lock().expect("lock").push(id);
                return Ok(());
            }
            attempts.lock().expect("lock").push(id.clone());
            redis::cmd("XDEL")
                .arg(COMMANDS)
                .arg(&id)
                .query_async::<()>(&mut raw)
                .await
                .expect("XDEL");
            tokio::time::sleep(Duration::from_millis(700)).await;
            Err(HandlerError::retryable("downstream failed"))
        }
    };
    let c = Consumer::new(
        &bus,
        fast("g", "c")
            .claim_idle(Duration::from_millis(300))
            .concurrency(3),
    )
    .await
    .expect("consumer");
    let running = Running::spawn(c, handler);
    common::eventually(Duration::from_secs(6), || {
        let mut raw = raw.clone();
        async move { !dead_letters(&mut raw, COMMANDS).await.is_empty() }
    })
    .await;
    assert_eq!(
        dead_letters(&mut raw, COMMANDS).await,
        vec![(doomed.clone(), "deleted".to_owned())],
        "the deleted entry ends in the dead-letter stream"
    );
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    running.stop().await;
    assert_eq!(sorted(ids_of(&log)), sorted([&ids[0], &ids[2]]));
    assert_eq!(ids_of(&attempts), vec![doomed.clone()], "handled once");
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
    let left: Vec<String> = failure_fields(&mut raw, COMMANDS, "g")
        .await
        .into_iter()
        .filter(|f| f.starts_with(&format!("{doomed}:")))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "its failure record is removed");
}

// ---------------------------------------------------------------------
// 5. Phantom pending entries on a live consumer.
// ---------------------------------------------------------------------

/// Phantoms have never failed: the consumer must take them back whatever
/// its retry backoff (an hour here).
fn phantom_options(consumer: &str) -> ConsumerOptions {
    fast("g", consumer)
        .retry_backoff(Duration::from_secs(3600), Duration::from_secs(3600))
        .housekeeping_interval(Duration::from_millis(200))
}

#[tokio::test]
async fn an_entry_pending_on_a_live_consumer_that_never_got_it_is_handled() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let log = Log::default();
    let c = Consumer::new(&bus, phantom_options("c"))
        .await
        .expect("consumer");
    let running = Running::spawn(c, recorder(&log));
    let first = publish_commands(&bus, 0, 2).await;
    until_len(&log, 2, Duration::from_secs(5)).await;
    assert_eq!(sorted(ids_of(&log)), sorted(&first));
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    // A read by "c" whose reply never reached it (what a client-side
    // timeout leaves behind): the entry is added and delivered to "c" in
    // one transaction, so the running consumer's own read cannot get it.
    let (phantom, reply): (String, redis::Value) = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(COMMANDS)
        .arg("*")
        .arg("data")
        .arg(examples::command(2).to_string())
        .cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("c")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(COMMANDS)
        .arg(">")
        .query_async(&mut raw)
        .await
        .expect("MULTI");
    assert_eq!(read_ids(reply), vec![phantom.clone()]);
    until_len(&log, 3, Duration::from_secs(4)).await;
    assert_eq!(
        sorted(ids_of(&log)),
        sorted(first.iter().chain([&phantom])),
        "the phantom is handled by the running consumer"
    );
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    running.stop().await;
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_read_lost_to_a_frozen_redis_leaves_no_entry_behind() {
    use std::io::{Read, Write};
    let server = common::server();
    let mut settings = RedisSettings::new(server.url());
    // Reads give up 200 ms + 300 ms after they were sent.
    settings.command_timeout = Duration::from_millis(300);
    let bus = bus_at(settings).await;
    let mut raw = common::raw(&server).await;
    let log = Log::default();
    let c = Consumer::new(&bus, phantom_options("c").block(Duration::from_millis(200)))
        .await
        .expect("consumer");
    let running = Running::spawn(c, recorder(&log));
    let first = publish_commands(&bus, 0, 1).await;
    until_len(&log, 1, Duration::from_secs(5)).await;
    assert_eq!(ids_of(&log), first);
    // Freeze Redis while the consumer waits in XREADGROUP. An entry is
    // written meanwhile (queued on a connection opened before); when Redis
    // goes on, the waiting read gets it, but its client gave up long ago.
    let mut writer = std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("tcp");
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.pause();
    let data = examples::command(1).to_string();
    let xadd = format!(
        "*5\r\n$4\r\nXADD\r\n${}\r\n{COMMANDS}\r\n$1\r\n*\r\n$4\r\ndata\r\n${}\r\n{data}\r\n",
        COMMANDS.len(),
        data.len()
    );
    writer.write_all(xadd.as_bytes()).expect("write XADD");
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.resume();
    writer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 128];
    let n = writer.read(&mut buf).expect("XADD reply");
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    let id = reply
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("XADD reply: {reply:?}"))
        .to_owned();
    until_len(&log, 2, Duration::from_secs(6)).await;
    assert_eq!(
        ids_of(&log),
        vec![first[0].clone(), id.clone()],
        "the entry written during the freeze is handled, once, without a restart"
    );
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    running.stop().await;
    assert_eq!(ids_of(&log), vec![first[0].clone(), id]);
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
}

// ---------------------------------------------------------------------
// 6. A vanished group is recreated without loss and without replay.
// ---------------------------------------------------------------------

const RECREATED: &str = "orion_bus_group_recreated_total";

/// `first` runs atomically, then `n` new commands are added: returns their ids.
async fn then_add(raw: &mut ConnectionManager, first: &[&str], from: u64, n: u64) -> Vec<String> {
    let mut pipe = redis::pipe();
    pipe.atomic().cmd(first[0]).arg(&first[1..]).ignore();
    for k in from..from + n {
        pipe.cmd("XADD")
            .arg(COMMANDS)
            .arg("*")
            .arg("data")
            .arg(examples::command(k).to_string());
    }
    pipe.query_async(raw).await.expect("MULTI")
}

#[tokio::test]
async fn a_deleted_stream_under_a_consumer_started_at_new_loses_nothing_written_after() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let log = Log::default();
    let c = Consumer::new(&bus, fast("g", "c").start_id(StartId::New))
        .await
        .expect("consumer");
    let running = Running::spawn(c, recorder(&log));
    let old = publish_commands(&bus, 0, 3).await;
    until_len(&log, 3, Duration::from_secs(5)).await;
    assert_eq!(sorted(ids_of(&log)), sorted(&old));
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    // The stream is deleted, and written again before the consumer notices.
    let new = then_add(&mut raw, &["DEL", COMMANDS], 3, 5).await;
    until_len(&log, 8, Duration::from_secs(5)).await;
    assert_eq!(
        sorted(ids_of(&log)),
        sorted(old.iter().chain(&new)),
        "every entry written after the deletion is handled"
    );
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    assert_eq!(metric(&bus, RECREATED, COMMANDS, "g"), 1.0, "counted once");
    running.stop().await;
    assert_eq!(sorted(ids_of(&log)), sorted(old.iter().chain(&new)));
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_stream_deleted_with_undelivered_entries_counts_them_as_lost() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let log = Log::default();
    let release = CancellationToken::new();
    let c = Consumer::new(
        &bus,
        fast("g", "c")
            .max_in_flight(1)
            .read_count(1)
            .housekeeping_interval(Duration::from_millis(50)),
    )
    .await
    .expect("consumer");
    let running = Running::spawn(c, held_until(&log, &release));
    let old = publish_commands(&bus, 0, 5).await;
    until_len(&log, 1, Duration::from_secs(5)).await;
    // One in flight, four not yet delivered; a loss check sees that lag.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = then_add(&mut raw, &["DEL", COMMANDS], 5, 2).await;
    release.cancel();
    until_len(&log, 3, Duration::from_secs(5)).await;
    assert_eq!(ids_of(&log), [&old[..1], &new[..]].concat());
    assert_eq!(metric(&bus, RECREATED, COMMANDS, "g"), 1.0);
    assert_eq!(
        metric(&bus, TRIMMED, COMMANDS, "g"),
        4.0,
        "the four never delivered went with the stream"
    );
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    running.stop().await;
    assert_eq!(ids_of(&log), [&old[..1], &new[..]].concat());
    assert_eq!(metric(&bus, TRIMMED, COMMANDS, "g"), 4.0, "counted once");
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
}

#[tokio::test]
async fn losses_before_and_after_a_stream_is_deleted_are_each_counted_once() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let log = Log::default();
    let release = CancellationToken::new();
    let c = Consumer::new(
        &bus,
        fast("g", "c")
            .max_in_flight(1)
            .read_count(1)
            .housekeeping_interval(Duration::from_millis(50)),
    )
    .await
    .expect("consumer");
    let running = Running::spawn(c, held_until(&log, &release));
    let old = publish_commands(&bus, 0, 6).await;
    until_len(&log, 1, Duration::from_secs(5)).await;
    // Two of the five undelivered are deleted: a loss of 2.
    for id in &old[1..3] {
        redis::cmd("XDEL")
            .arg(COMMANDS)
            .arg(id)
            .query_async::<u64>(&mut raw)
            .await
            .expect("XDEL");
    }
    assert!(
        common::eventually(Duration::from_secs(3), || {
            let n = metric(&bus, TRIMMED, COMMANDS, "g");
            async move { n >= 2.0 }
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metric(&bus, TRIMMED, COMMANDS, "g"), 2.0);
    // Then the stream goes, with the other three undelivered: 3 more.
    let new = then_add(&mut raw, &["DEL", COMMANDS], 6, 2).await;
    release.cancel();
    until_len(&log, 3, Duration::from_secs(5)).await;
    assert_eq!(ids_of(&log), [&old[..1], &new[..]].concat());
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(metric(&bus, RECREATED, COMMANDS, "g"), 1.0);
    assert_eq!(
        metric(&bus, TRIMMED, COMMANDS, "g"),
        5.0,
        "2 deleted, then 3 with the stream"
    );
}

#[tokio::test]
async fn a_destroyed_group_is_recreated_without_replaying_what_was_handled() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let log = Log::default();
    let c = Consumer::new(&bus, fast("g", "c")).await.expect("consumer");
    let running = Running::spawn(c, recorder(&log));
    let old = publish_commands(&bus, 0, 4).await;
    until_len(&log, 4, Duration::from_secs(5)).await;
    assert_eq!(sorted(ids_of(&log)), sorted(&old));
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    let new = then_add(&mut raw, &["XGROUP", "DESTROY", COMMANDS, "g"], 4, 3).await;
    common::eventually(Duration::from_secs(5), || {
        let seen = ids_of(&log);
        let new = new.clone();
        async move { new.iter().all(|id| seen.contains(id)) }
    })
    .await;
    // A replay from 0 would come with (or before) the new entries; give
    // any stragglers a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sorted(ids_of(&log)),
        sorted(old.iter().chain(&new)),
        "the new entries once, and nothing handled before again"
    );
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    assert_eq!(metric(&bus, RECREATED, COMMANDS, "g"), 1.0, "counted once");
    running.stop().await;
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
}

// ---------------------------------------------------------------------
// 7. Trimming losses are counted before the first read, and by the observer.
// ---------------------------------------------------------------------

const TRIMMED: &str = "orion_bus_trimmed_unread_messages_total";

/// Group `slow` reads 1 sensor reading; then a Python-style publisher adds
/// 3,000 with `MAXLEN ~ 100`. Returns the unread entries trimmed.
async fn slow_group_then_python_trimming(bus: &Bus, raw: &mut ConnectionManager) -> u64 {
    bus.publish("sensor.reading", &examples::sensor_reading(0))
        .await
        .expect("publish");
    let first = Log::default();
    let report = Consumer::new(
        bus,
        ConsumerOptions::new("slow", "slow-1")
            .contract("sensor.reading")
            .limit(1),
    )
    .await
    .expect("consumer")
    .run(recorder(&first), CancellationToken::new())
    .await
    .expect("run");
    assert_eq!(report.acked, 1);
    for chunk in (1..=3000u64).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for &n in chunk {
            pipe.cmd("XADD")
                .arg(READINGS)
                .arg("MAXLEN")
                .arg("~")
                .arg(100)
                .arg("*")
                .arg("data")
                .arg(examples::sensor_reading(n).to_string())
                .ignore();
        }
        pipe.query_async::<()>(raw).await.expect("XADD");
    }
    let state = StreamState::read(raw, READINGS).await.expect("XINFO");
    let slow = state
        .groups
        .iter()
        .find(|g| g.name == "slow")
        .expect("group");
    let (added, read) = (
        state.entries_added.expect("Redis 7"),
        slow.entries_read.expect("Redis 7"),
    );
    assert_eq!((added, read), (3001, 1));
    let lost = added - read - state.length;
    assert!(lost > 2000, "most were trimmed unread: {lost}");
    lost
}

#[tokio::test]
async fn a_restarted_consumer_counts_trimming_losses_before_its_first_read() {
    let server = common::server();
    let mut raw = common::raw(&server).await;
    let lost = slow_group_then_python_trimming(&common::bus(&server).await, &mut raw).await;
    let unread: Vec<String> = common::entries(&mut raw, READINGS)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    // The restart: a new process, with metrics of its own.
    let bus = common::bus(&server).await;
    let log = Log::default();
    let c = Consumer::new(&bus, fast("slow", "slow-1").contracts(["sensor.reading"]))
        .await
        .expect("consumer");
    let started = Instant::now();
    let running = Running::spawn(c, recorder(&log));
    common::eventually(Duration::from_secs(2), || {
        let n = metric(&bus, TRIMMED, READINGS, "slow");
        async move { n > 0.0 }
    })
    .await;
    assert_eq!(
        metric(&bus, TRIMMED, READINGS, "slow"),
        lost as f64,
        "counted within {:?} of the start",
        started.elapsed()
    );
    until_len(&log, unread.len(), Duration::from_secs(5)).await;
    assert_eq!(ids_of(&log), unread, "what was left, in order");
    assert!(common::all_acked_within(&raw, READINGS, "slow", Duration::from_secs(2)).await);
    running.stop().await;
    assert_eq!(metric(&bus, TRIMMED, READINGS, "slow"), lost as f64);
}

#[tokio::test]
async fn losses_are_counted_after_the_group_read_past_the_gap() {
    let server = common::server();
    let mut raw = common::raw(&server).await;
    let lost = slow_group_then_python_trimming(&common::bus(&server).await, &mut raw).await;
    // Another member of the group reads past the gap (and everything left)
    // before any check of this process ran.
    let left = xlen(&mut raw, READINGS).await;
    let read = xreadgroup(&mut raw, &[READINGS], "slow", "python-1", left as usize).await;
    assert_eq!(read.len() as u64, left);
    for chunk in read.chunks(100) {
        redis::cmd("XACK")
            .arg(READINGS)
            .arg("slow")
            .arg(chunk)
            .query_async::<u64>(&mut raw)
            .await
            .expect("XACK");
    }
    // A consumer started now finds its group caught up, past the gap.
    let bus = common::bus(&server).await;
    let log = Log::default();
    let c = Consumer::new(
        &bus,
        fast("slow", "slow-2")
            .contracts(["sensor.reading"])
            .housekeeping_interval(Duration::from_millis(100)),
    )
    .await
    .expect("consumer");
    let running = Running::spawn(c, recorder(&log));
    common::eventually(Duration::from_secs(2), || {
        let n = metric(&bus, TRIMMED, READINGS, "slow");
        async move { n > 0.0 }
    })
    .await;
    assert_eq!(metric(&bus, TRIMMED, READINGS, "slow"), lost as f64);
    // New entries after it change nothing: counted once.
    let more = publish_readings(&bus, 5).await;
    until_len(&log, 5, Duration::from_secs(5)).await;
    assert_eq!(ids_of(&log), more);
    tokio::time::sleep(Duration::from_millis(600)).await;
    running.stop().await;
    assert_eq!(metric(&bus, TRIMMED, READINGS, "slow"), lost as f64);
}

async fn xlen(raw: &mut ConnectionManager, stream: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(raw)
        .await
        .expect("XLEN")
}

async fn publish_readings(bus: &Bus, n: u64) -> Vec<String> {
    let msgs: Vec<_> = (10_000..10_000 + n).map(examples::sensor_reading).collect();
    bus.publish_batch("sensor.reading", &msgs)
        .await
        .expect("publish")
}

#[tokio::test]
async fn the_observer_counts_trimming_losses_of_groups() {
    let server = common::server();
    let mut raw = common::raw(&server).await;
    let bus = common::bus(&server).await;
    // The observer runs in a process of its own (its own metrics).
    let watcher = common::bus(&server).await;
    let shutdown = CancellationToken::new();
    let (w, token) = (watcher.clone(), shutdown.clone());
    let task = tokio::spawn(async move {
        observer::run(
            &w,
            ObserveFrom::Now,
            Duration::from_secs(60),
            Duration::from_millis(100),
            token,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lost = slow_group_then_python_trimming(&bus, &mut raw).await;
    common::eventually(Duration::from_secs(12), || {
        let n = metric(&watcher, TRIMMED, READINGS, "slow");
        async move { n >= lost as f64 }
    })
    .await;
    assert_eq!(metric(&watcher, TRIMMED, READINGS, "slow"), lost as f64);
    shutdown.cancel();
    task.await.expect("join").expect("observer");
}

// ---------------------------------------------------------------------
// 8. Two consumers with the same name.
// ---------------------------------------------------------------------

/// `Consumer::new` then `run`, given `limit` to return.
async fn run_within(
    bus: &Bus,
    options: ConsumerOptions,
    handler: impl Handler,
    limit: Duration,
) -> Result<Result<ConsumerReport, ConsumeError>, tokio::time::error::Elapsed> {
    tokio::time::timeout(limit, async {
        Consumer::new(bus, options)
            .await?
            .run(handler, CancellationToken::new())
            .await
    })
    .await
}

#[tokio::test]
async fn a_second_consumer_with_a_name_in_use_refuses_to_start_naming_the_holder() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = publish_commands(&bus, 0, 5).await;
    let release = CancellationToken::new();
    let first_log = Log::default();
    let first = Consumer::new(&bus, fast("g", "same").concurrency(5))
        .await
        .expect("consumer");
    let first = Running::spawn(first, held_until(&first_log, &release));
    until_len(&first_log, 5, Duration::from_secs(5)).await;
    assert_eq!(sorted(ids_of(&first_log)), sorted(&ids));
    let second_log = Log::default();
    let second = run_within(
        &bus,
        fast("g", "same"),
        recorder(&second_log),
        Duration::from_secs(3),
    )
    .await;
    match second {
        Ok(Err(
            ref e @ ConsumeError::NameTaken {
                ref group,
                ref consumer,
                ref holder,
            },
        )) => {
            assert_eq!((group.as_str(), consumer.as_str()), ("g", "same"));
            assert!(
                holder.contains(&std::process::id().to_string()),
                "the holder names this process: {holder}"
            );
            assert!(e.to_string().contains(holder.as_str()), "{e}");
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert_eq!(ids_of(&second_log), Vec::<String>::new(), "nothing taken");
    release.cancel();
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(3)).await);
    assert_eq!(first.stop().await.acked, 5);
    assert_eq!(sorted(ids_of(&first_log)), sorted(&ids), "each once");
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_consumer_waiting_for_its_name_starts_after_the_holder_stops() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let ids = publish_commands(&bus, 0, 5).await;
    let release = CancellationToken::new();
    let first_log = Log::default();
    let first = Consumer::new(&bus, fast("g", "same").concurrency(5))
        .await
        .expect("consumer");
    let first = Running::spawn(first, held_until(&first_log, &release));
    until_len(&first_log, 5, Duration::from_secs(5)).await;
    let second_log = Log::default();
    let second = Consumer::new(&bus, fast("g", "same").wait_for_name(true))
        .await
        .expect("consumer");
    let second = Running::spawn(second, recorder(&second_log));
    // Several claim_idle periods: the second must not touch the first's
    // in-flight entries (asserting an absence takes a wait).
    tokio::time::sleep(CLAIM_IDLE * 3).await;
    assert_eq!(ids_of(&second_log), Vec::<String>::new(), "it waits");
    assert!(!second.task.is_finished(), "still waiting, not failed");
    release.cancel();
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(3)).await);
    assert_eq!(first.stop().await.acked, 5);
    let new = publish_commands(&bus, 5, 2).await;
    until_len(&second_log, 2, Duration::from_secs(5)).await;
    assert_eq!(
        sorted(ids_of(&second_log)),
        sorted(&new),
        "only the new ones"
    );
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    second.stop().await;
    assert_eq!(sorted(ids_of(&first_log)), sorted(&ids), "each once");
    assert_eq!(sorted(ids_of(&second_log)), sorted(&new));
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
}

// ---------------------------------------------------------------------
// 9. Stale consumers are removed.
// ---------------------------------------------------------------------

const STALE_REMOVED: &str = "orion_bus_stale_consumers_removed_total";

#[tokio::test]
async fn stale_consumers_with_nothing_pending_are_removed() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    xgroup_create(&mut raw, COMMANDS, "g", "0").await;
    for n in 0..20 {
        redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg(COMMANDS)
            .arg("g")
            .arg(format!("stopped-{n}"))
            .query_async::<()>(&mut raw)
            .await
            .expect("CREATECONSUMER");
    }
    // Idle as long, but still holding an entry: kept.
    let held = bus
        .publish("command", &examples::command(1))
        .await
        .expect("publish");
    assert_eq!(
        xreadgroup(&mut raw, &[COMMANDS], "g", "holder", 1).await,
        vec![held.clone()]
    );
    let log = Log::default();
    let live = Consumer::new(
        &bus,
        fast("g", "live")
            // Never claims the holder's entry within this test.
            .claim_idle(Duration::from_secs(3600))
            .stale_consumer_after(Duration::from_secs(1))
            .housekeeping_interval(Duration::from_millis(200)),
    )
    .await
    .expect("consumer");
    let running = Running::spawn(live, recorder(&log));
    // "live" itself is listed only once Redis delivered something to it
    // (Redis 7.0 creates the consumer then), so it is left out.
    let others = |raw: &ConnectionManager| {
        let mut raw = raw.clone();
        async move {
            let mut names = consumer_names(&mut raw, COMMANDS, "g").await;
            names.retain(|n| n != "live");
            names
        }
    };
    common::eventually(Duration::from_secs(5), || {
        let others = others(&raw);
        async move { others.await == ["holder"] }
    })
    .await;
    assert_eq!(others(&raw).await, ["holder"], "the 20 stale ones are gone");
    assert_eq!(metric(&bus, STALE_REMOVED, COMMANDS, "g"), 20.0);
    // `status` shows what was removed (the last ten), and by whom.
    let status = orion_bus::status::collect(&bus).await.expect("status");
    let group = status
        .iter()
        .find(|s| s.stream == COMMANDS)
        .and_then(|s| s.groups.iter().find(|g| g.name == "g"))
        .expect("group g in status");
    assert_eq!(group.removed_consumers.len(), 10);
    for r in &group.removed_consumers {
        assert!(r.name.starts_with("stopped-"), "{r:?}");
        assert_eq!(r.removed_by, "live");
        assert!(r.idle_ms >= 1000, "{r:?}");
    }
    let table = orion_bus::status::render(&status);
    assert!(
        table.contains("removed  stopped-") && table.contains("by live"),
        "{table}"
    );
    // A consumer seen just now is not stale.
    redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(COMMANDS)
        .arg("g")
        .arg("newcomer")
        .query_async::<()>(&mut raw)
        .await
        .expect("CREATECONSUMER");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(others(&raw).await, ["holder", "newcomer"]);
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, vec![held]);
    running.stop().await;
    assert_eq!(ids_of(&log), Vec::<String>::new());
    assert_eq!(metric(&bus, STALE_REMOVED, COMMANDS, "g"), 20.0);
}

// ---------------------------------------------------------------------
// 10. A consumer of an existing group starts at maxmemory.
// ---------------------------------------------------------------------

async fn used_memory(raw: &mut ConnectionManager) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(raw)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

async fn config_set(raw: &mut ConnectionManager, key: &str, value: &str) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async::<()>(raw)
        .await
        .expect("CONFIG SET");
}

/// Sets `maxmemory` just above what is used (`noeviction`), writes until
/// Redis refuses with OOM, then lowers `maxmemory` a little below usage,
/// so that freed buffers cannot let a write through again.
async fn fill_to_maxmemory(raw: &mut ConnectionManager) {
    config_set(raw, "maxmemory-policy", "noeviction").await;
    let used = used_memory(raw).await;
    config_set(raw, "maxmemory", &(used + 1024 * 1024).to_string()).await;
    let value = vec![b'x'; 1024];
    let mut full = false;
    for n in 0..100_000 {
        match redis::cmd("SET")
            .arg(format!("ballast:{n}"))
            .arg(&value)
            .query_async::<()>(raw)
            .await
        {
            Ok(()) => {}
            Err(e) if e.code() == Some("OOM") => {
                full = true;
                break;
            }
            Err(e) => panic!("SET: {e}"),
        }
    }
    assert!(full, "Redis never reached maxmemory");
    let used = used_memory(raw).await;
    config_set(raw, "maxmemory", &(used - 64 * 1024).to_string()).await;
    let refused = redis::cmd("SET")
        .arg("probe")
        .arg("x")
        .query_async::<()>(raw)
        .await
        .expect_err("Redis is full");
    assert_eq!(refused.code(), Some("OOM"), "{refused}");
}

#[tokio::test]
async fn a_consumer_of_an_existing_group_starts_and_consumes_at_maxmemory() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let id = bus
        .publish("command", &examples::command(1))
        .await
        .expect("publish");
    xgroup_create(&mut raw, COMMANDS, "g", "0").await;
    fill_to_maxmemory(&mut raw).await;
    let log = Log::default();
    let c = Consumer::new(&bus, fast("g", "c"))
        .await
        .expect("a consumer of an existing group starts at maxmemory");
    let running = Running::spawn(c, recorder(&log));
    until_len(&log, 1, Duration::from_secs(5)).await;
    assert_eq!(ids_of(&log), vec![id]);
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(2)).await);
    running.stop().await;
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
}

// ---------------------------------------------------------------------
// 11. A CPU-bound handler on a current-thread runtime.
// ---------------------------------------------------------------------

#[tokio::test]
async fn a_cpu_bound_handler_on_a_current_thread_runtime_is_not_taken_for_dead() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    let id = bus
        .publish("command", &examples::command(1))
        .await
        .expect("publish");
    // The busy consumer has one thread, which its handler blocks for
    // three claim_idle periods.
    let busy_log = Log::default();
    let stop = CancellationToken::new();
    let (url, l, s) = (server.url(), busy_log.clone(), stop.clone());
    let busy = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let bus = bus_at(RedisSettings::new(url)).await;
            let c = Consumer::new(&bus, fast("g", "cpu"))
                .await
                .expect("consumer");
            c.run(
                move |d: Delivery| {
                    l.lock().expect("lock").push(d.id().to_owned());
                    async {
                        std::thread::sleep(CLAIM_IDLE * 3);
                        Ok::<(), HandlerError>(())
                    }
                },
                s,
            )
            .await
            .expect("run")
        })
    });
    until_len(&busy_log, 1, Duration::from_secs(5)).await;
    assert_eq!(ids_of(&busy_log), vec![id.clone()]);
    let other_log = Log::default();
    let other = Consumer::new(&bus, fast("g", "other"))
        .await
        .expect("consumer");
    let other = Running::spawn(other, recorder(&other_log));
    assert!(common::all_acked_within(&raw, COMMANDS, "g", Duration::from_secs(5)).await);
    // A claim would have come after claim_idle, long before the ack;
    // give a late one a moment anyway.
    tokio::time::sleep(CLAIM_IDLE).await;
    other.stop().await;
    stop.cancel();
    let busy_report = busy.join().expect("busy thread");
    assert_eq!(ids_of(&busy_log), vec![id], "handled once, by its consumer");
    assert_eq!(ids_of(&other_log), Vec::<String>::new(), "never claimed");
    assert_eq!(busy_report.acked, 1, "{busy_report:?}");
    assert_eq!(pending(&mut raw, COMMANDS, "g").await, Vec::<String>::new());
}
