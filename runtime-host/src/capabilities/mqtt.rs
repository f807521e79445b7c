//! Outbound MQTT (`fermyon:spin/mqtt@2.0.0`, `spin:mqtt@3.0.0`): publish to
//! a broker with `rumqttc`, as Spin's `factor-outbound-mqtt` does.
//!
//! - The address is `mqtt://host[:port]?client_id=...` (rumqttc's URL form;
//!   a missing `client_id` is `invalid-address`). TLS (`mqtts://`) is not
//!   built in.
//! - An address outside the component's `allowed_outbound_hosts` fails to
//!   open with `connection-failed("address ... is not permitted")`, Spin's
//!   answer; `open` itself does not reach the network.
//! - `publish` returns once the broker has the message as its QoS asks
//!   (sent, PUBACK or PUBCOMP), or fails with `connection-failed` after
//!   [`PUBLISH_TIMEOUT`] rather than hold the request.
//!
//! Both interface versions convert to one [`MqttConnection`].

use super::bindings::{Acc, P3Capabilities, WResult};
use crate::state::HostState;
use rumqttc::QoS;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Linker, Resource};

/// Longest one publish may take, connecting included.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests rumqttc may queue before the event loop takes them.
const CHANNEL_CAPACITY: usize = 64;

#[derive(Debug, Clone)]
pub enum MqttError {
    InvalidAddress,
    ConnectionFailed(String),
    Other(String),
}

/// One client's connection to a broker; connects on first publish.
pub struct MqttConnection {
    client: rumqttc::AsyncClient,
    events: tokio::sync::Mutex<rumqttc::EventLoop>,
}

impl MqttConnection {
    /// Checks `address` against the component's allow-list, then prepares
    /// a client.
    fn open(
        component: &crate::state::ComponentContext,
        address: &str,
        username: String,
        password: String,
        keep_alive_secs: u64,
    ) -> Result<MqttConnection, MqttError> {
        let (scheme, host, port) =
            crate::http::outbound::address_parts(address, &["mqtt", "mqtts"])
                .ok_or(MqttError::InvalidAddress)?;
        if !component.outbound.allows(&scheme, &host, port) {
            // Spin's words, with any credentials in the URL hidden.
            let shown = super::redis::client::redacted(address);
            tracing::warn!(component = %component.id, address = %shown, "outbound MQTT denied: add the address to the component's allowed_outbound_hosts");
            return Err(MqttError::ConnectionFailed(format!(
                "address {shown} is not permitted"
            )));
        }
        let mut options =
            rumqttc::MqttOptions::parse_url(address).map_err(|_| MqttError::InvalidAddress)?;
        options.set_credentials(username, password);
        options.set_keep_alive(Duration::from_secs(keep_alive_secs));
        let (client, events) = rumqttc::AsyncClient::new(options, CHANNEL_CAPACITY);
        Ok(MqttConnection {
            client,
            events: tokio::sync::Mutex::new(events),
        })
    }

    async fn publish(&self, topic: String, payload: Vec<u8>, qos: QoS) -> Result<(), MqttError> {
        use rumqttc::{Event, Incoming, Outgoing};
        let delivered = async {
            self.client
                .publish(topic, qos, false, payload)
                .await
                .map_err(|e| MqttError::Other(e.to_string()))?;
            // Drive the connection until the broker has it as `qos` asks.
            let mut events = self.events.lock().await;
            loop {
                let event = events
                    .poll()
                    .await
                    .map_err(|e| MqttError::ConnectionFailed(e.to_string()))?;
                match (qos, event) {
                    (QoS::AtMostOnce, Event::Outgoing(Outgoing::Publish(_)))
                    | (QoS::AtLeastOnce, Event::Incoming(Incoming::PubAck(_)))
                    | (QoS::ExactlyOnce, Event::Incoming(Incoming::PubComp(_))) => return Ok(()),
                    _ => continue,
                }
            }
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, delivered)
            .await
            .unwrap_or_else(|_| {
                Err(MqttError::ConnectionFailed(format!(
                    "the broker did not take the message within {PUBLISH_TIMEOUT:?}"
                )))
            })
    }
}

/// An open connection as the guest holds it.
pub struct MqttHandle(Arc<MqttConnection>);

pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let map = |e: wasmtime::Error| anyhow::anyhow!("{e:#}");
    v2::mqtt::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(linker, |s| s)
        .map_err(map)?;
    v3::mqtt::add_to_linker::<HostState, P3Capabilities>(linker, |s| s).map_err(map)?;
    Ok(())
}

// ---- fermyon:spin/mqtt@2.0.0 ---------------------------------------------------

/// A version's error from [`MqttError`], and its `qos` as rumqttc's (the
/// versions have the same cases under other type names).
macro_rules! mqtt_conversions {
    ($v:ident, $qos:ident) => {
        impl From<MqttError> for $v::mqtt::Error {
            fn from(e: MqttError) -> Self {
                match e {
                    MqttError::InvalidAddress => Self::InvalidAddress,
                    MqttError::ConnectionFailed(m) => Self::ConnectionFailed(m),
                    MqttError::Other(m) => Self::Other(m),
                }
            }
        }

        fn $qos(q: $v::mqtt::Qos) -> QoS {
            match q {
                $v::mqtt::Qos::AtMostOnce => QoS::AtMostOnce,
                $v::mqtt::Qos::AtLeastOnce => QoS::AtLeastOnce,
                $v::mqtt::Qos::ExactlyOnce => QoS::ExactlyOnce,
            }
        }
    };
}

mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: r#"
            package runtime-host:mqtt2;
            world mqtt2 { import fermyon:spin/mqtt@2.0.0; }
        "#,
        world: "runtime-host:mqtt2/mqtt2",
        imports: { default: async | trappable },
        with: { "fermyon:spin/mqtt.connection": super::MqttHandle },
    });
    pub use fermyon::spin2_0_0::mqtt;
}

mqtt_conversions!(v2, qos_v2);

impl HostState {
    /// Opens an MQTT connection for this component (any version's error).
    fn mqtt_open<E: From<MqttError>>(
        &mut self,
        address: &str,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> WResult<Result<Resource<MqttHandle>, E>> {
        match MqttConnection::open(
            &self.component,
            address,
            username,
            password,
            keep_alive_interval_in_secs,
        ) {
            Ok(c) => Ok(Ok(self.table.push(MqttHandle(Arc::new(c)))?)),
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl v2::mqtt::Host for HostState {}

impl v2::mqtt::HostConnection for HostState {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> WResult<Result<Resource<MqttHandle>, v2::mqtt::Error>> {
        self.mqtt_open(&address, username, password, keep_alive_interval_in_secs)
    }

    async fn publish(
        &mut self,
        this: Resource<MqttHandle>,
        topic: String,
        payload: Vec<u8>,
        qos: v2::mqtt::Qos,
    ) -> WResult<Result<(), v2::mqtt::Error>> {
        let conn = self.table.get(&this)?.0.clone();
        Ok(conn
            .publish(topic, payload, qos_v2(qos))
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<MqttHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

// ---- spin:mqtt@3.0.0 -------------------------------------------------------------

mod v3 {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: r#"
            package runtime-host:mqtt3;
            world mqtt3 { import spin:mqtt/mqtt@3.0.0; }
        "#,
        world: "runtime-host:mqtt3/mqtt3",
        imports: { default: trappable },
        with: { "spin:mqtt/mqtt.connection": super::MqttHandle },
    });
    pub use spin::mqtt::mqtt;
}

mqtt_conversions!(v3, qos_v3);

impl v3::mqtt::Host for HostState {}

impl v3::mqtt::HostConnection for HostState {
    fn drop(&mut self, this: Resource<MqttHandle>) -> WResult<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl v3::mqtt::HostConnectionWithStore<HostState> for P3Capabilities {
    async fn open(
        acc: &Acc,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> WResult<Result<Resource<MqttHandle>, v3::mqtt::Error>> {
        acc.with(|mut a| {
            a.get()
                .mqtt_open(&address, username, password, keep_alive_interval_in_secs)
        })
    }

    async fn publish(
        acc: &Acc,
        this: Resource<MqttHandle>,
        topic: String,
        payload: Vec<u8>,
        qos: v3::mqtt::Qos,
    ) -> WResult<Result<(), v3::mqtt::Error>> {
        let conn =
            acc.with(|mut a| Ok::<_, wasmtime::Error>(a.get().table.get(&this)?.0.clone()))?;
        Ok(conn
            .publish(topic, payload, qos_v3(qos))
            .await
            .map_err(Into::into))
    }
}
