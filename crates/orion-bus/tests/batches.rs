//! Batch publishing is one transaction: against a real redis-server at
//! `maxmemory`, a refused batch writes nothing and says so in one line;
//! when Redis freezes mid-batch the error says the outcome is unknown, and
//! the stream then holds all of the batch or none of it.

mod common;

use std::time::Duration;

use orion_bus::{Bus, BusOptions, ContractOptions, Metrics, RedisSettings};
use orion_bus_examples as examples;

const READINGS: &str = "orion:sensor.readings";

async fn xlen(conn: &mut redis::aio::ConnectionManager) -> u64 {
    redis::cmd("XLEN")
        .arg(READINGS)
        .query_async(conn)
        .await
        .expect("XLEN")
}

fn readings(from: u64, n: u64) -> Vec<serde_json::Value> {
    (from..from + n).map(examples::sensor_reading).collect()
}

#[tokio::test]
async fn a_batch_refused_at_maxmemory_writes_nothing_and_says_so_in_one_line() {
    let server = common::server();
    let bus = common::bus(&server).await;
    let mut raw = common::raw(&server).await;
    // Some entries first, then Redis is full.
    bus.publish_batch("sensor.reading", &readings(0, 10))
        .await
        .expect("publish before the limit");
    let used: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut raw)
        .await
        .expect("INFO");
    let used: u64 = used
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    for (k, v) in [
        ("maxmemory-policy", "noeviction".to_owned()),
        ("maxmemory", (used + 64 * 1024).to_string()),
    ] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query_async::<()>(&mut raw)
            .await
            .expect("CONFIG SET");
    }
    // 5,000 messages cannot be queued in 64 KiB.
    let before = xlen(&mut raw).await;
    let result = bus
        .publish_batch("sensor.reading", &readings(100, 5000))
        .await;
    let err = result.expect_err("refused at maxmemory");
    let text = err.to_string();
    assert!(text.contains("OOM") || text.contains("EXECABORT"), "{text}");
    assert!(
        !text.contains('\n') && text.len() < 400,
        "one readable line: {text}"
    );
    assert!(!err.may_have_been_written(), "a refusal wrote nothing");
    assert_eq!(
        xlen(&mut raw).await,
        before,
        "nothing of the batch was written"
    );
}

#[tokio::test]
async fn a_batch_cut_off_by_a_frozen_redis_is_all_or_nothing_and_says_the_outcome_is_unknown() {
    let server = common::server();
    let mut settings = RedisSettings::new(server.url());
    settings.command_timeout = Duration::from_millis(500);
    let registry = examples::registry(ContractOptions::default()).expect("examples");
    let bus = Bus::connect(settings, registry, BusOptions::default(), Metrics::new())
        .await
        .expect("connect");
    let mut raw = common::raw(&server).await;
    let batch = readings(0, 2000);
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.publish_batch("sensor.reading", &batch).await })
    };
    server.pause();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.resume();
    let result = publisher.await.expect("join");
    // Redis runs the transaction when it goes on (or never got it whole).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let written = xlen(&mut raw).await;
    match result {
        Ok(ids) => assert_eq!((ids.len(), written), (2000, 2000)),
        Err(e) => {
            assert!(e.may_have_been_written(), "a lost reply: {e}");
            assert!(written == 0 || written == 2000, "all or nothing: {written}");
        }
    }
}
