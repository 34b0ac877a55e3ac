//! Redis connection settings and connection set-up.
//!
//! Owns [`RedisSettings`] (URL, ACL credentials, db, timeouts, TLS),
//! turning them into `redis-rs` connections, and [`ConnectError`]. Every
//! connection is a [`ConnectionManager`], which reconnects by itself after a
//! lost connection; callers retry failed commands with their own backoff.
//!
//! Blocking reads get a connection of their own ([`RedisSettings::connect_blocking`]),
//! because Redis answers one connection's commands in order: an
//! `XREADGROUP ... BLOCK` on a shared connection would hold back every
//! publish and ack queued behind it.
//!
//! # Timeouts
//! One connection attempt (TCP connect, TLS handshake, `HELLO`/`AUTH`,
//! `SELECT`) is limited by `connect_timeout`, and the connection manager
//! makes exactly one attempt each time it (re)connects: it never retries by
//! itself, so no call waits for several attempts in a row. Retrying is the
//! caller's decision ([`RedisSettings::connect_within`], the publish retry
//! budget, the consumer's backoff). A command waits at most
//! `command_timeout` for its reply (a blocking read: its `BLOCK` plus
//! `command_timeout`); one issued while its connection is being
//! re-established first waits for that attempt, so at most
//! `connect_timeout + command_timeout` in all.
//!
//! # TLS
//! `rediss://` URLs use rustls with the ring crypto provider, which
//! [`RedisSettings::client`] installs as the process default (unless the
//! application installed one first): rustls panics on a handshake in a
//! process without a provider. Servers are verified against the public
//! roots (webpki-roots), or against `tls_ca_file` alone when it is set;
//! `tls_cert_file` and `tls_key_file` add a client certificate (mutual
//! TLS); `tls_insecure` (or the URL fragment `#insecure`) turns
//! verification off, with a warning.
//!
//! `tls.rs` holds the TLS parts: the crypto provider, certificate files
//! and what a failed handshake means.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

#[cfg(test)]
mod tests;
mod tls;

use tls::{
    check_client_identity, install_crypto_provider, is_tls_failure, read_certificates, read_pem,
    tls_hint,
};

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
    /// Limit on one connection attempt: TCP connect, TLS handshake and the
    /// `HELLO`/`AUTH`/`SELECT` set-up, together. Default 5 s.
    pub connect_timeout: Duration,
    /// Limit on one non-blocking command's reply. Default 5 s.
    pub command_timeout: Duration,
    /// PEM file of the CA certificate(s) that `rediss://` servers must
    /// chain to, trusted in place of the public roots (a homelab's private
    /// CA). Default `None`: the public roots (webpki-roots). Read whenever
    /// a client is built; an unreadable file, or one without a
    /// certificate, is [`ConnectError::Tls`].
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain) presented for mutual TLS
    /// (`--tls-auth-clients yes` on the server). Needs `tls_key_file`.
    /// Default `None`: no client certificate.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of `tls_cert_file`'s private key (PKCS#8, PKCS#1 or SEC1).
    /// Needs `tls_cert_file`. Default `None`.
    pub tls_key_file: Option<PathBuf>,
    /// Accept any server certificate, verifying neither issuer nor name
    /// (the URL fragment `#insecure` does the same). For tests only: it
    /// allows a man in the middle. Logged as a warning at the first
    /// connection. Contradicts `tls_ca_file` ([`ConnectError::Tls`]).
    /// Default false.
    pub tls_insecure: bool,
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
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("tls_insecure", &self.tls_insecure)
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
    /// The TLS settings cannot be used: a file is unreadable or holds no
    /// PEM of the kind expected, a certificate comes without its key (or
    /// the reverse), TLS settings come with a `redis://` URL, or
    /// `tls_insecure` with `tls_ca_file`.
    #[error("invalid TLS settings for {url}: {problem}")]
    Tls {
        /// The URL, with any password hidden.
        url: String,
        /// What is wrong, naming the setting and file.
        problem: String,
    },
    /// Redis could not be reached, refused the connection, or the TLS
    /// handshake failed (an untrusted server certificate, a missing client
    /// certificate, TLS spoken to a plain port or the reverse).
    #[error("cannot connect to Redis at {url}: {source}{}", tls_hint(source))]
    Connect {
        /// The URL, with any password hidden.
        url: String,
        /// The connection error.
        source: redis::RedisError,
    },
}

impl ConnectError {
    /// True when trying again may succeed: Redis refused, timed out or
    /// dropped the connection, or is loading. False for settings, TLS
    /// failures (a certificate will not become trusted by retrying) and
    /// authentication errors.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { source, .. } => {
                crate::backoff::is_transient(source) && !is_tls_failure(source)
            }
            Self::Settings { .. } | Self::Tls { .. } => false,
        }
    }
}

impl RedisSettings {
    /// Settings for a URL with default timeouts (5 s each) and TLS
    /// defaults (public roots, no client certificate, verification on).
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: None,
            password: None,
            db: None,
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_insecure: false,
        }
    }

    /// Trusts only the CA certificate(s) in this PEM file for `rediss://`.
    #[must_use]
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Presents this client certificate and key (PEM files) for mutual TLS.
    #[must_use]
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls_cert_file = Some(cert.into());
        self.tls_key_file = Some(key.into());
        self
    }

    /// Turns server certificate verification off (tests only).
    #[must_use]
    pub fn tls_insecure(mut self, on: bool) -> Self {
        self.tls_insecure = on;
        self
    }

    /// Builds the `redis-rs` client, reading the TLS files.
    ///
    /// # Errors
    /// [`ConnectError::Settings`] for a bad URL, [`ConnectError::Tls`] for
    /// unusable TLS settings.
    pub fn client(&self) -> Result<Client, ConnectError> {
        install_crypto_provider();
        let settings_err = |source| ConnectError::Settings {
            url: redact_url(&self.url),
            source,
        };
        let tls_err = |problem: String| ConnectError::Tls {
            url: redact_url(&self.url),
            problem,
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

        let certificates = self.tls_certificates().map_err(tls_err)?;
        let ConnectionAddr::TcpTls { host, port, .. } = info.addr().clone() else {
            if certificates.is_some() || self.tls_insecure {
                return Err(tls_err(
                    "the tls_* settings need a rediss:// URL; this one is not TLS".to_owned(),
                ));
            }
            return Client::open(info).map_err(settings_err);
        };
        if self.tls_insecure {
            info = info.set_addr(ConnectionAddr::TcpTls {
                host,
                port,
                insecure: true,
                tls_params: None,
            });
        }
        match certificates {
            Some(certificates) => Client::build_with_tls(info, certificates).map_err(settings_err),
            None => Client::open(info).map_err(settings_err),
        }
    }

    /// The CA and client certificate files, read and checked; `None` when
    /// no file is set. Errors name the setting and the file.
    fn tls_certificates(&self) -> Result<Option<TlsCertificates>, String> {
        if self.tls_insecure && self.tls_ca_file.is_some() {
            return Err(
                "tls_insecure turns off the verification that tls_ca_file is for; set only one"
                    .to_owned(),
            );
        }
        let root_cert = match &self.tls_ca_file {
            Some(path) => Some(read_certificates("tls_ca_file", path)?),
            None => None,
        };
        let client_tls = match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let client_cert = read_certificates("tls_cert_file", cert)?;
                let client_key = read_pem("tls_key_file", key)?;
                check_client_identity(&client_cert, &client_key).map_err(|problem| {
                    format!(
                        "tls_cert_file {} with tls_key_file {}: {problem}",
                        cert.display(),
                        key.display()
                    )
                })?;
                Some(ClientTlsConfig {
                    client_cert,
                    client_key,
                })
            }
            (Some(_), None) => {
                return Err("tls_cert_file needs tls_key_file, its private key".to_owned());
            }
            (None, Some(_)) => {
                return Err("tls_key_file needs tls_cert_file, its certificate".to_owned());
            }
        };
        if root_cert.is_none() && client_tls.is_none() {
            return Ok(None);
        }
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// True when server certificates go unverified (`tls_insecure` or a
    /// `#insecure` URL).
    fn is_insecure(&self) -> bool {
        self.tls_insecure
            || self.url.as_str().into_connection_info().is_ok_and(|info| {
                matches!(info.addr(), ConnectionAddr::TcpTls { insecure: true, .. })
            })
    }

    fn manager_config(&self, response_timeout: Duration) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(response_timeout))
            // One attempt per (re)connection, so that nothing waits for
            // several connect timeouts in a row; callers retry.
            .set_number_of_retries(0)
    }

    /// A shared, self-reconnecting connection for non-blocking commands
    /// (publish, ack, dead-letter). Concurrent commands on it are pipelined.
    /// One attempt, of at most `connect_timeout`.
    ///
    /// # Errors
    /// See [`ConnectError`].
    pub async fn connect(&self) -> Result<ConnectionManager, ConnectError> {
        self.connect_with(self.command_timeout).await
    }

    /// [`Self::connect`], retried with backoff while the failure may go
    /// away ([`ConnectError::is_retryable`]) and `budget` lasts. `None` or
    /// zero: one attempt. The first attempt gets its whole
    /// `connect_timeout`; later ones are cut off when the budget ends, so
    /// this returns within `max(budget, connect_timeout)` (plus a
    /// millisecond or so).
    ///
    /// # Errors
    /// The last attempt's [`ConnectError`].
    pub async fn connect_within(
        &self,
        budget: Option<Duration>,
    ) -> Result<ConnectionManager, ConnectError> {
        let Some(budget) = budget.filter(|b| !b.is_zero()) else {
            return self.connect().await;
        };
        let deadline = crate::backoff::deadline_after(budget);
        let first = self.connect().await;
        let mut backoff =
            crate::backoff::Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
        let mut last = match first {
            Ok(conn) => return Ok(conn),
            Err(e) => e,
        };
        loop {
            let delay = backoff.next_delay();
            if !last.is_retryable() || tokio::time::Instant::now() + delay >= deadline {
                return Err(last);
            }
            tracing::debug!(error = %last, "cannot connect to Redis; retrying within the budget");
            tokio::time::sleep(delay).await;
            match tokio::time::timeout_at(deadline, self.connect()).await {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => last = e,
                // Cut off by the budget: the previous failure says why.
                Err(_elapsed) => return Err(last),
            }
        }
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
        if self.is_insecure() {
            static WARNED: Once = Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    url = %redact_url(&self.url),
                    "TLS certificate verification is off (tls_insecure or #insecure): \
                     anyone on the path to Redis can impersonate it"
                );
            });
        }
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
