//! The Redis message trigger: runs a component's `handle-message` export for
//! each message on its channel.
//!
//! Two exports are understood, as in Spin: `fermyon:spin/inbound-redis`
//! (spin-sdk 5.2 `#[redis_component]`) and `spin:redis/inbound-redis@3.0.0`
//! (spin-sdk 7 `#[redis_subscriber]`). Each message gets a fresh instance.
//! Messages come from the embedded broker ([`run_embedded`]) or from Redis
//! pub/sub ([`run_redis`]); in both cases a failed handler is retried with
//! backoff and then dead-lettered.

use super::broker::{Broker, Delivery};
use crate::state::{AppContext, ComponentContext, HostState, new_store};
use anyhow::Result;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::InstancePre;

mod v1 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "runtime-host:host/redis-handler-v1",
        exports: { default: async },
    });
}

mod v3 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "runtime-host:host/redis-handler-v3",
    });
}

enum HandlerPre {
    V1(v1::RedisHandlerV1Pre<HostState>),
    V3(v3::RedisHandlerV3Pre<HostState>),
}

pub struct MessageHandler {
    engine: Engine,
    app: Arc<AppContext>,
    component: Arc<ComponentContext>,
    pre: HandlerPre,
}

impl MessageHandler {
    pub fn new(
        engine: &Engine,
        app: &Arc<AppContext>,
        component: Arc<ComponentContext>,
        pre: InstancePre<HostState>,
    ) -> Result<MessageHandler> {
        let pre = match v3::RedisHandlerV3Pre::new(pre.clone()) {
            Ok(p) => HandlerPre::V3(p),
            Err(_) => HandlerPre::V1(v1::RedisHandlerV1Pre::new(pre).map_err(|e| {
                anyhow::anyhow!(
                    "component `{}` is subscribed to a Redis channel but exports neither fermyon:spin/inbound-redis nor spin:redis/inbound-redis@3.0.0: {e:#}",
                    component.id
                )
            })?),
        };
        Ok(MessageHandler {
            engine: engine.clone(),
            app: app.clone(),
            component,
            pre,
        })
    }

    /// Runs the handler once; `Err` carries what to retry or dead-letter with.
    pub async fn handle(&self, payload: Vec<u8>) -> Result<(), String> {
        // `--faults messages=...`: the delivery fails as a crashed handler would.
        self.app
            .faults
            .on_call(crate::faults::Capability::Messages)
            .await
            .map_err(|fault| fault.to_string())?;
        let mut store = new_store(&self.engine, &self.app, &self.component);
        store.data_mut().start_request();

        match &self.pre {
            HandlerPre::V1(pre) => {
                let inst = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| format!("instantiation failed: {e:#}"))?;
                inst.fermyon_spin_inbound_redis()
                    .call_handle_message(&mut store, &payload)
                    .await
                    .map_err(|e| format!("handler trapped: {e:#}"))?
                    .map_err(|e| format!("handler returned an error: {e:?}"))
            }
            HandlerPre::V3(pre) => {
                let inst = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| format!("instantiation failed: {e:#}"))?;
                store
                    .run_concurrent(async |acc| {
                        inst.spin_redis_inbound_redis()
                            .call_handle_message(acc, payload)
                            .await
                    })
                    .await
                    .map_err(|e| format!("handler trapped: {e:#}"))?
                    .map_err(|e| format!("handler trapped: {e:#}"))?
                    .map_err(|e| format!("handler returned an error: {e:?}"))
            }
        }
    }
}

/// Handlers by component id, and subscriptions by channel.
pub struct RedisTrigger {
    pub handlers: HashMap<String, MessageHandler>,
    /// address → channel → components.
    pub subscriptions: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// How many messages are handled at once, per backend. In Redis mode a
/// message that finds every slot busy waits for one (the subscription is
/// not read meanwhile: backpressure, never an unbounded pile of handlers).
const CONCURRENCY: usize = 16;

/// First and longest wait between attempts to (re)subscribe to Redis. Kept
/// short: while the trigger is not subscribed, messages published to its
/// channels reach nobody (readiness reports it; the app's outbox retries).
const RESUBSCRIBE_FIRST_DELAY: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(1);

/// Delivers queued messages from the embedded broker until the host stops.
pub async fn run_embedded(trigger: Arc<RedisTrigger>, broker: Arc<Broker>) {
    let in_flight: Arc<Mutex<HashSet<i64>>> = Default::default();
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    loop {
        let free = slots.available_permits();
        let batch = if free == 0 {
            Vec::new()
        } else {
            let current = in_flight.lock().map(|s| s.clone()).unwrap_or_default();
            broker.due(free, &current).unwrap_or_else(|e| {
                tracing::error!("cannot read the message queue: {e:#}");
                Vec::new()
            })
        };
        for d in batch {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            if let Ok(mut s) = in_flight.lock() {
                s.insert(d.id);
            }
            let trigger = trigger.clone();
            let broker = broker.clone();
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
                deliver(&trigger, &broker, &d).await;
                if let Ok(mut s) = in_flight.lock() {
                    s.remove(&d.id);
                }
                drop(permit);
                broker.notify.notify_one();
            });
        }
        let wait = broker
            .next_due_in()
            .ok()
            .flatten()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        tokio::select! {
            _ = broker.notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn deliver(trigger: &RedisTrigger, broker: &Broker, d: &Delivery) {
    let Some(handler) = trigger.handlers.get(&d.component) else {
        let _ = broker.fail(d, "no handler for this component");
        return;
    };
    match handler.handle(d.payload.clone()).await {
        Ok(()) => {
            if let Err(e) = broker.ack(d.id) {
                tracing::error!("cannot acknowledge message {}: {e:#}", d.id);
            }
        }
        Err(error) => match broker.fail(d, &error) {
            Ok(true) => {
                tracing::error!(component = %d.component, channel = %d.channel, attempts = d.attempts + 1, %error, "message dead-lettered");
                count_dead_letter(handler, broker).await;
            }
            Ok(false) => {
                tracing::warn!(component = %d.component, channel = %d.channel, attempt = d.attempts + 1, %error, "message handler failed; will retry")
            }
            Err(e) => tracing::error!("cannot record a failed delivery: {e:#}"),
        },
    }
}

/// Counts a dead letter. The host's count is its own: the `dead_letters`
/// table of its state dir (listed by `runtime-host dead-letters`), reported as
/// `dead_letters_total` on this log line.
///
/// For the app's existing `/metrics` the count is also mirrored into
/// `metrics:dead_letters_total` of the `default` store (black-box tests
/// assert it there). That mirror is the one remaining place where the host
/// writes an app key; see docs/architecture.md ("Host-made responses and
/// host-owned state") for why it stays until those tests change.
async fn count_dead_letter(handler: &MessageHandler, broker: &Broker) {
    match broker.dead_letter_count() {
        Ok(total) => tracing::info!(dead_letters_total = total, "host dead-letter count"),
        Err(e) => tracing::warn!("cannot count dead letters: {e:#}"),
    }
    if let Ok(store) = handler
        .app
        .key_value
        .open(&["default".to_string()], "default")
    {
        let _ = store.increment("metrics:dead_letters_total", 1).await;
    }
}

/// Subscribes to real Redis and handles messages until the host stops,
/// reconnecting (with backoff) whenever the connection drops.
pub async fn run_redis(trigger: Arc<RedisTrigger>, broker: Arc<Broker>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::new();
    for (address, channels) in trigger.subscriptions.clone() {
        let trigger = trigger.clone();
        let broker = broker.clone();
        let slots = slots.clone();
        tasks.push(tokio::spawn(async move {
            subscribe_forever(&trigger, &broker, &slots, &address, &channels).await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn subscribe_forever(
    trigger: &Arc<RedisTrigger>,
    broker: &Arc<Broker>,
    slots: &Arc<tokio::sync::Semaphore>,
    address: &str,
    channels: &BTreeMap<String, Vec<String>>,
) {
    use crate::capabilities::redis::client::{bounded, describe, redacted};
    use futures::StreamExt;
    let shown = redacted(address);
    let mut backoff = RESUBSCRIBE_FIRST_DELAY;
    loop {
        let connected = bounded(async {
            let client = redis::Client::open(address)?;
            let mut pubsub = client.get_async_pubsub().await?;
            for ch in channels.keys() {
                pubsub.subscribe(ch).await?;
            }
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match connected {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(address = %shown, "cannot subscribe to Redis ({}); retrying in {backoff:?}", describe(&e));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RESUBSCRIBE_MAX_DELAY);
                continue;
            }
        };
        tracing::info!(address = %shown, "subscribed to {} Redis channel(s)", channels.len());
        backoff = RESUBSCRIBE_FIRST_DELAY;
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let channel = msg.get_channel_name().to_string();
            let payload = msg.get_payload_bytes().to_vec();
            for component in channels.get(&channel).into_iter().flatten() {
                // Waits for a free slot before reading on (see CONCURRENCY).
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let trigger = trigger.clone();
                let broker = broker.clone();
                let component = component.clone();
                let channel = channel.clone();
                let payload = payload.clone();
                tokio::spawn(async move {
                    handle_with_retries(&trigger, &broker, &channel, &component, payload).await;
                    drop(permit);
                });
            }
        }
        tracing::warn!(address = %shown, "Redis subscription ended; reconnecting");
    }
}

/// Redis pub/sub has no redelivery, so retries happen here, in memory.
async fn handle_with_retries(
    trigger: &RedisTrigger,
    broker: &Broker,
    channel: &str,
    component: &str,
    payload: Vec<u8>,
) {
    let Some(handler) = trigger.handlers.get(component) else {
        return;
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        match handler.handle(payload.clone()).await {
            Ok(()) => return,
            Err(error) if attempt >= broker.policy.max_attempts => {
                tracing::error!(%component, %channel, attempts = attempt, %error, "message dead-lettered");
                if let Err(e) = broker.dead_letter(channel, component, &payload, &error, attempt) {
                    tracing::error!("cannot record a dead letter: {e:#}");
                }
                count_dead_letter(handler, broker).await;
                return;
            }
            Err(error) => {
                tracing::warn!(%component, %channel, attempt, %error, "message handler failed; will retry");
                tokio::time::sleep(broker.policy.delay(attempt)).await;
            }
        }
    }
}
