//! [`TypedConsumer`]: a [`Consumer`] whose handler gets generated types
//! ([`TypedDelivery`]), accepting the versions the type names and
//! dead-lettering the rest as `unaccepted_version`.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use serde_json::Value;

use crate::CancellationToken;
use crate::bus::Bus;
use crate::consumer::{
    ConsumeError, Consumer, ConsumerOptions, ConsumerReport, Delivery, Handler, HandlerError,
};

use super::Accept;

/// One typed delivery: the value and where it came from.
#[derive(Debug, Clone)]
pub struct TypedDelivery<M> {
    message: M,
    contract: Arc<str>,
    version: Option<String>,
    id: String,
    stream: Arc<str>,
    deliveries: u64,
}

impl<M> TypedDelivery<M> {
    /// The message.
    #[must_use]
    pub fn message(&self) -> &M {
        &self.message
    }

    /// Takes the message.
    #[must_use]
    pub fn into_message(self) -> M {
        self.message
    }

    /// The contract it conforms to.
    #[must_use]
    pub fn contract(&self) -> &str {
        &self.contract
    }

    /// Its `version` field.
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// The stream entry id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stream it came from.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Deliveries so far, as Redis counts them (1 the first time).
    #[must_use]
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }
}

/// A consumer whose handler receives `M`: one generated contract type, or
/// an enum of several from [`message_enum!`](crate::message_enum).
///
/// It consumes exactly the contracts `M` names and accepts exactly the
/// versions `M` names; every entry is still validated against its schema
/// first, and a valid entry of any other version is dead-lettered with
/// the reason `unaccepted_version`.
#[derive(Debug)]
pub struct TypedConsumer<M> {
    inner: Consumer,
    _message: PhantomData<fn() -> M>,
}

impl<M: Accept> TypedConsumer<M> {
    /// Creates the groups, like [`Consumer::new`]. The contracts and
    /// accepted versions come from `M`; any set in `options` are replaced.
    ///
    /// # Errors
    /// See [`ConsumeError`].
    pub async fn new(bus: &Bus, mut options: ConsumerOptions) -> Result<Self, ConsumeError> {
        options.contracts.clear();
        options.accept_versions.clear();
        let mut unpinned = Vec::new();
        for (contract, version) in M::accepted() {
            if !options.contracts.iter().any(|c| c == contract) {
                options.contracts.push(contract.to_owned());
            }
            match version {
                Some(v) => options
                    .accept_versions
                    .entry(contract.to_owned())
                    .or_default()
                    .push(v.to_owned()),
                None => unpinned.push(contract),
            }
        }
        // A type for a contract that pins no version accepts all of it.
        for contract in unpinned {
            options.accept_versions.remove(contract);
        }
        Ok(Self {
            inner: Consumer::new(bus, options).await?,
            _message: PhantomData,
        })
    }

    /// Runs until `shutdown`, like [`Consumer::run`], handing each message
    /// to `handler` as an `M`. `Ok` acks it; errors follow the consumer's
    /// error policy.
    ///
    /// # Errors
    /// See [`ConsumeError`].
    pub async fn run<F, Fut>(
        self,
        handler: F,
        shutdown: CancellationToken,
    ) -> Result<ConsumerReport, ConsumeError>
    where
        F: Fn(TypedDelivery<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send,
    {
        let adapter = TypedHandler {
            handler,
            _message: PhantomData,
        };
        self.inner.run(adapter, shutdown).await
    }
}

struct TypedHandler<M, F> {
    handler: F,
    _message: PhantomData<fn() -> M>,
}

impl<M, F, Fut> Handler for TypedHandler<M, F>
where
    M: Accept,
    F: Fn(TypedDelivery<M>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    async fn handle(&self, delivery: Delivery) -> Result<(), HandlerError> {
        let Delivery {
            contract,
            stream,
            id,
            deliveries,
            message,
            ..
        } = delivery;
        let version = message
            .get("version")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let typed = match M::from_message(&contract, version.as_deref(), message) {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                return Err(HandlerError::permanent(format!(
                    "message passed contract {contract} but does not fit {}: {e}",
                    std::any::type_name::<M>()
                )));
            }
            // The consumer's accepted versions are M's, so this only
            // happens if the two were changed apart.
            None => {
                return Err(HandlerError::permanent(format!(
                    "{contract} version {version:?} is not accepted by {}",
                    std::any::type_name::<M>()
                )));
            }
        };
        (self.handler)(TypedDelivery {
            message: typed,
            contract,
            version,
            id,
            stream,
            deliveries,
        })
        .await
    }
}
