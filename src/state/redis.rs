//! The Redis backend: every replica's one truth. Records and in-doubt
//! marks are sealed ([`super::seal`]) in the gateway, also those the
//! import's begin and finish scripts write; leases, an import's begin and
//! finish, budgets and pauses are atomic commands or Lua scripts
//! ([`scripts`]), the budget's ([`budget`]) using Redis `TIME`. Every
//! operation is bounded by `response_timeout` (including waiting for a
//! reconnect) and fails as [`StateError::Unavailable`]; the connection
//! manager reconnects on its own. Works with `redis://` and `rediss://`
//! (rustls, with the process's ring provider); every per-import key
//! shares one hash tag ([`super::keys`]) so a cluster's slots line up.

mod background;
mod budget;
mod connect;
mod scripts;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::health::HealthSignal;
use super::keys::Keys;
use super::seal::Sealer;
use super::wait::{self, Probe, Waiters};
use super::{
    Begin, Health, ImportId, InDoubt, LeaseOwner, Previous, RedisSettings, StateError, WaitOutcome,
};
use connect::describe;
use scripts::Scripts;

/// The Redis store; clones share one connection and its background tasks,
/// which stop when the last clone is dropped.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

/// What another Redis-backed part of the gateway (the session event log)
/// needs to share this store's server, key prefix, sealing key and timeout.
#[derive(Clone)]
pub struct RedisShare {
    /// A client for the store's server (its own connections).
    pub client: redis::Client,
    /// `[state] key_prefix`.
    pub key_prefix: String,
    /// Seals values with the store's encryption key.
    pub sealer: Sealer,
    /// `[state] response_timeout`.
    pub timeout: Duration,
}

struct Inner {
    conn: ConnectionManager,
    share: RedisShare,
    keys: Keys,
    sealer: Sealer,
    timeout: Duration,
    poll_interval: Duration,
    waiters: Waiters,
    health: HealthSignal,
    scripts: Scripts,
    background: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

/// Milliseconds for PX/PEXPIRE: at least 1.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisStore {
    /// A store for `settings`. Connects lazily: it starts even while Redis
    /// is down (health then says so). Must be called inside a Tokio runtime.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, StateError> {
        let client = connect::client(settings)?;
        let conn = connect::manager(&client, settings)?;
        let keys = Keys::new(&settings.key_prefix);
        let waiters = Waiters::default();
        let health = HealthSignal::new(Health::Unavailable);
        let share = RedisShare {
            client: client.clone(),
            key_prefix: settings.key_prefix.clone(),
            sealer: Sealer::new(&settings.encryption_key),
            timeout: settings.response_timeout,
        };
        let background = vec![
            tokio::spawn(background::check_health(
                conn.clone(),
                health.clone(),
                settings.health_check_interval,
                settings.response_timeout,
            ))
            .abort_handle(),
            tokio::spawn(background::listen(
                client,
                keys.done_pattern(),
                waiters.clone(),
                settings.poll_interval,
                settings.connect_timeout.max(settings.response_timeout),
            ))
            .abort_handle(),
        ];
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                share,
                keys,
                sealer: Sealer::new(&settings.encryption_key),
                timeout: settings.response_timeout,
                poll_interval: settings.poll_interval,
                waiters,
                health,
                scripts: Scripts::new(),
                background,
            }),
        })
    }

    /// The server, prefix, sealing key and timeout, for the event log.
    pub fn share(&self) -> RedisShare {
        self.inner.share.clone()
    }

    /// Runs one operation under the timeout; connection failures and
    /// timeouts mark the store unavailable.
    async fn run<T>(
        &self,
        what: &str,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StateError> {
        match tokio::time::timeout(self.inner.timeout, op).await {
            Ok(Ok(value)) => {
                self.inner.health.up();
                Ok(value)
            }
            Ok(Err(err)) => {
                let problem = format!("{what}: {}", describe(&err));
                if err.is_io_error()
                    || err.is_connection_dropped()
                    || err.is_connection_refusal()
                    || err.is_timeout()
                {
                    self.inner.health.down(&problem);
                }
                Err(StateError::Unavailable(problem))
            }
            Err(_) => {
                let problem = format!("{what}: no answer within {:?}", self.inner.timeout);
                self.inner.health.down(&problem);
                Err(StateError::Unavailable(problem))
            }
        }
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// The stored record, if any.
    pub async fn get_record(&self, id: &ImportId) -> Result<Option<Bytes>, StateError> {
        let key = self.inner.keys.record(id);
        let mut conn = self.conn();
        let sealed: Option<Vec<u8>> = self
            .run(
                "GET record",
                redis::cmd("GET").arg(&key).query_async(&mut conn),
            )
            .await?;
        sealed.map(|s| self.inner.sealer.open(&key, s)).transpose()
    }

    /// Stores a sealed record for `ttl`, clears the in-doubt mark and
    /// announces it, in one transaction.
    pub async fn put_record(
        &self,
        id: &ImportId,
        record: &[u8],
        ttl: Duration,
    ) -> Result<(), StateError> {
        let key = self.inner.keys.record(id);
        let sealed = self.inner.sealer.seal(&key, record)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(&key)
            .arg(sealed)
            .arg("PX")
            .arg(millis(ttl))
            .ignore()
            .cmd("DEL")
            .arg(self.inner.keys.in_doubt(id))
            .ignore()
            .cmd("PUBLISH")
            .arg(self.inner.keys.done_channel(id))
            .arg("record")
            .ignore();
        let mut conn = self.conn();
        self.run("store record", pipe.query_async::<()>(&mut conn))
            .await
    }

    /// Takes the lease (`SET NX PX`) if nobody holds it.
    pub async fn try_lease(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn();
        let set: Option<String> = self
            .run(
                "SET NX lease",
                redis::cmd("SET")
                    .arg(self.inner.keys.lease(id))
                    .arg(owner.as_str())
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Extends `owner`'s lease to `ttl` from now (compare-and-pexpire).
    pub async fn extend_lease(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn();
        let mut call = self.inner.scripts.extend.key(self.inner.keys.lease(id));
        call.arg(owner.as_str()).arg(millis(ttl));
        let extended: i64 = self
            .run("extend lease", call.invoke_async(&mut conn))
            .await?;
        Ok(extended == 1)
    }

    /// Releases `owner`'s lease (compare-and-delete) and announces it.
    pub async fn release_lease(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn();
        let mut call = self.inner.scripts.release.key(self.inner.keys.lease(id));
        call.arg(owner.as_str())
            .arg(self.inner.keys.done_channel(id));
        let released: i64 = self
            .run("release lease", call.invoke_async(&mut conn))
            .await?;
        Ok(released == 1)
    }

    /// Waits until the record is stored, the lease is gone, or `deadline`:
    /// woken by the import's channel, polling every `poll_interval`.
    pub async fn wait_for_record(
        &self,
        id: &ImportId,
        deadline: Instant,
    ) -> Result<WaitOutcome, StateError> {
        let record_key = self.inner.keys.record(id);
        let lease_key = self.inner.keys.lease(id);
        let channel = self.inner.keys.done_channel(id);
        let inner = &self.inner;
        wait::wait_for(
            &inner.waiters,
            &channel,
            deadline,
            inner.poll_interval,
            || async {
                let mut conn = self.conn();
                // One MGET: both keys share a slot, so the read is atomic.
                let (record, lease): (Option<Vec<u8>>, Option<Vec<u8>>) = self
                    .run(
                        "MGET record lease",
                        redis::cmd("MGET")
                            .arg(&record_key)
                            .arg(&lease_key)
                            .query_async(&mut conn),
                    )
                    .await?;
                Ok(match (record, lease) {
                    (Some(sealed), _) => Probe::Record(inner.sealer.open(&record_key, sealed)?),
                    (None, Some(_)) => Probe::Leased,
                    (None, None) => Probe::Free,
                })
            },
        )
        .await
    }

    /// Marks an import as sent and not yet answered (sealed), for `ttl`.
    pub async fn mark_in_doubt(
        &self,
        id: &ImportId,
        mark: &InDoubt,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let key = self.inner.keys.in_doubt(id);
        let sealed = self.inner.sealer.seal(&key, &mark.encode()?)?;
        let mut conn = self.conn();
        self.run(
            "SET in-doubt",
            redis::cmd("SET")
                .arg(&key)
                .arg(sealed)
                .arg("PX")
                .arg(millis(ttl))
                .query_async::<()>(&mut conn),
        )
        .await
    }

    /// The in-doubt mark, if any.
    pub async fn in_doubt(&self, id: &ImportId) -> Result<Option<InDoubt>, StateError> {
        let key = self.inner.keys.in_doubt(id);
        let mut conn = self.conn();
        let sealed: Option<Vec<u8>> = self
            .run(
                "GET in-doubt",
                redis::cmd("GET").arg(&key).query_async(&mut conn),
            )
            .await?;
        sealed
            .map(|s| InDoubt::decode(&self.inner.sealer.open(&key, s)?))
            .transpose()
    }

    /// Clears the in-doubt mark.
    pub async fn clear_in_doubt(&self, id: &ImportId) -> Result<(), StateError> {
        let mut conn = self.conn();
        self.run(
            "DEL in-doubt",
            redis::cmd("DEL")
                .arg(self.inner.keys.in_doubt(id))
                .query_async::<()>(&mut conn),
        )
        .await
    }

    /// Begins an import in one script (see `StateStore::begin_import`):
    /// `mark` is sealed here for its key name before it is sent, and the
    /// mark found is opened here.
    pub async fn begin_import(
        &self,
        id: &ImportId,
        owner: &LeaseOwner,
        lease_ttl: Duration,
        mark: &InDoubt,
        mark_ttl: Duration,
        check_record: bool,
    ) -> Result<Begin, StateError> {
        let keys = &self.inner.keys;
        let (record_key, mark_key) = (keys.record(id), keys.in_doubt(id));
        let sealed_mark = self.inner.sealer.seal(&mark_key, &mark.encode()?)?;
        let mut call = self.inner.scripts.begin.key(&record_key);
        call.key(keys.lease(id))
            .key(&mark_key)
            .arg(owner.as_str())
            .arg(millis(lease_ttl))
            .arg(sealed_mark)
            .arg(millis(mark_ttl))
            .arg(if check_record { "1" } else { "0" });
        let mut conn = self.conn();
        let (found, value): (i64, Option<Vec<u8>>) = self
            .run("begin import", call.invoke_async(&mut conn))
            .await?;
        match (found, value) {
            (0, Some(sealed)) => Ok(Begin::Record(self.inner.sealer.open(&record_key, sealed)?)),
            (1, _) => Ok(Begin::Busy),
            (2, None) => Ok(Begin::Leading(Previous::Absent)),
            (2, Some(sealed)) => Ok(Begin::Leading(
                match self
                    .inner
                    .sealer
                    .open(&mark_key, sealed)
                    .and_then(|plain| InDoubt::decode(&plain))
                {
                    Ok(previous) => Previous::Mark(previous),
                    Err(err) => Previous::Unreadable(err.to_string()),
                },
            )),
            (other, _) => Err(StateError::Unavailable(format!(
                "begin import: unexpected answer {other}"
            ))),
        }
    }

    /// Finishes an import in one script (see `StateStore::finish_import`):
    /// the record is sealed here for its key name.
    pub async fn finish_import(
        &self,
        id: &ImportId,
        record: Bytes,
        ttl: Duration,
        owner: &LeaseOwner,
    ) -> Result<bool, StateError> {
        let keys = &self.inner.keys;
        let record_key = keys.record(id);
        let sealed = self.inner.sealer.seal(&record_key, &record)?;
        let mut call = self.inner.scripts.finish.key(&record_key);
        call.key(keys.in_doubt(id))
            .key(keys.lease(id))
            .arg(sealed)
            .arg(millis(ttl))
            .arg(keys.done_channel(id))
            .arg(owner.as_str());
        let mut conn = self.conn();
        let released: i64 = self
            .run("finish import", call.invoke_async(&mut conn))
            .await?;
        Ok(released == 1)
    }

    /// Available / unavailable, with every transition.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.inner.health.subscribe()
    }
}
