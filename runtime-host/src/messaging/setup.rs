//! Wiring of the Redis trigger at start-up: which components each
//! channel reaches, and the task that delivers to them through the
//! embedded broker or Redis pub/sub.

use super::broker::RetryPolicy;
use super::trigger::{MessageHandler, RedisTrigger};
use super::{Broker, MessageBackend};
use crate::manifest::App;
use crate::state::AppContext;
use crate::variables::Variables;
use anyhow::{Context as _, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Redis trigger subscriptions: address → channel → components, templates
/// expanded.
pub type Subscriptions = BTreeMap<String, BTreeMap<String, Vec<String>>>;

pub fn redis_subscriptions(
    app: &App,
    variables: &Variables,
    manifest_path: &Path,
) -> Result<Subscriptions> {
    let mut subscriptions = Subscriptions::new();
    for t in &app.redis_triggers {
        let address = t
                .address
                .as_deref()
                .or(app.redis_address.as_deref())
                .with_context(|| format!("{}: [[trigger.redis]] for component `{}` has no address and [application.trigger.redis] sets none", manifest_path.display(), t.component))?;
        let address = variables.expand(address).context("Redis trigger address")?;
        let channel = variables
            .expand(&t.channel)
            .context("Redis trigger channel")?;
        subscriptions
            .entry(address)
            .or_default()
            .entry(channel)
            .or_default()
            .push(t.component.clone());
    }
    Ok(subscriptions)
}

/// Delivers queued and incoming messages to the Redis-trigger components,
/// through the embedded broker or Redis pub/sub.
pub fn start_message_trigger(
    backend: MessageBackend,
    message_handlers: HashMap<String, MessageHandler>,
    subscriptions: Subscriptions,
    broker: &Arc<Broker>,
    app_ctx: &AppContext,
    state_dir: &Path,
) {
    if message_handlers.is_empty() {
        return;
    }
    let trigger = Arc::new(RedisTrigger {
        handlers: message_handlers,
        subscriptions,
    });
    match backend {
        MessageBackend::Embedded => {
            let stands_in_for: Vec<String> = app_ctx
                .redis
                .embedded_addresses()
                .iter()
                .map(|a| crate::capabilities::redis::client::redacted(a))
                .collect();
            println!(
                "Messages: embedded broker ({}), standing in for Redis at {} (other Redis addresses are real servers)",
                state_dir.join("messages.db").display(),
                stands_in_for.join(", ")
            );
            tokio::spawn(super::trigger::run_embedded(trigger, broker.clone()));
        }
        MessageBackend::Redis => {
            println!("Messages: Redis pub/sub");
            tokio::spawn(super::trigger::run_redis(trigger, broker.clone()));
        }
    }
}

/// The durable message queue, knowing which components each channel
/// reaches.
pub fn open_broker(
    state_dir: &Path,
    subscriptions: &Subscriptions,
    retry: RetryPolicy,
) -> Result<Arc<Broker>> {
    let channels: BTreeMap<String, Vec<String>> =
        subscriptions.values().fold(BTreeMap::new(), |mut acc, m| {
            for (ch, comps) in m {
                acc.entry(ch.clone())
                    .or_default()
                    .extend(comps.iter().cloned());
            }
            acc
        });
    Ok(Arc::new(Broker::open(
        &state_dir.join("messages.db"),
        channels,
        retry,
    )?))
}
