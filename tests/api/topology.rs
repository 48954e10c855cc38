//! Redis topologies for the scaling tests: a Redis Cluster (masters, optionally with replicas)
//! and a Sentinel set (one primary, one replica, three sentinels). Every process runs on free
//! loopback ports in a temp dir without persistence and is killed on drop (paused ones are
//! resumed first). Also a small HTTP load driver shared by the Cluster and Sentinel tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sessiond::users::Username;

use crate::helpers::{free_port, read_resp, Resp, TestApp, PASSWORD};

/// How to get the binaries these tests need.
pub const INSTALL_HINT: &str = "apt-get install -y redis-server redis-tools";

fn server_bin() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned())
}

fn cli_bin() -> String {
    std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".to_owned())
}

/// Fail with the install hint unless `redis-server` and `redis-cli` can run.
pub fn require_binaries() {
    for bin in [server_bin(), cli_bin()] {
        let ran = Command::new(&bin).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(
            ran.is_ok_and(|status| status.success()),
            "cannot run `{bin}`: the Cluster and Sentinel tests need redis-server and redis-cli \
             (`{INSTALL_HINT}`; or set REDIS_SERVER_BIN / REDIS_CLI_BIN)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RESP over a short-lived connection
// ---------------------------------------------------------------------------------------------

/// Send one command to `127.0.0.1:port` and read its reply.
pub fn command(port: u16, args: &[&str]) -> std::io::Result<Resp> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    read_resp(&mut BufReader::new(stream))
}

/// One `field:value` line of an `INFO` section.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    let prefix = format!("{field}:");
    info.lines().find_map(|line| line.strip_prefix(&prefix)).map(|v| v.trim().to_owned())
}

// ---------------------------------------------------------------------------------------------
// One redis-server (data node or sentinel)
// ---------------------------------------------------------------------------------------------

/// A `redis-server` process with its ports, directory and command line (for restarts).
pub struct Node {
    pub port: u16,
    /// Cluster bus port (cluster nodes only).
    pub bus_port: Option<u16>,
    dir: PathBuf,
    /// Arguments after the binary, without the ports (added at spawn).
    args: Vec<String>,
    /// A config file passed first (sentinels).
    config_file: Option<PathBuf>,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    fn new(dir: PathBuf, args: Vec<String>, config_file: Option<PathBuf>, with_bus: bool) -> Self {
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
    fn start(&mut self, may_move: bool) {
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

/// The reply, unless the connection failed or Redis answered an error.
fn command_ok(port: u16, args: &[&str]) -> Option<Resp> {
    match command(port, args) {
        Ok(Resp::Error(_)) | Err(_) => None,
        Ok(reply) => Some(reply),
    }
}

fn rewrite_port(config: &Path, port: u16) {
    let text = std::fs::read_to_string(config).expect("read sentinel config");
    let mut lines: Vec<String> = text.lines().filter(|l| !l.starts_with("port ")).map(str::to_owned).collect();
    lines.insert(0, format!("port {port}"));
    std::fs::write(config, lines.join("\n") + "\n").expect("write sentinel config");
}

fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {within:?} waiting for {what}");
}

// ---------------------------------------------------------------------------------------------
// Redis Cluster
// ---------------------------------------------------------------------------------------------

/// The Cluster slot of a key (CRC16 of its hash tag, as Redis computes it).
pub fn slot_of(key: &str) -> u16 {
    fred::util::redis_keyslot(key.as_bytes())
}

/// The hash tag sessiond gives every key of `username` (`{xyz}`).
pub fn user_tag(username: &str) -> String {
    let shard = Username::parse(username).expect("valid username").key().shard();
    format!("{{{:03x}}}", shard.index())
}

/// The Cluster slot holding every key of `username`.
pub fn user_slot(username: &str) -> u16 {
    slot_of(&format!("sessiond:{}:active", user_tag(username)))
}

/// A Redis Cluster on loopback: `masters` masters, each with `replicas` replicas.
pub struct RedisCluster {
    /// Every node, masters first as `redis-cli --cluster create` assigns them.
    pub nodes: Vec<Node>,
    pub node_timeout: Duration,
    _root: tempfile::TempDir,
}

/// Role of a cluster node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
}

impl RedisCluster {
    /// Start the nodes, join them with `redis-cli --cluster create`, and wait until every node
    /// reports `cluster_state:ok` (and every replica is in sync).
    pub fn start(masters: usize, replicas: usize) -> Self {
        require_binaries();
        let node_timeout = Duration::from_millis(1000);
        let root = tempfile::tempdir().expect("temp dir");
        let total = masters * (1 + replicas);
        let mut nodes: Vec<Node> = (0..total)
            .map(|n| {
                let args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &node_timeout.as_millis().to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--repl-diskless-sync",
                    "yes",
                    "--repl-diskless-sync-delay",
                    "0",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                Node::new(root.path().join(format!("node{n}")), args, None, true)
            })
            .collect();
        for node in &mut nodes {
            node.start(true);
        }
        let cluster = Self { nodes, node_timeout, _root: root };
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(addrs);
        args.extend(["--cluster-replicas".to_owned(), replicas.to_string(), "--cluster-yes".to_owned()]);
        let out = Command::new(cli_bin())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); install it with `{INSTALL_HINT}`"));
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("All 16384 slots covered"),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_healthy(Duration::from_secs(20));
        cluster
    }

    /// `redis-cluster://` URL with every running master as a seed node.
    pub fn url(&self) -> String {
        let ports: Vec<u16> = self.nodes.iter().filter(|n| n.is_running()).map(|n| n.port).collect();
        let mut url = format!("redis-cluster://127.0.0.1:{}", ports[0]);
        for (n, port) in ports.iter().enumerate().skip(1) {
            url.push(if n == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{port}"));
        }
        url
    }

    pub fn node(&self, port: u16) -> &Node {
        self.nodes.iter().find(|n| n.port == port).unwrap_or_else(|| panic!("no node on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Any running node that answers.
    fn live(&self) -> &Node {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .find(|n| command_ok(n.port, &["PING"]).is_some())
            .expect("a live cluster node")
    }

    /// `CLUSTER MYID`.
    pub fn node_id(&self, port: u16) -> String {
        self.node(port).cmd(&["CLUSTER", "MYID"]).text()
    }

    /// What the node itself says it is (`ROLE`).
    pub fn role(&self, port: u16) -> Role {
        match self.node(port).cmd(&["ROLE"]) {
            Resp::Array(items) if items.first().map(Resp::text).as_deref() == Some("master") => Role::Master,
            _ => Role::Replica,
        }
    }

    /// Ports of the running masters that own slots.
    pub fn masters(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.slot_ranges().into_iter().map(|(_, _, port)| port).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Ports of the running replicas of the master on `port`.
    pub fn replicas_of(&self, port: u16) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && n.port != port)
            .filter(|n| {
                let info = n.info("replication");
                info_field(&info, "role").as_deref() == Some("slave")
                    && info_field(&info, "master_port").and_then(|p| p.parse().ok()) == Some(port)
            })
            .map(|n| n.port)
            .collect()
    }

    /// `(first slot, last slot, master port)` from `CLUSTER SLOTS` of a live node.
    pub fn slot_ranges(&self) -> Vec<(u16, u16, u16)> {
        Self::slot_ranges_of(self.live().port).unwrap_or_default()
    }

    fn slot_ranges_of(port: u16) -> Option<Vec<(u16, u16, u16)>> {
        let Some(Resp::Array(ranges)) = command_ok(port, &["CLUSTER", "SLOTS"]) else { return None };
        let mut out = Vec::new();
        for range in ranges {
            let Resp::Array(parts) = range else { return None };
            let start = u16::try_from(parts.first()?.int()).ok()?;
            let end = u16::try_from(parts.get(1)?.int()).ok()?;
            let Resp::Array(master) = parts.get(2)? else { return None };
            let master_port = u16::try_from(master.get(1)?.int()).ok()?;
            out.push((start, end, master_port));
        }
        out.sort_unstable();
        Some(out)
    }

    /// Port of the master serving `slot`, as a live node sees it.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        self.slot_ranges()
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|(_, _, port)| port)
            .unwrap_or_else(|| panic!("slot {slot} is not served"))
    }

    /// Slots each master serves.
    pub fn slots_per_master(&self) -> BTreeMap<u16, usize> {
        let mut out = BTreeMap::new();
        for (start, end, port) in self.slot_ranges() {
            *out.entry(port).or_default() += usize::from(end - start) + 1;
        }
        out
    }

    pub fn dbsize(&self, port: u16) -> i64 {
        self.node(port).cmd(&["DBSIZE"]).int()
    }

    /// `kill -9` one node.
    pub fn kill(&mut self, port: u16) {
        self.node_mut(port).kill();
    }

    /// Start a killed node again (same ports, same `nodes.conf`): an old master whose slots were
    /// taken over rejoins as a replica of its successor.
    pub fn restart(&mut self, port: u16) {
        self.node_mut(port).restart();
    }

    pub fn pause(&mut self, port: u16) {
        self.node_mut(port).pause();
    }

    pub fn resume(&mut self, port: u16) {
        self.node_mut(port).resume();
    }

    /// Every running node says `cluster_state:ok`, all of them agree on who serves which slot,
    /// and every running replica's link to its master is up.
    pub fn is_healthy(&self) -> bool {
        self.health().is_ok()
    }

    /// Like [`is_healthy`](Self::is_healthy), with what is still wrong.
    fn health(&self) -> Result<(), String> {
        let mut views = Vec::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let port = node.port;
            let info = command_ok(port, &["CLUSTER", "INFO"]).map(|r| r.text()).ok_or(format!(":{port} silent"))?;
            let state = info_field(&info, "cluster_state");
            if state.as_deref() != Some("ok") {
                return Err(format!(":{port} cluster_state {state:?}"));
            }
            let view = Self::slot_ranges_of(port).ok_or(format!(":{port} CLUSTER SLOTS failed"))?;
            let replication =
                command_ok(port, &["INFO", "replication"]).map(|r| r.text()).ok_or(format!(":{port} silent"))?;
            if info_field(&replication, "role").as_deref() == Some("slave")
                && info_field(&replication, "master_link_status").as_deref() != Some("up")
            {
                return Err(format!(":{port} replica link down"));
            }
            views.push((port, view));
        }
        let covered: usize = views.first().map_or(0, |(_, v)| v.iter().map(|(s, e, _)| usize::from(e - s) + 1).sum());
        if covered != 16384 {
            return Err(format!("{covered} slots covered"));
        }
        if let Some(w) = views.windows(2).find(|w| w[0].1 != w[1].1) {
            return Err(format!("slot maps differ: :{} {:?} vs :{} {:?}", w[0].0, w[0].1, w[1].0, w[1].1));
        }
        Ok(())
    }

    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.health() {
                Ok(()) => return,
                Err(why) if Instant::now() >= deadline => {
                    panic!("cluster not healthy after {within:?}: {why}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(25)),
            }
        }
    }

    /// Wait until a running node other than `dead` serves `slot` and the cluster is healthy;
    /// returns the new master's port and when it was first seen.
    pub fn wait_for_new_master(&self, slot: u16, dead: u16, within: Duration) -> (u16, Instant) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let owner = self
                .nodes
                .iter()
                .filter(|n| n.is_running())
                .find_map(|n| {
                    Self::slot_ranges_of(n.port)?
                        .into_iter()
                        .find(|(s, e, _)| (*s..=*e).contains(&slot))
                        .map(|(_, _, p)| p)
                })
                .filter(|p| *p != dead);
            if let Some(port) = owner {
                return (port, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no replica took over slot {slot} from :{dead} within {within:?}");
    }

    /// `redis-cli --cluster reshard`: move `slots` slots (the lowest-numbered ones `from`
    /// serves) from the master on `from` to the master on `to`. Returns how long it took.
    pub async fn reshard(&self, from: u16, to: u16, slots: usize) -> Duration {
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        let started = Instant::now();
        let out = tokio::process::Command::new(cli_bin())
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &from_id, "--cluster-to", &to_id])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("redis-cli --cluster reshard");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && !stdout.contains("[ERR]"),
            "reshard :{from} -> :{to} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    }

    /// Sum of `INFO commandstats` calls of `command` over the running masters.
    pub fn command_calls(&self, command: &str) -> u64 {
        self.masters().into_iter().map(|port| command_calls(self.node(port), command)).sum()
    }
}

/// Calls of `command` on one node since its start.
pub fn command_calls(node: &Node, command: &str) -> u64 {
    let info = node.info("commandstats");
    let needle = format!("cmdstat_{}:calls=", command.to_ascii_lowercase());
    info.lines()
        .find_map(|line| line.strip_prefix(&needle))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Sentinel
// ---------------------------------------------------------------------------------------------

/// The service name the sentinels monitor.
pub const SERVICE: &str = "mymaster";

/// One primary, one replica (`--replicaof`), three sentinels (quorum 2).
pub struct SentinelSet {
    /// The two data nodes; which one is primary changes on failover.
    pub data: Vec<Node>,
    pub sentinels: Vec<Node>,
    _root: tempfile::TempDir,
}

impl SentinelSet {
    /// Start everything and wait until each sentinel knows the replica and the two other
    /// sentinels, and the replica is in sync.
    pub fn start() -> Self {
        require_binaries();
        let root = tempfile::tempdir().expect("temp dir");
        let data_args = |extra: &[String]| -> Vec<String> {
            let mut args: Vec<String> = ["--save", "", "--appendonly", "no", "--repl-diskless-sync", "yes"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            args.extend(["--repl-diskless-sync-delay".to_owned(), "0".to_owned()]);
            args.extend_from_slice(extra);
            args
        };
        let mut primary = Node::new(root.path().join("primary"), data_args(&[]), None, false);
        primary.start(true);
        let replica_of = ["--replicaof".to_owned(), "127.0.0.1".to_owned(), primary.port.to_string()];
        let mut replica = Node::new(root.path().join("replica"), data_args(&replica_of), None, false);
        replica.start(true);
        let mut sentinels = Vec::new();
        for n in 0..3 {
            let dir = root.path().join(format!("sentinel{n}"));
            std::fs::create_dir_all(&dir).expect("sentinel dir");
            let config = dir.join("sentinel.conf");
            let text = format!(
                "sentinel monitor {SERVICE} 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 3000\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                primary.port
            );
            std::fs::write(&config, text).expect("sentinel config");
            let mut sentinel = Node::new(dir, vec!["--sentinel".to_owned()], Some(config), false);
            sentinel.start(true);
            sentinels.push(sentinel);
        }
        let set = Self { data: vec![primary, replica], sentinels, _root: root };
        wait_until(Duration::from_secs(30), "sentinels to discover the replica and each other", || set.is_settled());
        set
    }

    /// Every sentinel sees the current primary, one replica in sync and two other sentinels.
    pub fn is_settled(&self) -> bool {
        let Some(primary) = self.primary_addr() else { return false };
        let replica_in_sync = self.data.iter().filter(|n| n.is_running() && n.port != primary).any(|n| {
            command_ok(n.port, &["INFO", "replication"])
                .map(|r| r.text())
                .is_some_and(|info| info_field(&info, "master_link_status").as_deref() == Some("up"))
        });
        replica_in_sync
            && self.sentinels.iter().filter(|s| s.is_running()).all(|s| {
                let Some(Resp::Array(fields)) = command_ok(s.port, &["SENTINEL", "MASTER", SERVICE]) else {
                    return false;
                };
                let fields: Vec<String> = fields.iter().map(Resp::text).collect();
                let get = |name: &str| fields.iter().position(|f| f == name).and_then(|i| fields.get(i + 1)).cloned();
                get("port").and_then(|p| p.parse().ok()) == Some(primary)
                    && get("num-slaves").as_deref() == Some("1")
                    && get("num-other-sentinels").as_deref() == Some("2")
                    && get("flags").as_deref() == Some("master")
            })
    }

    /// `redis-sentinel://` URL naming all three sentinels.
    pub fn url(&self) -> String {
        let mut url = format!("redis-sentinel://127.0.0.1:{}?sentinelServiceName={SERVICE}", self.sentinels[0].port);
        for sentinel in &self.sentinels[1..] {
            url.push_str(&format!("&node=127.0.0.1:{}", sentinel.port));
        }
        url
    }

    /// The primary's port per `SENTINEL get-master-addr-by-name` of the first sentinel that answers.
    pub fn primary_addr(&self) -> Option<u16> {
        self.sentinels.iter().filter(|s| s.is_running()).find_map(|s| {
            match command_ok(s.port, &["SENTINEL", "get-master-addr-by-name", SERVICE]) {
                Some(Resp::Array(parts)) => parts.get(1).and_then(|p| p.text().parse().ok()),
                _ => None,
            }
        })
    }

    /// Poll every sentinel until one names a primary other than `old`; returns it and when.
    pub fn wait_for_new_primary(&self, old: u16, within: Duration) -> (u16, Instant) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            for sentinel in self.sentinels.iter().filter(|s| s.is_running()) {
                if let Some(Resp::Array(parts)) =
                    command_ok(sentinel.port, &["SENTINEL", "get-master-addr-by-name", SERVICE])
                {
                    if let Some(port) = parts.get(1).and_then(|p| p.text().parse::<u16>().ok()) {
                        if port != old {
                            return (port, Instant::now());
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the sentinels did not promote a new primary within {within:?}");
    }

    pub fn data_node(&self, port: u16) -> &Node {
        self.data.iter().find(|n| n.port == port).unwrap_or_else(|| panic!("no data node on port {port}"))
    }

    pub fn kill_data(&mut self, port: u16) {
        self.data.iter_mut().find(|n| n.port == port).expect("data node").kill();
    }

    /// Start a killed data node again as a replica of `primary` (empty dataset, full sync).
    pub fn restart_as_replica_of(&mut self, port: u16, primary: u16) {
        let node = self.data.iter_mut().find(|n| n.port == port).expect("data node");
        // Drop any earlier "--replicaof host port" triple, then add the new one.
        let mut args = Vec::new();
        let mut skip = 0;
        for arg in std::mem::take(&mut node.args) {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if arg == "--replicaof" {
                skip = 2;
                continue;
            }
            args.push(arg);
        }
        args.extend(["--replicaof".to_owned(), "127.0.0.1".to_owned(), primary.to_string()]);
        node.args = args;
        node.restart();
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP load driver
// ---------------------------------------------------------------------------------------------

/// What a request was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `GET /v1/profile` with a token that must be live.
    ValidateLive,
    /// `GET /v1/profile` with a token whose logout was acknowledged.
    ValidateRevoked,
    Login,
    Logout,
}

/// One request and its outcome. `status` 0: the HTTP request itself failed.
#[derive(Clone, Debug)]
pub struct Event {
    /// When the request was sent.
    pub sent: Instant,
    /// When its answer arrived.
    pub at: Instant,
    pub op: Op,
    pub status: u16,
    /// Index of the user's group (e.g. which master holds the user's keys).
    pub group: usize,
    /// A retry of a 503.
    pub retry: bool,
    /// The user's name.
    pub user: String,
}

impl Event {
    /// 500-class other than 503, or no response at all.
    pub fn is_server_error(&self) -> bool {
        self.status == 0 || (self.status >= 500 && self.status != 503)
    }

    /// An answer that contradicts the session's state: a live session refused or a revoked
    /// session accepted.
    pub fn is_wrong(&self) -> bool {
        match self.op {
            Op::ValidateLive => self.status == 401,
            Op::ValidateRevoked => self.status == 200,
            Op::Login | Op::Logout => false,
        }
    }
}

/// A thin client for the load loops (cloneable across tasks).
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub fn of(app: &TestApp) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        Self { client, base: format!("http://{}", app.addr) }
    }

    async fn status(request: reqwest::RequestBuilder) -> (u16, Option<serde_json::Value>) {
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = if status == 200 { response.json().await.ok() } else { None };
                (status, body)
            }
            Err(_) => (0, None),
        }
    }

    pub async fn register(&self, username: &str) -> u16 {
        let body = json!({ "username": username, "password": PASSWORD });
        Self::status(self.client.post(format!("{}/v1/auth/register", self.base)).json(&body)).await.0
    }

    /// Log in; the token when 200.
    pub async fn login(&self, username: &str) -> (u16, Option<String>) {
        let body = json!({ "username": username, "password": PASSWORD });
        let (status, body) = Self::status(self.client.post(format!("{}/v1/auth/login", self.base)).json(&body)).await;
        (status, body.and_then(|b| b["token"].as_str().map(str::to_owned)))
    }

    pub async fn validate(&self, token: &str) -> u16 {
        Self::status(self.client.get(format!("{}/v1/profile", self.base)).bearer_auth(token)).await.0
    }

    pub async fn logout(&self, token: &str) -> u16 {
        Self::status(self.client.post(format!("{}/v1/auth/logout", self.base)).bearer_auth(token)).await.0
    }
}

/// Counts of one operation's outcomes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub total: usize,
    pub ok: usize,
    pub unavailable: usize,
    pub server_errors: usize,
    pub wrong: usize,
    pub other: usize,
}

/// Outcomes per operation (retries included as separate requests).
pub fn tally(events: &[Event]) -> BTreeMap<Op, Tally> {
    let mut out: BTreeMap<Op, Tally> = BTreeMap::new();
    for event in events {
        let t = out.entry(event.op).or_default();
        t.total += 1;
        let ok = match event.op {
            Op::ValidateLive | Op::Login => event.status == 200,
            Op::ValidateRevoked => event.status == 401,
            Op::Logout => event.status == 204,
        };
        if ok {
            t.ok += 1;
        } else if event.is_wrong() {
            t.wrong += 1;
        } else if event.status == 503 {
            t.unavailable += 1;
        } else if event.is_server_error() {
            t.server_errors += 1;
        } else {
            t.other += 1;
        }
    }
    out
}

/// A user of the load loop: a long-lived session that must stay valid throughout.
#[derive(Clone, Debug)]
pub struct LoadUser {
    pub name: String,
    pub anchor: String,
    pub group: usize,
}

/// Register and log in each `(name, group)`; panics on anything but success.
pub async fn prepare_users(api: &Api, users: &[(String, usize)]) -> Vec<LoadUser> {
    let mut out = Vec::with_capacity(users.len());
    for (name, group) in users {
        let status = api.register(name).await;
        assert!(status == 201 || status == 409, "register {name}: {status}");
        let (status, token) = api.login(name).await;
        assert_eq!(status, 200, "login {name}");
        out.push(LoadUser { name: name.clone(), anchor: token.expect("token"), group: *group });
    }
    out
}

/// What the load loop does on each pass over a user.
#[derive(Clone, Copy, Debug)]
pub struct LoadPlan {
    /// Validations of the user's long-lived session per pass.
    pub anchor_checks: usize,
    /// Log in, validate, log out and re-validate a fresh session on every pass.
    pub churn: bool,
    /// Retry a 503 on login/logout once.
    pub retry_multi_key: bool,
    /// Groups whose users do not log out (e.g. a master without replicas under WAIT).
    pub no_logout_groups: &'static [usize],
}

/// What the load loop should be doing now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Everything in the plan.
    Full,
    /// Everything but logouts.
    NoLogouts,
    /// Finish the current request and return.
    Stop,
}

/// Run `workers` tasks over `users` until `phase` says stop; every request is recorded.
pub async fn run_load(
    api: Api,
    users: Vec<LoadUser>,
    workers: usize,
    plan: LoadPlan,
    phase: tokio::sync::watch::Receiver<Phase>,
) -> Vec<Event> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mine: Vec<LoadUser> = users.iter().skip(w).step_by(workers).cloned().collect();
        let api = api.clone();
        let phase = phase.clone();
        tasks.push(tokio::spawn(async move { load_worker(api, mine, plan, phase).await }));
    }
    let mut events = Vec::new();
    for task in tasks {
        events.extend(task.await.expect("load worker"));
    }
    events.sort_by_key(|e| e.at);
    events
}

async fn load_worker(
    api: Api,
    users: Vec<LoadUser>,
    plan: LoadPlan,
    phase: tokio::sync::watch::Receiver<Phase>,
) -> Vec<Event> {
    let mut events = Vec::new();
    let record = |events: &mut Vec<Event>, sent: Instant, op: Op, status: u16, user: &LoadUser, retry: bool| {
        let user = user.name.clone();
        events.push(Event { sent, at: Instant::now(), op, status, group: 0, retry, user });
    };
    'outer: loop {
        for user in &users {
            if *phase.borrow() == Phase::Stop {
                break 'outer;
            }
            let from = events.len();
            for _ in 0..plan.anchor_checks.max(1) {
                let sent = Instant::now();
                let status = api.validate(&user.anchor).await;
                record(&mut events, sent, Op::ValidateLive, status, user, false);
            }
            'churn: {
                if !plan.churn {
                    break 'churn;
                }
                let sent = Instant::now();
                let (mut status, mut token) = api.login(&user.name).await;
                record(&mut events, sent, Op::Login, status, user, false);
                if status == 503 && plan.retry_multi_key {
                    let sent = Instant::now();
                    (status, token) = api.login(&user.name).await;
                    record(&mut events, sent, Op::Login, status, user, true);
                }
                let Some(token) = token.filter(|_| status == 200) else { break 'churn };
                let sent = Instant::now();
                let status = api.validate(&token).await;
                record(&mut events, sent, Op::ValidateLive, status, user, false);
                if plan.no_logout_groups.contains(&user.group) || *phase.borrow() != Phase::Full {
                    break 'churn;
                }
                let sent = Instant::now();
                let mut status = api.logout(&token).await;
                record(&mut events, sent, Op::Logout, status, user, false);
                if status == 503 && plan.retry_multi_key {
                    let sent = Instant::now();
                    status = api.logout(&token).await;
                    record(&mut events, sent, Op::Logout, status, user, true);
                }
                if status == 204 {
                    let sent = Instant::now();
                    let status = api.validate(&token).await;
                    record(&mut events, sent, Op::ValidateRevoked, status, user, false);
                }
            }
            for event in &mut events[from..] {
                event.group = user.group;
            }
        }
    }
    events
}

/// A one-line summary of a tally map.
pub fn describe(tallies: &BTreeMap<Op, Tally>) -> String {
    tallies
        .iter()
        .map(|(op, t)| {
            format!(
                "{op:?}: {} total, {} ok, {} 503, {} 5xx/no answer, {} wrong, {} other",
                t.total, t.ok, t.unavailable, t.server_errors, t.wrong, t.other
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
