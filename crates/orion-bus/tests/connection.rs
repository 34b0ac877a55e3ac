//! Connection settings against a real redis-server with an ACL user:
//! credentials from the URL or from the settings (which win), the
//! database number, and a clear error for wrong credentials.

use orion_bus::{Bus, BusOptions, ConnectError, Metrics, RedisSettings};
use orion_bus_examples as examples;
use orion_bus_harness::{RedisServer, RedisServerOptions};

fn server_with_user() -> RedisServer {
    let mut options = RedisServerOptions::default().arg("--user");
    for word in ["alice", "on", ">s3cret", "~*", "&*", "+@all"] {
        options = options.arg(word);
    }
    RedisServer::start_with(options).unwrap_or_else(|e| panic!("cannot start redis-server: {e}"))
}

async fn connect(settings: RedisSettings) -> Result<Bus, ConnectError> {
    Bus::connect(
        settings,
        orion_bus_examples::registry(orion_bus::ContractOptions::default()).expect("examples"),
        BusOptions::default(),
        Metrics::new(),
    )
    .await
}

/// `XLEN orion:alerts` in database `db`, as the default user.
async fn alerts_in(server: &RedisServer, db: i64) -> u64 {
    let mut conn = redis::Client::open(format!("{}/{db}", server.url()))
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    redis::cmd("XLEN")
        .arg("orion:alerts")
        .query_async(&mut conn)
        .await
        .expect("XLEN")
}

#[tokio::test]
async fn acl_credentials_and_db_from_the_url() {
    let server = server_with_user();
    let url = format!("redis://alice:s3cret@127.0.0.1:{}/3", server.port());
    let bus = connect(RedisSettings::new(url))
        .await
        .expect("connects as alice");
    bus.publish("alert", &examples::alert(1))
        .await
        .expect("publish");
    assert_eq!(alerts_in(&server, 3).await, 1, "written to db 3");
    assert_eq!(alerts_in(&server, 0).await, 0, "not to db 0");
}

#[tokio::test]
async fn settings_override_the_url_and_wrong_credentials_are_a_clear_error() {
    let server = server_with_user();
    // Wrong password in the URL, right one in the settings: the settings win.
    let mut settings =
        RedisSettings::new(format!("redis://alice:wrong@127.0.0.1:{}/1", server.port()));
    settings.password = Some("s3cret".to_owned());
    settings.db = Some(5);
    let bus = connect(settings).await.expect("settings' password is used");
    bus.publish("alert", &examples::alert(1))
        .await
        .expect("publish");
    assert_eq!(alerts_in(&server, 5).await, 1, "settings' db is used");
    assert_eq!(alerts_in(&server, 1).await, 0);

    let mut wrong = RedisSettings::new(server.url());
    wrong.username = Some("alice".to_owned());
    wrong.password = Some("nope".to_owned());
    let err = match connect(wrong).await {
        Ok(_) => panic!("a wrong password must not connect"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.to_lowercase().contains("authentication failed"),
        "{err}"
    );
    assert!(!err.contains("nope"), "the password is not echoed: {err}");
}
