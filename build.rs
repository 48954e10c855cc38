//! Records the git commit for `sessiond_build_info{git_sha}`. Outside a git checkout (a
//! source tarball, a Docker build context without `.git`) `SESSIOND_GIT_SHA` may be passed in;
//! otherwise the label says `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SESSIOND_GIT_SHA");
    println!("cargo:rerun-if-changed=.git/HEAD");
    let sha = std::env::var("SESSIOND_GIT_SHA").ok().filter(|s| !s.is_empty()).or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    });
    println!("cargo:rustc-env=SESSIOND_GIT_SHA={}", sha.unwrap_or_else(|| "unknown".to_owned()));
}
