//! The orders routes: each authenticates the caller, applies the rules of
//! [`crate::rules`] and reads or writes the order records
//! ([`orders_model::store`]). Every change commits its event to the outbox
//! in the same transaction and publishes it after the commit
//! ([`app_common::events`]).

use crate::Settings;
use crate::rules::{self, CreateOrderBody, NewOrder, StatusBody};
use accounts_model::{Profile, etag};
use anyhow::anyhow;
use app_common::events::{self, Event};
use app_common::http::error::Detail;
use app_common::http::headers::{JSON_CONTENT_TYPE, if_match_holds};
use app_common::http::pagination::{Page, decode_cursor, parse_limit};
use app_common::storage::db;
use app_common::telemetry::metrics::record_business;
use app_common::util::ids;
use app_common::{ApiError, ApiRequest, ApiResponse};
use orders_model::OrderStatus;
use orders_model::store::{self, Idempotency, ListFilter, Order, OrderView, Replay};
use serde::Serialize;
use serde_json::json;

fn not_found() -> ApiError {
    ApiError::not_found("no order has this id")
}

fn json_bytes(status: u16, body: String) -> ApiResponse {
    ApiResponse::bytes(status, JSON_CONTENT_TYPE, body.into_bytes())
}

/// What the create transaction did.
enum Created {
    New,
    /// An earlier request with this idempotency key created an order.
    Earlier(Replay),
}

/// `POST /api/orders` → 201 with the order. With `Idempotency-Key`, a
/// repeat of the same request returns the first response (and
/// `Idempotent-Replayed: true`) and creates nothing; the same key with a
/// different order is a 409.
pub fn create(request: &ApiRequest, settings: &Settings) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let new = rules::idempotency_key(request.header("idempotency-key"))
        .and_then(|key| Ok((key, request.json::<CreateOrderBody>()?)))
        .and_then(|(key, body)| Ok((key, rules::validate_create(&body)?)));
    let (key, new) = new.inspect_err(|_| record_business("order_create", "invalid"))?;
    let fingerprint = new.fingerprint();
    let conn = store::connect()?;
    if let Some(key) = &key
        && let Some(earlier) = store::find_by_idempotency_key(&conn, &caller.user_id, key)?
    {
        return replay(earlier, &fingerprint);
    }
    let order = new_order(&caller.user_id, new);
    let view = order.view();
    let body = serde_json::to_string(&view).map_err(|e| anyhow!("serialise order: {e}"))?;
    let idempotency = key.map(|key| Idempotency {
        key,
        request_hash: fingerprint.clone(),
        first_response: body.clone(),
    });
    let event = Event::new(
        "order.created",
        request.correlation_id(),
        json!({
            "orderId": order.id,
            "userId": caller.user_id,
            "status": order.status,
            "currency": order.currency,
            "total": order.total,
            "itemCount": view.item_count,
        }),
    );
    let outcome = db::transaction(&conn, |conn| {
        if let Some(idem) = &idempotency
            && let Some(earlier) = store::find_by_idempotency_key(conn, &caller.user_id, &idem.key)?
        {
            return Ok(Created::Earlier(earlier));
        }
        if !store::insert(conn, &order, idempotency.as_ref())? {
            let key = &idempotency.as_ref().expect("only keys conflict").key;
            let earlier = store::find_by_idempotency_key(conn, &caller.user_id, key)?
                .ok_or_else(|| anyhow!("idempotency key conflict without an earlier order"))?;
            return Ok(Created::Earlier(earlier));
        }
        events::enqueue(conn, &settings.events, &event)?;
        Ok(Created::New)
    })
    .inspect_err(|_| record_business("order_create", "failure"))?;
    match outcome {
        Created::New => {
            events::publish_after_commit(conn, &settings.events, &[event]);
            record_business("order_create", "success");
            Ok(json_bytes(201, body)
                .with_header("location", format!("/api/orders/{}", order.id))
                .with_header("etag", etag(order.version)))
        }
        Created::Earlier(earlier) => replay(earlier, &fingerprint),
    }
}

fn new_order(user_id: &str, new: NewOrder) -> Order {
    let now = app_common::util::time::now_millis();
    Order {
        id: ids::new_record_id(),
        user_id: Some(user_id.to_string()),
        status: OrderStatus::Created,
        currency: new.currency,
        lines: new.lines,
        total: new.total,
        shipping_address: Some(new.shipping_address),
        version: 1,
        created_at: now,
        updated_at: now,
    }
}

/// The answer to a repeated idempotency key.
fn replay(earlier: Replay, fingerprint: &str) -> Result<ApiResponse, ApiError> {
    if earlier.request_hash != fingerprint {
        record_business("order_create", "conflict");
        return Err(ApiError::new(
            409,
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different order; use a new key",
        ));
    }
    record_business("order_create", "replayed");
    Ok(json_bytes(201, earlier.first_response)
        .with_header("location", format!("/api/orders/{}", earlier.order_id))
        .with_header("idempotent-replayed", "true"))
}

/// `GET /api/orders?limit&cursor&userId&status` → a page, newest first.
/// Users see their own orders; admins see all, optionally filtered.
pub fn list(request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    request.reject_unknown_query_params(&["limit", "cursor", "userId", "status"])?;
    let limit = parse_limit(request.query_param("limit").as_deref())?;
    let before = match request.query_param("cursor") {
        Some(cursor) => Some(decode_cursor(&cursor)?),
        None => None,
    };
    let user_id = match request.query_param("userId") {
        Some(id) if !ids::is_uuid(&id) => {
            return Err(ApiError::validation(vec![Detail::field(
                "userId",
                "invalid_id",
                "must be a user id (a lower-case UUID)",
            )]));
        }
        Some(id) if !caller.is_admin() && id != caller.user_id => {
            return Err(ApiError::forbidden(
                "only administrators may list other users' orders",
            ));
        }
        Some(id) => Some(id),
        None if caller.is_admin() => None,
        None => Some(caller.user_id.clone()),
    };
    let status = match request.query_param("status") {
        Some(text) => Some(rules::parse_status("status", &text)?),
        None => None,
    };
    let conn = store::connect()?;
    let rows = store::list(
        &conn,
        &ListFilter { user_id, status },
        before.as_deref(),
        limit + 1,
    )?;
    let views: Vec<OrderView> = rows.iter().map(Order::view).collect();
    ApiResponse::json(200, &Page::from_rows(views, limit, |v| v.id.clone()))
}

/// An order with its owner's profile.
#[derive(Serialize)]
struct OrderWithUser {
    #[serde(flatten)]
    order: OrderView,
    user: Option<Profile>,
}

/// `GET /api/orders/:id` (owner or admin; anyone else 404) → the order
/// and `user`: the owner's profile, or `null` when it cannot be had.
pub async fn get(request: &ApiRequest, settings: &Settings) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let id = request.id_param("an order")?;
    let conn = store::connect()?;
    let order = store::find(&conn, id)?
        .filter(|o| rules::may_see(&caller, o))
        .ok_or_else(not_found)?;
    let user = match &order.user_id {
        Some(owner) => {
            settings
                .users
                .profile(
                    owner,
                    request.bearer_token().unwrap_or_default(),
                    request.correlation_id(),
                )
                .await
        }
        None => None,
    };
    let version = order.version;
    Ok(ApiResponse::json(
        200,
        &OrderWithUser {
            order: order.view(),
            user,
        },
    )?
    .with_header("etag", etag(version)))
}

/// What the status transaction did.
enum Changed {
    Done(Order),
    Refused(ApiError),
}

fn precondition_failed(current_version: i64) -> ApiError {
    ApiError::precondition_failed(format!(
        "If-Match does not name the current version; the order's ETag is {}",
        etag(current_version)
    ))
}

/// `PATCH /api/orders/:id/status {status}` [`If-Match`] → the changed
/// order (with its `ETag`). See [`rules::check_transition`] for who may do
/// what. The change is decided on one reading of the order and applied
/// only if the order is still at that version ([`store::transition`]):
/// of changes that overlap exactly one wins and the others get 409 (412
/// with `If-Match`), even when the loser's target would be allowed from
/// the winner's (pay vs cancel). `If-Match` pins the version the client
/// saw, so a change decided on a stale reading is 412 whenever it comes.
pub fn change_status(request: &ApiRequest, settings: &Settings) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let id = request.id_param("an order")?;
    let body: StatusBody = request
        .json()
        .inspect_err(|_| record_business("order_status_change", "invalid"))?;
    let to = rules::parse_status("status", &body.status)
        .inspect_err(|_| record_business("order_status_change", "invalid"))?;
    let if_match = request.header("if-match");
    let conn = store::connect()?;
    let mut event = None;
    // Read outside the write transaction on purpose: the decision belongs
    // to this reading, and the conditional update refuses it if the order
    // moved on (inside, the write lock would serialise the requests and
    // each would see, and act on, the previous one's result).
    let read = store::find(&conn, id)?.filter(|o| rules::may_see(&caller, o));
    let outcome = db::transaction(&conn, |conn| {
        let Some(order) = read else {
            return Ok(Changed::Refused(not_found()));
        };
        if !if_match_holds(if_match, order.version) {
            return Ok(Changed::Refused(precondition_failed(order.version)));
        }
        if let Err(refusal) = rules::check_transition(&caller, order.status, to) {
            return Ok(Changed::Refused(refusal));
        }
        let Some(updated) = store::transition(conn, id, order.status, order.version, to)? else {
            let refusal = match store::find(conn, id)? {
                None => not_found(),
                Some(now) if if_match.is_some() => precondition_failed(now.version),
                Some(_) => ApiError::conflict(
                    "the order changed while this request was processed; read it again",
                ),
            };
            return Ok(Changed::Refused(refusal));
        };
        let changed = Event::new(
            "order.status_changed",
            request.correlation_id(),
            json!({
                "orderId": updated.id,
                "userId": updated.user_id,
                "from": order.status,
                "to": updated.status,
                "currency": updated.currency,
                "total": updated.total,
            }),
        );
        events::enqueue(conn, &settings.events, &changed)?;
        event = Some(changed);
        Ok(Changed::Done(updated))
    })
    .inspect_err(|_| record_business("order_status_change", "failure"))?;
    match outcome {
        Changed::Done(order) => {
            events::publish_after_commit(conn, &settings.events, event.as_slice());
            record_business("order_status_change", "success");
            Ok(ApiResponse::json(200, &order.view())?.with_header("etag", etag(order.version)))
        }
        Changed::Refused(refusal) => {
            let outcome = match refusal.status {
                403 => "forbidden",
                404 => "not_found",
                412 => "precondition_failed",
                _ => "conflict",
            };
            record_business("order_status_change", outcome);
            Err(refusal)
        }
    }
}
