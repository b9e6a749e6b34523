//! One writer per sync: a lease on the target table, kept in its properties
//! (`misql.lease.owner`, `misql.lease.expires-ms`) and changed only through the commit path, so
//! SQLite and REST catalogs both hold it. The sync takes it before writing, renews it between
//! batches once half its time is gone, and releases it when it stops cleanly. A second process
//! that finds it held waits as a standby (phase `standby`) and takes over from the checkpoint
//! when it expires or is released.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use iceberg::table::Table;
use iceberg::{TableRequirement, TableUpdate};

use super::SyncTask;
use crate::lake::commit::{Change, commit};
use crate::{Error, ErrorKind, Result};

/// Table property: who holds the lease (`host:pid:id`).
pub const OWNER: &str = "misql.lease.owner";
/// Table property: when the lease expires, in milliseconds since the Unix epoch.
pub const EXPIRES: &str = "misql.lease.expires-ms";

/// This host's name.
fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string())
    })
}

/// This process's name as a lease holder: `host:pid:id` (a random id).
pub fn me() -> &'static str {
    static ME: OnceLock<String> = OnceLock::new();
    ME.get_or_init(|| {
        let id = uuid::Uuid::new_v4().simple().to_string();
        format!("{}:{}:{}", host(), std::process::id(), &id[..8])
    })
}

/// The lease on `table`: its holder and expiry, if one is held now — `None` when absent,
/// released, expired, or held by a process of this host that no longer runs (killed: its
/// successor on the same machine need not wait for the lease to expire).
pub fn holder(table: &Table) -> Option<(String, SystemTime)> {
    let properties = table.metadata().properties();
    let owner = properties.get(OWNER)?;
    let expires_ms: u64 = properties.get(EXPIRES)?.parse().ok()?;
    let expires = SystemTime::UNIX_EPOCH + Duration::from_millis(expires_ms);
    let held = expires > SystemTime::now() && !owner.is_empty() && !gone(owner);
    held.then(|| (owner.clone(), expires))
}

/// Whether `owner` names a process of this host that has ended (Linux: no `/proc/<pid>`, or a
/// zombie).
fn gone(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, ':');
    let (Some(_id), Some(pid), Some(owner_host)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if owner_host != host() || owner == me() || !std::path::Path::new("/proc/self").exists() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

/// The error for a lease another process holds.
fn held(sync: &SyncTask, owner: &str, expires: SystemTime) -> Error {
    let left = expires.duration_since(SystemTime::now()).unwrap_or_default();
    Error::commit(
        ErrorKind::LeaseHeld,
        format!(
            "sync {} is running elsewhere: {owner} holds its lease on {} for {:.0} s more",
            sync.name,
            sync.create.target,
            left.as_secs_f64().ceil()
        ),
    )
    .with_hint("stop the other process, or wait: a standby takes over when the lease expires")
}

/// Takes (or renews) the lease on `table` for `ttl`; an error of kind
/// [`ErrorKind::LeaseHeld`] when another process holds it.
pub async fn acquire(sync: &SyncTask, table: &Table) -> Result<Table> {
    if let Some((owner, expires)) = holder(table).filter(|(owner, _)| owner != me()) {
        return Err(held(sync, &owner, expires));
    }
    let ttl = sync.create.options.lease_ttl;
    let expires = SystemTime::now() + ttl;
    set(sync, table, expires, "taking the lease").await
}

/// Fails, naming the holder, when another process holds the lease (`--once` checks the lease
/// without taking it: a run that finds nothing new commits nothing).
pub fn check(sync: &SyncTask, table: &Table) -> Result<()> {
    match holder(table).filter(|(owner, _)| owner != me()) {
        Some((owner, expires)) => Err(held(sync, &owner, expires)),
        None => Ok(()),
    }
}

/// Renews the lease this process took once half its time is gone (between batches), or takes
/// it again if it expired meanwhile; the table after it. Nothing when this process never took
/// it (`--once`).
pub async fn renew_if_due(sync: &SyncTask, table: &Table) -> Result<Option<Table>> {
    if table.metadata().properties().get(OWNER).map(String::as_str) != Some(me()) {
        return Ok(None);
    }
    let ttl = sync.create.options.lease_ttl;
    let due = match holder(table) {
        Some((_, expires)) => {
            expires.duration_since(SystemTime::now()).unwrap_or_default() < ttl / 2
        }
        None => true,
    };
    if !due {
        return Ok(None);
    }
    acquire(sync, table).await.map(Some)
}

/// Gives the lease up (a clean stop), so a standby takes over at once. Best effort.
pub async fn release(sync: &SyncTask) {
    let Ok(table) = sync.load_table().await else { return };
    if holder(&table).is_some_and(|(owner, _)| owner == me()) {
        let released = set(sync, &table, SystemTime::UNIX_EPOCH, "releasing the lease").await;
        match released {
            Ok(_) => tracing::info!("sync {}: lease released", sync.name),
            Err(e) => tracing::warn!("sync {}: cannot release the lease: {e}", sync.name),
        }
    }
}

/// Commits the lease as held by this process until `expires`, refused (on a table another
/// writer changed meanwhile) when another process holds it.
async fn set(sync: &SyncTask, table: &Table, expires: SystemTime, what: &str) -> Result<Table> {
    let expires_ms = expires.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis();
    let updates = HashMap::from([
        (OWNER.to_string(), me().to_string()),
        (EXPIRES.to_string(), expires_ms.to_string()),
    ]);
    let wanted = updates.clone();
    let name = sync.name.clone();
    let target = sync.create.target.to_string();
    let change = Change::metadata(
        what,
        vec![TableRequirement::UuidMatch { uuid: table.metadata().uuid() }],
        vec![TableUpdate::SetProperties { updates }],
        Box::new(move |m| wanted.iter().all(|(k, v)| m.properties().get(k) == Some(v))),
    )
    .guarded(Box::new(move |base| match holder(base) {
        Some((owner, expires)) if owner != me() => {
            let left = expires.duration_since(SystemTime::now()).unwrap_or_default();
            Err(Error::commit(
                ErrorKind::LeaseHeld,
                format!(
                    "sync {name} is running elsewhere: {owner} took its lease on {target} \
                     ({:.0} s left)",
                    left.as_secs_f64().ceil()
                ),
            ))
        }
        _ => Ok(()),
    }));
    commit(&sync.connection, table, change).await
}
