//! Typed publishing: [`Bus::publish_typed`] and
//! [`Bus::publish_typed_batch`], validated like any other publish unless
//! the bus was told not to.

use serde_json::Value;

use crate::bus::{Bus, PublishError};
use crate::contracts::{Violation, Violations};

use super::ContractType;

impl Bus {
    /// Publishes a typed message to its contract's stream. It is validated
    /// against the schema like any other message unless
    /// [`BusOptions::validate_typed`](crate::BusOptions::validate_typed) is
    /// off; its `version` must be the type's.
    ///
    /// # Errors
    /// See [`PublishError`].
    pub async fn publish_typed<T: ContractType>(
        &self,
        message: &T,
    ) -> Result<String, PublishError> {
        let value = typed_value(message, None)?;
        let prepared =
            self.prepare_with(T::CONTRACT, &value, None, self.options().validate_typed)?;
        let mut ids = self
            .publish_prepared(std::slice::from_ref(&prepared))
            .await?;
        Ok(ids.pop().unwrap_or_default())
    }

    /// Publishes many typed messages of one type in one round trip.
    ///
    /// # Errors
    /// See [`PublishError`]; nothing is written if any message fails.
    pub async fn publish_typed_batch<T: ContractType>(
        &self,
        messages: &[T],
    ) -> Result<Vec<String>, PublishError> {
        let mut batch = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let value = typed_value(m, Some(i))?;
            batch.push(self.prepare_with(
                T::CONTRACT,
                &value,
                Some(i),
                self.options().validate_typed,
            )?);
        }
        self.publish_prepared(&batch).await
    }
}

/// Serialises a typed message and checks its `version` is the type's.
fn typed_value<T: ContractType>(message: &T, index: Option<usize>) -> Result<Value, PublishError> {
    let value = serde_json::to_value(message).map_err(|e| PublishError::Invalid {
        contract: T::CONTRACT.to_owned(),
        index,
        violations: Violations(vec![Violation {
            instance_path: String::new(),
            schema_path: String::new(),
            message: format!("cannot serialise {}: {e}", std::any::type_name::<T>()),
        }]),
    })?;
    if let Some(expected) = T::VERSION {
        let got = value.get("version").and_then(Value::as_str);
        if got != Some(expected) {
            return Err(PublishError::Invalid {
                contract: T::CONTRACT.to_owned(),
                index,
                violations: Violations(vec![Violation {
                    instance_path: "/version".to_owned(),
                    schema_path: "/properties/version/const".to_owned(),
                    message: format!(
                        "{} is version {expected} of {}, but its version field says {got:?}",
                        std::any::type_name::<T>(),
                        T::CONTRACT
                    ),
                }]),
            });
        }
    }
    Ok(value)
}
