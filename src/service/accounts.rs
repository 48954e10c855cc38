//! Registering users and changing their roles.

use std::sync::Arc;

use uuid::Uuid;

use crate::error::Error;
use crate::session::Timestamp;
use crate::store::{Store, UserRecord};
use crate::telemetry::metrics::Metrics;
use crate::users::{Password, Passwords, Role, UserKey, Username};

/// Account operations.
#[derive(Clone)]
pub struct UserService {
    store: Arc<dyn Store>,
    passwords: Arc<Passwords>,
    password_min_length: usize,
    metrics: Arc<Metrics>,
}

impl UserService {
    /// Wire the service.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        passwords: Arc<Passwords>,
        password_min_length: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { store, passwords, password_min_length, metrics }
    }

    /// Create an account with the default role.
    ///
    /// # Errors
    /// 422 for an invalid username or password, 409 when the username is taken, 503 when the
    /// store is unavailable.
    pub async fn register(&self, username: &str, password: String) -> Result<UserRecord, Error> {
        let result = self.register_inner(username, password).await;
        self.metrics.registration(match &result {
            Ok(_) => "success",
            Err(Error::UsernameTaken) => "conflict",
            Err(Error::InvalidField { .. }) => "invalid",
            Err(Error::RateLimited(_) | Error::Overloaded) => "rate_limited",
            Err(_) => "unavailable",
        });
        if let Ok(user) = &result {
            tracing::info!(user_id = %user.user_id, "user registered");
        }
        result
    }

    async fn register_inner(&self, username: &str, password: String) -> Result<UserRecord, Error> {
        let username =
            Username::parse(username).map_err(|detail| Error::InvalidField { field: "username".into(), detail })?;
        let password = Password::parse(password, self.password_min_length)
            .map_err(|detail| Error::InvalidField { field: "password".into(), detail })?;
        // A place in the hashing pool first: a registration the pool cannot take is refused
        // before it costs Redis work.
        let slot = self.passwords.reserve()?;
        // Cheap pre-check so a taken name does not cost a hash; the insert below is the
        // authority (it is atomic), this only saves work.
        if self.store.find_user(&username.key()).await?.is_some() {
            return Err(Error::UsernameTaken);
        }
        let password_hash = self.passwords.hash(slot, &password).await?;
        let record = UserRecord {
            user_id: Uuid::new_v4().to_string(),
            username: username.as_str().to_owned(),
            password_hash,
            roles: vec![Role::DEFAULT.to_owned()],
            created_at: Timestamp::now(),
        };
        if self.store.insert_user(&username.key(), &record).await? {
            Ok(record)
        } else {
            Err(Error::UsernameTaken)
        }
    }

    /// Add or remove a role. Returns `false` when the user does not exist.
    ///
    /// # Errors
    /// When the store is unavailable.
    pub async fn set_role(&self, user: &UserKey, role: &Role, granted: bool) -> Result<bool, Error> {
        Ok(self.store.set_role(user, role.as_str(), granted).await?)
    }
}
