//! TLS against a real `redis-server --tls-port` with certificates generated
//! in the test: the right CA works (publish, a blocking read, a consumer),
//! a wrong CA or the public roots fail with a clear [`ConnectError`] that
//! is not retried, verification can be turned off, mutual TLS with and
//! without a client certificate, and a plain URL to the TLS port or a TLS
//! URL to a plain port fails within the connect timeout, without a panic.

use std::time::{Duration, Instant};

use orion_bus::{
    Bus, BusOptions, CancellationToken, ConnectError, Consumer, ConsumerOptions, ContractOptions,
    Delivery, HandlerError, Metrics, RedisSettings,
};
use orion_bus_examples as examples;
use orion_bus_harness::certs::TestPki;
use orion_bus_harness::{RedisServer, RedisServerOptions};

fn generate(name: &str) -> TestPki {
    TestPki::generate(name).unwrap_or_else(|e| panic!("cannot generate certificates: {e}"))
}

fn tls_server(pki: &TestPki, auth_clients: bool) -> RedisServer {
    RedisServer::start_with(RedisServerOptions::default().tls(pki.server_tls(auth_clients)))
        .unwrap_or_else(|e| panic!("cannot start a TLS redis-server: {e}"))
}

fn settings(server: &RedisServer) -> RedisSettings {
    let mut s = RedisSettings::new(server.url());
    s.connect_timeout = Duration::from_secs(2);
    s.command_timeout = Duration::from_secs(2);
    s
}

async fn connect(settings: RedisSettings, options: BusOptions) -> Result<Bus, ConnectError> {
    Bus::connect(
        settings,
        examples::registry(ContractOptions::default()).expect("examples"),
        options,
        Metrics::new(),
    )
    .await
}

/// Connects and expects a failure, within the connect timeout plus a margin.
async fn refused(settings: RedisSettings) -> ConnectError {
    let limit = settings.connect_timeout + Duration::from_secs(1);
    let started = Instant::now();
    let result = tokio::time::timeout(
        limit + Duration::from_secs(5),
        connect(settings, BusOptions::default()),
    )
    .await
    .expect("the connection attempt must end");
    let elapsed = started.elapsed();
    assert!(elapsed < limit, "failing took {elapsed:?}, over {limit:?}");
    match result {
        Ok(_) => panic!("connected, but must not"),
        Err(e) => e,
    }
}

fn one_line(e: &ConnectError) -> String {
    let text = e.to_string();
    assert!(!text.contains('\n'), "one line: {text:?}");
    text
}

#[tokio::test]
async fn the_right_ca_works_for_publishing_reading_and_consuming() {
    let pki = generate("right");
    let server = tls_server(&pki, false);
    let settings = settings(&server).tls_ca_file(pki.ca_file());
    let bus = connect(settings.clone(), BusOptions::default())
        .await
        .expect("connects over TLS with the CA");
    let id = bus
        .publish("alert", &examples::alert(1))
        .await
        .expect("publish over TLS");

    // A blocking read has its own connection: TLS too.
    let mut reader = settings
        .connect_blocking(Duration::from_millis(500))
        .await
        .expect("blocking connection over TLS");
    let reply: redis::Value = redis::cmd("XREAD")
        .arg("BLOCK")
        .arg(500)
        .arg("STREAMS")
        .arg("orion:alerts")
        .arg("0")
        .query_async(&mut reader)
        .await
        .expect("XREAD over TLS");
    assert!(format!("{reply:?}").contains(&id), "{reply:?}");

    // A consumer opens its reader and heartbeat connections the same way.
    let consumer = Consumer::new(
        &bus,
        ConsumerOptions::new("g", "c1")
            .contracts(["alert"])
            .limit(1),
    )
    .await
    .expect("consumer over TLS");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let report = tokio::time::timeout(
        Duration::from_secs(20),
        consumer.run(
            move |d: Delivery| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(d.id().to_owned());
                    Ok::<(), HandlerError>(())
                }
            },
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the consumer stops after its one message")
    .expect("consumer runs over TLS");
    assert_eq!(rx.recv().await.as_deref(), Some(id.as_str()), "{report:?}");
}

#[tokio::test]
async fn a_wrong_ca_or_the_public_roots_fail_clearly_and_are_not_retried() {
    let pki = generate("right");
    let other = generate("other");
    let server = tls_server(&pki, false);

    for settings in [
        settings(&server).tls_ca_file(other.ca_file()),
        settings(&server),
    ] {
        let e = refused(settings).await;
        let text = one_line(&e);
        assert!(matches!(e, ConnectError::Connect { .. }), "{e:?}");
        assert!(text.contains("certificate"), "says why: {text}");
        assert!(
            !e.is_retryable(),
            "an untrusted server stays untrusted: {text}"
        );
    }

    // Not retried even with a publish retry budget: it fails at once.
    let started = Instant::now();
    let result = connect(
        settings(&server).tls_ca_file(other.ca_file()),
        BusOptions::default().retry_budget(Some(Duration::from_secs(20))),
    )
    .await;
    assert!(result.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn verification_can_be_turned_off_by_setting_or_url() {
    let pki = generate("right");
    let server = tls_server(&pki, false);
    for settings in [
        settings(&server).tls_insecure(true),
        RedisSettings::new(format!("{}/#insecure", server.url())),
    ] {
        let bus = connect(settings, BusOptions::default())
            .await
            .expect("connects without verification");
        bus.publish("alert", &examples::alert(2))
            .await
            .expect("publish");
    }
}

#[tokio::test]
async fn mutual_tls_with_and_without_a_client_certificate() {
    let pki = generate("right");
    let other = generate("other");
    let server = tls_server(&pki, true);

    let with_cert = settings(&server)
        .tls_ca_file(pki.ca_file())
        .tls_client_cert(pki.client_cert_file(), pki.client_key_file());
    let bus = connect(with_cert, BusOptions::default())
        .await
        .expect("connects with the client certificate");
    bus.publish("alert", &examples::alert(3))
        .await
        .expect("publish with mTLS");

    let without = settings(&server).tls_ca_file(pki.ca_file());
    let e = refused(without).await;
    one_line(&e);
    assert!(matches!(e, ConnectError::Connect { .. }), "{e:?}");

    let foreign_cert = settings(&server)
        .tls_ca_file(pki.ca_file())
        .tls_client_cert(other.client_cert_file(), other.client_key_file());
    let e = refused(foreign_cert).await;
    one_line(&e);
    assert!(matches!(e, ConnectError::Connect { .. }), "{e:?}");
}

#[tokio::test]
async fn a_plain_url_to_the_tls_port_and_a_tls_url_to_a_plain_port_fail_cleanly() {
    let pki = generate("right");
    let tls = tls_server(&pki, false);
    let plain = RedisServer::start().expect("plain redis-server");

    let mut plain_to_tls = settings(&tls);
    plain_to_tls.url = format!("redis://127.0.0.1:{}", tls.port());
    let e = refused(plain_to_tls).await;
    one_line(&e);
    assert!(matches!(e, ConnectError::Connect { .. }), "{e:?}");

    let mut tls_to_plain = settings(&tls).tls_ca_file(pki.ca_file());
    tls_to_plain.url = format!("rediss://127.0.0.1:{}", plain.port());
    // A plain Redis waits for the end of a command line that the TLS
    // greeting never sends: this ends with the connect timeout.
    let e = refused(tls_to_plain).await;
    one_line(&e);
    assert!(matches!(e, ConnectError::Connect { .. }), "{e:?}");
}
