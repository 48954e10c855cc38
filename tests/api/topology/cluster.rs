//! A Redis Cluster on loopback (masters, optionally with replicas), built with
//! `redis-cli --cluster create`, with what the Cluster tests need to break and inspect it:
//! slot maps, failover, resharding, per-node command counts.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sessiond::users::Username;

use super::node::{cli_bin, require_binaries, Node, INSTALL_HINT};
use super::resp::{command_ok, info_field};
use crate::helpers::Resp;

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
