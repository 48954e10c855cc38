//! The static checks of the operator files (`scripts/check-ops.sh`: promtool, amtool, Compose
//! and the dashboards' lint), so that `cargo test` covers them.

use std::process::Stdio;

use crate::tools::{repo_root, require_compose, require_system_tool, require_tool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_ops_script_passes() {
    require_tool("promtool", "apt-get install -y prometheus");
    require_tool("amtool", "apt-get install -y prometheus-alertmanager");
    require_system_tool("bash", "apt-get install -y bash");
    require_compose();
    let out = tokio::process::Command::new("bash")
        .arg("scripts/check-ops.sh")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run bash scripts/check-ops.sh");
    assert!(
        out.status.success(),
        "bash scripts/check-ops.sh failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
