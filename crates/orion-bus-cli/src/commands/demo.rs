//! `orion-bus demo`: the scripted demo, on a throwaway redis-server unless
//! a Redis URL was given.

use std::io::Write as _;
use std::time::Duration;

use orion_bus::{Bus, Metrics};
use orion_bus_harness::RedisServer;

use std::process::ExitCode;

use super::examples_unless_given;
use super::fail;
use crate::EXIT_FAILED;
use crate::config::Settings;

pub(crate) async fn run(settings: &Settings, messages: u64) -> ExitCode {
    // A throwaway server unless the user pointed us at one.
    let mut server = None;
    let mut redis = settings.redis.clone();
    if !settings.redis_url_given {
        match RedisServer::start() {
            Ok(s) => {
                let _ = say!(
                    "started a throwaway redis-server on {} (data in {})",
                    s.url(),
                    s.dir().display()
                );
                redis = orion_bus::RedisSettings::new(s.url());
                server = Some(s);
            }
            Err(e) => return fail(EXIT_FAILED, e),
        }
    }
    let registry = match examples_unless_given(settings) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let options = settings.bus.clone().prefix(crate::demo::DEMO_PREFIX);
    let bus = match Bus::connect(redis, registry, options, Metrics::new()).await {
        Ok(b) => b,
        Err(e) => return fail(EXIT_FAILED, e),
    };
    let shutdown = crate::signal::shutdown_token();
    let timeout = Duration::from_secs(120);
    let result = tokio::time::timeout(timeout, crate::demo::run(&bus, messages, shutdown)).await;
    let code = match result {
        Ok(Ok(report)) => {
            let _ = say!("{report}");
            if report.is_consistent() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Ok(Err(e)) => fail(EXIT_FAILED, e),
        Err(_) => fail(
            EXIT_FAILED,
            format!("demo did not finish within {timeout:?}"),
        ),
    };
    if let Some(mut s) = server {
        s.stop();
        let _ = say!("stopped the throwaway redis-server");
    }
    code
}
