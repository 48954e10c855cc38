//! The `sessiond` binary: parse the configuration once, set up logging, then either serve or
//! run an operator subcommand.

use std::process::ExitCode;

use sessiond::config::{Command, Config};

/// jemalloc returns freed memory to the system and reuses large extents across threads:
/// with glibc's per-thread arenas, every 19 MiB argon2 buffer freed on a hashing thread
/// stayed resident.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use sessiond::{cli, telemetry, Application};

fn main() -> ExitCode {
    let config = match Config::from_env_and_args() {
        Ok(config) => config,
        Err(exit) => return exit.report(),
    };
    let telemetry = match telemetry::init(&config) {
        Ok(telemetry) => telemetry,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match config.command.clone() {
            Some(Command::Admin(admin)) => cli::run_admin(&config, admin).await,
            Some(Command::Openapi) => {
                print!("{}", sessiond::http::openapi::document());
                Ok(())
            }
            None => Application::build(config).await?.run_until_stopped().await,
        }
    });
    drop(runtime);
    drop(telemetry);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Logging is up by now: one line, in the configured format.
            tracing::error!(error = %format!("{error:#}"), "sessiond stopped with an error");
            ExitCode::FAILURE
        }
    }
}
