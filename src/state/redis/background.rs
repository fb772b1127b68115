//! The two tasks each Redis store runs: a health check (PING every
//! `health_check_interval`, so the signal recovers even when no traffic
//! arrives because health said NOT_SERVING) and a listener (one
//! PSUBSCRIBE to every import's channel, waking local waiters; it
//! reconnects on its own, and waiters poll meanwhile).

use std::time::Duration;

use futures::StreamExt as _;
use redis::aio::ConnectionManager;

use crate::state::health::HealthSignal;
use crate::state::wait::Waiters;

/// PINGs Redis forever, reporting each result to `health`.
pub(super) async fn check_health(
    mut conn: ConnectionManager,
    health: HealthSignal,
    interval: Duration,
    timeout: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let ping = redis::cmd("PING");
        match tokio::time::timeout(timeout, ping.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => health.up(),
            Ok(Err(err)) => health.down(&super::connect::describe(&err)),
            Err(_) => health.down(&format!("no answer to PING within {timeout:?}")),
        }
    }
}

/// Listens on `pattern` forever, waking the local waiters of each channel
/// a message arrives on.
pub(super) async fn listen(
    client: redis::Client,
    pattern: String,
    waiters: Waiters,
    retry: Duration,
    timeout: Duration,
) {
    loop {
        match subscribe(&client, &pattern, timeout).await {
            Ok(pubsub) => {
                // Anything published while we were away is found by polling,
                // and by one re-check now.
                waiters.wake_all();
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    waiters.wake(message.get_channel_name());
                }
                tracing::debug!("redis subscription ended; resubscribing");
            }
            Err(problem) => tracing::debug!(%problem, "cannot subscribe to redis; retrying"),
        }
        tokio::time::sleep(retry).await;
    }
}

async fn subscribe(
    client: &redis::Client,
    pattern: &str,
    timeout: Duration,
) -> Result<redis::aio::PubSub, String> {
    let connect = client.get_async_pubsub();
    let mut pubsub = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(err)) => return Err(super::connect::describe(&err)),
        Err(_) => return Err(format!("no connection within {timeout:?}")),
    };
    match tokio::time::timeout(timeout, pubsub.psubscribe(pattern)).await {
        Ok(Ok(())) => Ok(pubsub),
        Ok(Err(err)) => Err(super::connect::describe(&err)),
        Err(_) => Err(format!("no answer to PSUBSCRIBE within {timeout:?}")),
    }
}
