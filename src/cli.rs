//! Operator subcommands on the same binary and configuration as the server. They go through
//! the same admin service as the admin API, so they apply the same rules and leave the same
//! audit trail (with `cli` as the actor).

use std::time::Duration;

use anyhow::bail;

use crate::app::build_store;
use crate::config::{AdminCommand, ApiKeyCommand, Config};
use crate::error::Error;
use crate::service::AdminService;
use crate::telemetry::audit::Actor;
use crate::telemetry::metrics::Metrics;

/// Run `sessiond admin …`.
///
/// # Errors
/// When the arguments are invalid, the store is unreachable, or the user does not exist.
pub async fn run_admin(config: &Config, command: AdminCommand) -> anyhow::Result<()> {
    match &command {
        AdminCommand::JwtKeygen { dir } => {
            let path = crate::tokens::generate_into(dir).map_err(anyhow::Error::msg)?;
            println!("wrote {}", path.display());
            return Ok(());
        }
        AdminCommand::ApiKey(ApiKeyCommand::New { name }) => {
            let new = crate::users::BackendKeys::generate(name).map_err(anyhow::Error::msg)?;
            println!("{}", new.key);
            println!("{}", new.entry);
            return Ok(());
        }
        _ => {}
    }
    if config.redis_url.is_none() {
        bail!("admin commands change the shared store: set SESSIOND_REDIS_URL");
    }
    let metrics = Metrics::new();
    let admin = AdminService::new(build_store(config, &metrics)?, metrics);
    let mut attempt = 0;
    loop {
        match run_once(&admin, &command).await {
            Ok(done) => {
                println!("{done}");
                return Ok(());
            }
            // The pool connects in the background; give it a few seconds.
            Err(Error::Unavailable(_)) if attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(Error::Unavailable(_)) => bail!("the session store is unavailable"),
            Err(Error::NotFound(_)) => bail!("no such user: {}", username_of(&command)),
            Err(Error::InvalidField { detail, .. }) => bail!("invalid role: {detail}"),
            Err(error) => bail!("{error}"),
        }
    }
}

fn username_of(command: &AdminCommand) -> &str {
    match command {
        AdminCommand::GrantRole { username, .. }
        | AdminCommand::RevokeRole { username, .. }
        | AdminCommand::Disable { username }
        | AdminCommand::Enable { username } => username,
        AdminCommand::JwtKeygen { .. } | AdminCommand::ApiKey(_) => "",
    }
}

/// One attempt; the line to print on success.
async fn run_once(admin: &AdminService, command: &AdminCommand) -> Result<String, Error> {
    Ok(match command {
        AdminCommand::GrantRole { username, role } => {
            admin.set_role(Actor::CLI, username, role, true).await?;
            format!("granted role {role} to {username}")
        }
        AdminCommand::RevokeRole { username, role } => {
            admin.set_role(Actor::CLI, username, role, false).await?;
            format!("removed role {role} from {username}")
        }
        AdminCommand::Disable { username } => {
            let ended = admin.set_disabled(Actor::CLI, username, true).await?;
            format!("disabled {username} ({ended} sessions ended)")
        }
        AdminCommand::Enable { username } => {
            admin.set_disabled(Actor::CLI, username, false).await?;
            format!("enabled {username}")
        }
        AdminCommand::JwtKeygen { .. } | AdminCommand::ApiKey(_) => String::new(),
    })
}
