//! Outbound MQTT (`fermyon:spin/mqtt@2.0.0` from a spin-sdk 5.2 component,
//! `spin:mqtt@3.0.0` from a spin-sdk 7 one) against a real `mosquitto`,
//! observed by a real subscriber.

use app_tests::{Host, MqttBroker, request, wasm};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use std::time::Duration;
use tokio::sync::mpsc;

/// A host with the p2 fixture at `/p2/...` and the p3 one at `/p3/...`,
/// both allowed `allowed` and publishing to `address` as `user`/`password`.
fn start(allowed: &str, address: &str, password: &str) -> Host {
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "mqtt"
[variables]
mqtt_address = {{ default = "{address}" }}
mqtt_password = {{ default = "{password}" }}
[[trigger.http]]
route = "/p2/..."
component = "p2"
[[trigger.http]]
route = "/p3/..."
component = "p3"
[component.p2]
source = "{p2}"
allowed_outbound_hosts = ["{allowed}"]
variables = {{ mqtt_address = "{{{{ mqtt_address }}}}", mqtt_username = "{user}", mqtt_password = "{{{{ mqtt_password }}}}" }}
[component.p3]
source = "{p3}"
allowed_outbound_hosts = ["{allowed}"]
variables = {{ mqtt_address = "{{{{ mqtt_address }}}}", mqtt_username = "{user}", mqtt_password = "{{{{ mqtt_password }}}}" }}
"#,
        user = MqttBroker::USER,
        p2 = wasm("fixture-p2-app").display(),
        p3 = wasm("fixture-p3-app").display(),
    );
    Host::start(&manifest, &[])
}

/// Subscribes to `events/#` and forwards every message (topic, payload);
/// returns once the broker has confirmed the subscription.
async fn subscribe(broker: &MqttBroker) -> mpsc::UnboundedReceiver<(String, Vec<u8>)> {
    let mut options = MqttOptions::new("test-subscriber", "127.0.0.1", broker.port);
    options.set_credentials(MqttBroker::USER, MqttBroker::PASSWORD);
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .subscribe("events/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client; // keeps the connection open
        let mut subscribed_tx = Some(subscribed_tx);
        while let Ok(event) = events.poll().await {
            match event {
                Event::Incoming(Incoming::SubAck(_)) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                Event::Incoming(Incoming::Publish(p)) => {
                    let _ = tx.send((p.topic, p.payload.to_vec()));
                }
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("the broker confirms the subscription")
        .unwrap();
    rx
}

async fn next_message(rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>)>) -> (String, String) {
    let (topic, payload) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a message arrives")
        .unwrap();
    (topic, String::from_utf8(payload).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_interface_versions_publish_to_a_real_broker() {
    let broker = MqttBroker::start();
    let mut messages = subscribe(&broker).await;
    let host = start(
        &format!("mqtt://127.0.0.1:{}", broker.port),
        &broker.address("component"),
        MqttBroker::PASSWORD,
    );

    let r = request("POST", host.url("/p2/mqtt/events/p2"), "from p2").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        next_message(&mut messages).await,
        ("events/p2".into(), "from p2".into())
    );

    let r = request("POST", host.url("/p3/mqtt/events/p3"), "from p3").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        next_message(&mut messages).await,
        ("events/p3".into(), "from p3".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_what_was_wrong() {
    let broker = MqttBroker::start();
    let allowed = format!("mqtt://127.0.0.1:{}", broker.port);

    // The broker refuses a wrong password: connection-failed, promptly.
    let host = start(&allowed, &broker.address("c"), "wrong");
    for version in ["p2", "p3"] {
        let r = request("POST", host.url(&format!("/{version}/mqtt/events/x")), "m").await;
        assert_eq!(r.status, 500);
        assert!(
            r.text().contains("ConnectionFailed"),
            "{version}: {}",
            r.text()
        );
    }
    drop(host);

    // An address outside allowed_outbound_hosts: Spin's "not permitted".
    let host = start(
        "mqtt://127.0.0.1:1",
        &broker.address("c"),
        MqttBroker::PASSWORD,
    );
    for version in ["p2", "p3"] {
        let r = request("POST", host.url(&format!("/{version}/mqtt/events/x")), "m").await;
        assert!(
            r.text().contains("is not permitted"),
            "{version}: {}",
            r.text()
        );
    }
    drop(host);

    // rumqttc needs a client id: without one the address is invalid.
    let host = start(
        &allowed,
        &format!("mqtt://127.0.0.1:{}", broker.port),
        MqttBroker::PASSWORD,
    );
    for version in ["p2", "p3"] {
        let r = request("POST", host.url(&format!("/{version}/mqtt/events/x")), "m").await;
        assert!(
            r.text().contains("InvalidAddress"),
            "{version}: {}",
            r.text()
        );
    }
}
