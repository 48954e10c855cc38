//! The Lua scripts and how they are called: every write is one script, so each is atomic on
//! its shard and conditional on what Redis holds at that moment.

use fred::prelude::*;
use fred::types::Value;

use super::RedisStore;
use crate::store::StoreError;

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// A Lua script with its SHA-1, loaded on first use (and again after a `SCRIPT FLUSH` or a
/// failover to a node that never saw it).
pub(super) struct Script {
    lua: String,
    sha: String,
}

impl Script {
    fn new(body: &str, with_prelude: bool) -> Self {
        let lua = if with_prelude { format!("{PRELUDE}\n{body}") } else { body.to_owned() };
        let sha = fred::util::sha1_hash(&lua);
        Self { lua, sha }
    }
}

pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) slide: Script,
    pub(super) expire: Script,
    pub(super) rotate: Script,
    pub(super) revoke: Script,
    pub(super) revoke_by_id: Script,
    pub(super) revoke_all: Script,
    pub(super) list: Script,
    pub(super) insert_user: Script,
    pub(super) set_role: Script,
    pub(super) login_guard: Script,
    pub(super) change_password: Script,
    pub(super) delete_user: Script,
    pub(super) set_disabled: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            create: Script::new(include_str!("lua/create.lua"), true),
            slide: Script::new(include_str!("lua/slide.lua"), true),
            expire: Script::new(include_str!("lua/expire.lua"), true),
            rotate: Script::new(include_str!("lua/rotate.lua"), true),
            revoke: Script::new(include_str!("lua/revoke.lua"), true),
            revoke_by_id: Script::new(include_str!("lua/revoke_by_id.lua"), true),
            revoke_all: Script::new(include_str!("lua/revoke_all.lua"), true),
            list: Script::new(include_str!("lua/list.lua"), true),
            insert_user: Script::new(include_str!("lua/insert_user.lua"), false),
            set_role: Script::new(include_str!("lua/set_role.lua"), true),
            login_guard: Script::new(include_str!("lua/login_guard.lua"), false),
            change_password: Script::new(include_str!("lua/change_password.lua"), true),
            delete_user: Script::new(include_str!("lua/delete_user.lua"), true),
            set_disabled: Script::new(include_str!("lua/set_disabled.lua"), true),
        }
    }
}

impl RedisStore {
    pub(super) async fn eval(
        &self,
        op: &'static str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        let client = self.client(op).await?;
        self.eval_on(client, op, script, keys, args).await
    }

    /// Run a revocation or rotation so that, with `SESSIOND_REDIS_WAIT_REPLICAS` set, it is
    /// acknowledged only once enough replicas have it: a failover then cannot bring the
    /// session back. Fewer acknowledgements in time is an error (503), never a silent success.
    pub(super) async fn eval_durable(
        &self,
        op: &'static str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        let Some(durable) = &self.durable else { return self.eval(op, script, keys, args).await };
        let Ok(durable) = tokio::time::timeout(self.timeout, durable.acquire()).await else {
            return Err(StoreError::Timeout { op });
        };
        if !durable.is_connected() {
            return Err(StoreError::Connection { op, detail: "not connected".to_owned() });
        }
        let slot = keys.first().map_or(0, |key| fred::util::redis_keyslot(key.as_bytes()));
        let reply = self.eval_on(&durable, op, script, keys, args).await?;
        let options = Options { cluster_hash: Some(fred::types::ClusterHash::Custom(slot)), ..Options::default() };
        let wait_ms = i64::try_from(self.wait_timeout.as_millis()).unwrap_or(i64::MAX);
        let bound = self.timeout + self.wait_timeout;
        let acked: i64 = match tokio::time::timeout(
            bound,
            durable.with_options(&options).wait(i64::from(self.wait_replicas), wait_ms),
        )
        .await
        {
            Ok(Ok(acked)) => acked,
            Ok(Err(error)) => return Err(super::connection::classify(op, &error)),
            Err(_) => return Err(StoreError::Timeout { op }),
        };
        if acked < i64::from(self.wait_replicas) {
            return Err(StoreError::other(op, format!("acknowledged by {acked} of {} replicas", self.wait_replicas)));
        }
        Ok(reply)
    }

    pub(super) async fn eval_on(
        &self,
        client: &Client,
        op: &'static str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        let first: Result<Value, StoreError> =
            self.bounded(op, client.evalsha(script.sha.as_str(), keys.clone(), args.clone())).await;
        match first {
            Err(StoreError::Other { detail, .. }) if detail.starts_with("NOSCRIPT") => {
                self.bounded(op, client.script_load_cluster::<Value, _>(script.lua.as_str())).await?;
                self.bounded(op, client.evalsha(script.sha.as_str(), keys, args)).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lua_scripts_and_the_counter_agree_on_the_number_of_active_sets() {
        let declared = format!("local ACTIVE_SETS = {}\n", super::super::keys::ACTIVE_SETS);
        assert!(super::PRELUDE.contains(&declared), "lua/prelude.lua must declare {declared:?}");
    }
}
