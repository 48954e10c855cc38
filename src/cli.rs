//! Operator subcommands on the same binary and configuration as the server.

use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::app::build_store;
use crate::config::{AdminCommand, Config};
use crate::users::{Role, Username};

/// Run `sessiond admin …`.
///
/// # Errors
/// When the arguments are invalid, the store is unreachable, or the user does not exist.
pub async fn run_admin(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    if config.redis_url.is_none() {
        bail!("admin commands change the shared store: set SESSIOND_REDIS_URL");
    }
    let (username, role, granted) = match &command {
        AdminCommand::GrantRole { username, role } => (username, role, true),
        AdminCommand::RevokeRole { username, role } => (username, role, false),
    };
    let username = Username::parse(username).map_err(|e| anyhow::anyhow!("invalid username: {e}"))?;
    let role = Role::parse(role).map_err(|e| anyhow::anyhow!("invalid role: {e}"))?;
    let store = build_store(config, &crate::telemetry::metrics::Metrics::new())?;
    let mut attempt = 0;
    let found = loop {
        match store.set_role(&username.key(), role.as_str(), granted).await {
            Ok(found) => break found,
            // The pool connects in the background; give it a few seconds.
            Err(_) if attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error).context("the session store is unavailable"),
        }
    };
    if !found {
        bail!("no such user: {}", username.as_str());
    }
    let verb = if granted { "granted role" } else { "removed role" };
    println!("{verb} {} {} {}", role.as_str(), if granted { "to" } else { "from" }, username.as_str());
    Ok(())
}
