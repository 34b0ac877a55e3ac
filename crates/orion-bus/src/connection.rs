//! Redis connection settings and connection set-up.
//!
//! Owns [`RedisSettings`] (URL, ACL credentials, db, timeouts), turning
//! them into `redis-rs` connections, and [`ConnectError`]. Every connection
//! is a [`ConnectionManager`], which reconnects by itself after a lost
//! connection; callers retry failed commands with their own backoff.
//!
//! Blocking reads get a connection of their own ([`RedisSettings::connect_blocking`]),
//! because Redis answers one connection's commands in order: an
//! `XREADGROUP ... BLOCK` on a shared connection would hold back every
//! publish and ack queued behind it.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo};

/// How to reach Redis.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisSettings {
    /// `redis://` or `rediss://` (TLS) URL. Credentials and db may be in it.
    pub url: String,
    /// ACL user name; overrides the URL's.
    pub username: Option<String>,
    /// Password; overrides the URL's.
    pub password: Option<String>,
    /// Database number; overrides the URL's.
    pub db: Option<i64>,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on one non-blocking command's reply.
    pub command_timeout: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self::new("redis://127.0.0.1:6379")
    }
}

/// Errors of connection set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL or settings are invalid.
    #[error("invalid Redis settings for {url}: {source}")]
    Settings {
        /// The URL, with any password hidden.
        url: String,
        /// The parse error.
        source: redis::RedisError,
    },
    /// Redis could not be reached or refused the connection.
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The URL, with any password hidden.
        url: String,
        /// The connection error.
        source: redis::RedisError,
    },
}

impl RedisSettings {
    /// Settings for a URL with default timeouts (5 s each).
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: None,
            password: None,
            db: None,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
        }
    }

    /// Builds the `redis-rs` client.
    ///
    /// # Errors
    /// [`ConnectError::Settings`] for a bad URL.
    pub fn client(&self) -> Result<Client, ConnectError> {
        let settings_err = |source| ConnectError::Settings {
            url: redact_url(&self.url),
            source,
        };
        let mut info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(settings_err)?;
        let mut redis = info.redis_settings().clone();
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        if let Some(db) = self.db {
            redis = redis.set_db(db);
        }
        info = info.set_redis_settings(redis);
        Client::open(info).map_err(settings_err)
    }

    fn manager_config(&self, response_timeout: Duration) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(response_timeout))
            // Initial connect: a few quick tries; afterwards callers back off.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(2))
    }

    /// A shared, self-reconnecting connection for non-blocking commands
    /// (publish, ack, dead-letter). Concurrent commands on it are pipelined.
    ///
    /// # Errors
    /// See [`ConnectError`].
    pub async fn connect(&self) -> Result<ConnectionManager, ConnectError> {
        self.connect_with(self.command_timeout).await
    }

    /// A dedicated connection for blocking reads of up to `block`.
    ///
    /// # Errors
    /// See [`ConnectError`].
    pub async fn connect_blocking(
        &self,
        block: Duration,
    ) -> Result<ConnectionManager, ConnectError> {
        self.connect_with(block.saturating_add(self.command_timeout))
            .await
    }

    async fn connect_with(
        &self,
        response_timeout: Duration,
    ) -> Result<ConnectionManager, ConnectError> {
        let client = self.client()?;
        client
            .get_connection_manager_with_config(self.manager_config(response_timeout))
            .await
            .map_err(|source| ConnectError::Connect {
                url: redact_url(&self.url),
                source,
            })
    }
}

/// Hides the password in a URL (`redis://user:***@host`).
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(redact_url("rediss://:secret@h"), "rediss://:***@h");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        let s = RedisSettings {
            password: Some("pw".into()),
            ..RedisSettings::new("redis://x:pw@h")
        };
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("pw"), "{dbg}");
    }

    #[test]
    fn accepts_tls_urls_and_rejects_garbage() {
        assert!(RedisSettings::new("rediss://h:6380").client().is_ok());
        assert!(RedisSettings::new("http://h").client().is_err());
    }
}
