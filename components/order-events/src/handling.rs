//! What one event does: [`plan`] (pure) reads the event into an effect,
//! [`apply`] applies it in one transaction with the claim of its id.

use anyhow::{Context as _, Result, anyhow};
use app_common::events::Event;
use app_common::storage::{db, kv};
use orders_model::notifications::{self, Notification};
use orders_model::{OrderStatus, currency, store};
use serde::Deserialize;

/// How a message ended (the `outcome` label of the business metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Processed,
    /// Handled before: nothing done.
    Duplicate,
    /// Not an event this component reacts to.
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Processed => "success",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
        }
    }
}

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Notify the current owner of `order_id`.
    Notify {
        order_id: String,
        message: String,
    },
    /// Anonymise the user's orders, remove their notifications.
    ForgetUser {
        user_id: String,
    },
    Ignore,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderCreated {
    order_id: String,
    currency: String,
    total: i64,
    item_count: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusChanged {
    order_id: String,
    to: OrderStatus,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserDeleted {
    user_id: String,
}

fn data<T: serde::de::DeserializeOwned>(event: &Event) -> Result<T> {
    serde_json::from_value(event.data.clone()).with_context(|| {
        format!(
            "`{}` event {} has unusable data",
            event.kind, event.event_id
        )
    })
}

/// Reads an event into its effect; an event of a known type with bad data
/// is an error.
pub fn plan(event: &Event) -> Result<Effect> {
    Ok(match event.kind.as_str() {
        "order.created" => {
            let d: OrderCreated = data(event)?;
            let items = if d.item_count == 1 { "item" } else { "items" };
            Effect::Notify {
                message: format!(
                    "Your order {} was placed: {} {items}, total {}.",
                    d.order_id,
                    d.item_count,
                    currency::format(d.total, &d.currency)
                ),
                order_id: d.order_id,
            }
        }
        "order.status_changed" => {
            let d: StatusChanged = data(event)?;
            let id = &d.order_id;
            let message = match d.to {
                OrderStatus::Paid => format!("Payment received for your order {id}."),
                OrderStatus::Shipped => format!("Your order {id} has shipped."),
                OrderStatus::Delivered => format!("Your order {id} was delivered."),
                OrderStatus::Cancelled => format!("Your order {id} was cancelled."),
                OrderStatus::Created => format!("Your order {id} is {}.", d.to),
            };
            Effect::Notify {
                order_id: d.order_id,
                message,
            }
        }
        "user.deleted" => {
            let d: UserDeleted = data(event)?;
            Effect::ForgetUser { user_id: d.user_id }
        }
        _ => Effect::Ignore,
    })
}

/// Reads a message into its event and effect. An error here is permanent
/// (no retry can make a malformed message readable).
pub fn read(payload: &[u8]) -> Result<(Event, Effect)> {
    let event = Event::parse(payload)?;
    let effect = plan(&event)?;
    Ok((event, effect))
}

/// Applies an event's effect in one transaction with the claim of its id.
/// An error here (the database down, the order not visible yet) is worth
/// retrying.
pub fn apply(event: &Event, effect: Effect) -> Result<Outcome> {
    if effect == Effect::Ignore {
        return Ok(Outcome::Ignored);
    }
    if let Effect::ForgetUser { user_id } = &effect {
        // Before the transaction, so a failure here is retried in full.
        let store = kv::open()?;
        kv::delete(&store, &format!("orders:cache:user:{user_id}"))?;
    }
    let conn = store::connect()?;
    db::transaction(&conn, |conn| {
        if !notifications::claim_event(conn, &event.event_id, &event.kind)? {
            return Ok(Outcome::Duplicate);
        }
        match &effect {
            Effect::Notify { order_id, message } => {
                let order = store::find(conn, order_id)?.ok_or_else(|| {
                    anyhow!(
                        "event {} names order {order_id}, which does not exist",
                        event.event_id
                    )
                })?;
                // An anonymised order has no owner left to notify.
                if let Some(owner) = order.user_id {
                    notifications::insert(
                        conn,
                        &Notification {
                            id: app_common::util::ids::new_record_id(),
                            user_id: owner,
                            event_id: event.event_id.clone(),
                            kind: event.kind.clone(),
                            order_id: Some(order.id),
                            message: message.clone(),
                            created_at: app_common::util::time::now_millis(),
                            read_at: None,
                        },
                    )?;
                }
            }
            Effect::ForgetUser { user_id } => {
                store::anonymise_user(conn, user_id)?;
                notifications::delete_for_user(conn, user_id)?;
            }
            Effect::Ignore => {}
        }
        Ok(Outcome::Processed)
    })
}

/// The identifying fields of a message, as far as they can be read, for
/// the log line.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub event_id: Option<String>,
    pub correlation_id: Option<String>,
}

pub fn peek(payload: &[u8]) -> Head {
    serde_json::from_slice(payload).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, data: serde_json::Value) -> Event {
        Event::at(kind, "e1", "c1", 0, data)
    }

    #[test]
    fn order_events_notify_with_amounts_in_major_units() {
        let e = event(
            "order.created",
            json!({"orderId": "o1", "userId": "u1", "status": "created",
                   "currency": "USD", "total": 30, "itemCount": 2}),
        );
        assert_eq!(
            plan(&e).unwrap(),
            Effect::Notify {
                order_id: "o1".into(),
                message: "Your order o1 was placed: 2 items, total USD 0.30.".into()
            }
        );
        let e = event(
            "order.status_changed",
            json!({"orderId": "o1", "userId": "u1", "from": "paid", "to": "shipped"}),
        );
        assert!(matches!(plan(&e).unwrap(),
            Effect::Notify { message, .. } if message == "Your order o1 has shipped."));
    }

    #[test]
    fn user_deletions_forget_the_user() {
        let e = event("user.deleted", json!({"userId": "u1"}));
        assert_eq!(
            plan(&e).unwrap(),
            Effect::ForgetUser {
                user_id: "u1".into()
            }
        );
    }

    #[test]
    fn unknown_types_are_ignored_and_bad_data_fails() {
        assert_eq!(
            plan(&event("upload.created", json!({}))).unwrap(),
            Effect::Ignore
        );
        let e = plan(&event("order.created", json!({"orderId": 5}))).unwrap_err();
        assert!(format!("{e:#}").contains("unusable data"), "{e:#}");
        assert!(
            plan(&event(
                "order.status_changed",
                json!({"orderId": "o", "to": "lost"})
            ))
            .is_err()
        );
    }

    #[test]
    fn heads_are_read_from_anything() {
        let h = peek(br#"{"type":"x","eventId":"e","version":9}"#);
        assert_eq!(h.kind.as_deref(), Some("x"));
        assert_eq!(h.event_id.as_deref(), Some("e"));
        assert!(peek(b"garbage").kind.is_none());
    }
}
