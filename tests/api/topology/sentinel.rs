//! A Sentinel set on loopback: one primary, one replica and three sentinels (quorum 2), with
//! what the Sentinel tests need to fail the primary over and follow it.

use std::time::{Duration, Instant};

use super::node::{require_binaries, wait_until, Node};
use super::resp::{command_ok, info_field};
use crate::helpers::Resp;

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
