//! One `redis-server` process, data node or sentinel, with its ports, directory and command
//! line, so that the Cluster and Sentinel harnesses can kill, pause and restart it; and the
//! check that the Redis binaries are installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::resp::{command, command_ok};
use crate::helpers::{free_port, Resp};

/// How to get the binaries these tests need.
pub const INSTALL_HINT: &str = "apt-get install -y redis-server redis-tools";

pub(super) fn server_bin() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned())
}

pub(super) fn cli_bin() -> String {
    std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".to_owned())
}

/// Fail with the install hint unless `redis-server` and `redis-cli` can run.
pub fn require_binaries() {
    let binaries = [(server_bin(), "redis-server", "REDIS_SERVER_BIN"), (cli_bin(), "redis-tools", "REDIS_CLI_BIN")];
    for (bin, package, variable) in binaries {
        let ran = Command::new(&bin).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(
            ran.is_ok_and(|status| status.success()),
            "{bin} not found on PATH (or it does not run): the Cluster and Sentinel tests need redis-server \
             and redis-cli. Install it with `apt-get install -y {package}` (or run ./test, which installs it), \
             or set {variable}"
        );
    }
}

/// A `redis-server` process with its ports, directory and command line (for restarts).
pub struct Node {
    pub port: u16,
    /// Cluster bus port (cluster nodes only).
    pub bus_port: Option<u16>,
    dir: PathBuf,
    /// Arguments after the binary, without the ports (added at spawn).
    pub(super) args: Vec<String>,
    /// A config file passed first (sentinels).
    config_file: Option<PathBuf>,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    pub(super) fn new(dir: PathBuf, args: Vec<String>, config_file: Option<PathBuf>, with_bus: bool) -> Self {
        std::fs::create_dir_all(&dir).expect("node dir");
        Self {
            port: free_port(),
            bus_port: with_bus.then(free_port),
            dir,
            args,
            config_file,
            child: None,
            paused: false,
        }
    }

    /// Start the process and wait until it answers PING. A port taken in the meantime by
    /// someone else makes the server exit at once: draw new ports and try again (fresh nodes
    /// only; a restart must keep its ports).
    pub(super) fn start(&mut self, may_move: bool) {
        for attempt in 0..5 {
            if attempt > 0 {
                assert!(may_move, "redis-server on port {} did not come back", self.port);
                self.port = free_port();
                if self.bus_port.is_some() {
                    self.bus_port = Some(free_port());
                }
            }
            if self.spawn_and_wait() {
                return;
            }
        }
        panic!("redis-server did not start (see {})", self.dir.display());
    }

    fn spawn_and_wait(&mut self) -> bool {
        let bin = server_bin();
        let mut command = Command::new(&bin);
        if let Some(config) = &self.config_file {
            // A sentinel's port lives in its (writable) config file.
            rewrite_port(config, self.port);
            command.arg(config);
        }
        command.args(["--port", &self.port.to_string()]);
        if let Some(bus) = self.bus_port {
            command.args(["--cluster-port", &bus.to_string()]);
        }
        let log = self.dir.join("redis.log");
        command
            .args(&self.args)
            .args(["--bind", "127.0.0.1", "--daemonize", "no", "--loglevel", "notice"])
            .arg("--logfile")
            .arg(&log)
            .arg("--dir")
            .arg(&self.dir)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{bin}` ({e}); install Redis with `{INSTALL_HINT}`"));
        self.child = Some(child);
        self.paused = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    self.child = None;
                    return false;
                }
            }
            if matches!(command_ok(self.port, &["PING"]), Some(Resp::Simple(s)) if s == "PONG") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING within 10 s (log: {})", self.port, log.display());
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`: the process vanishes without a word to anyone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Start again on the same ports with the same directory (a cluster node keeps its
    /// `nodes.conf`, so it rejoins under its old id).
    pub fn restart(&mut self) {
        self.kill();
        self.start(false);
    }

    /// SIGSTOP: connections stay open, nothing answers.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().expect("kill").success();
        assert!(ok, "kill {sig} {pid} failed");
    }

    pub fn try_cmd(&self, args: &[&str]) -> std::io::Result<Resp> {
        command(self.port, args)
    }

    /// A command that must succeed.
    pub fn cmd(&self, args: &[&str]) -> Resp {
        match self.try_cmd(args) {
            Ok(Resp::Error(e)) => panic!("redis :{} {args:?}: {e}", self.port),
            Ok(reply) => reply,
            Err(e) => panic!("redis :{} {args:?}: {e}", self.port),
        }
    }

    pub fn info(&self, section: &str) -> String {
        self.cmd(&["INFO", section]).text()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused process must be resumed to die.
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
        }
        self.kill();
    }
}

fn rewrite_port(config: &Path, port: u16) {
    let text = std::fs::read_to_string(config).expect("read sentinel config");
    let mut lines: Vec<String> = text.lines().filter(|l| !l.starts_with("port ")).map(str::to_owned).collect();
    lines.insert(0, format!("port {port}"));
    std::fs::write(config, lines.join("\n") + "\n").expect("write sentinel config");
}

pub(super) fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {within:?} waiting for {what}");
}
