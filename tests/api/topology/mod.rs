//! Redis topologies for the scaling tests: a Redis Cluster (masters, optionally with replicas)
//! and a Sentinel set (one primary, one replica, three sentinels). Every process runs on free
//! loopback ports in a temp dir without persistence and is killed on drop (paused ones are
//! resumed first). Also a small HTTP load driver shared by the Cluster and Sentinel tests.
//!
//! `node` is one `redis-server` process, `resp` the RESP commands sent to it, `cluster` and
//! `sentinel` the two topologies built from nodes, `load` the HTTP load driver. Everything is
//! re-exported here, so the tests use `crate::topology::…`.

#![allow(dead_code)]

mod cluster;
mod load;
mod node;
mod resp;
mod sentinel;

pub use cluster::*;
pub use load::*;
// The tests use the nodes only through the Cluster and the Sentinel set today; the single-node
// API stays available as `crate::topology::Node` and friends, as before the split.
#[allow(unused_imports)]
pub use node::*;
#[allow(unused_imports)]
pub use resp::*;
pub use sentinel::*;
