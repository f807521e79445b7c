//! The notifications routes. Notifications are written by the
//! `order-events` component (one per handled event) into the
//! `notifications` table; this component serves them to their owner.

use app_common::http::error::Detail;
use app_common::http::pagination::{Page, decode_cursor, parse_limit};
use app_common::{ApiError, ApiRequest, ApiResponse};
use orders_model::notifications::{self, Notification, NotificationView};
use orders_model::store;

/// `GET /api/notifications?limit&cursor&unread` → the caller's
/// notifications, newest first.
pub fn list(request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    request.reject_unknown_query_params(&["limit", "cursor", "unread"])?;
    let limit = parse_limit(request.query_param("limit").as_deref())?;
    let before = match request.query_param("cursor") {
        Some(cursor) => Some(decode_cursor(&cursor)?),
        None => None,
    };
    let unread_only = match request.query_param("unread").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::validation(vec![Detail::field(
                "unread",
                "invalid_boolean",
                "must be `true` or `false`",
            )]));
        }
    };
    let conn = store::connect()?;
    let rows = notifications::list(
        &conn,
        &caller.user_id,
        unread_only,
        before.as_deref(),
        limit + 1,
    )?;
    let views: Vec<NotificationView> = rows.iter().map(Notification::view).collect();
    ApiResponse::json(200, &Page::from_rows(views, limit, |v| v.id.clone()))
}

/// `POST /api/notifications/:id/read` → the notification, marked read
/// (reading it again keeps the first time). Only its owner finds it.
pub fn mark_read(request: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let caller = request.authenticate()?;
    let id = request.id_param("a notification")?;
    let conn = store::connect()?;
    let notification = notifications::mark_read(&conn, id, &caller.user_id)?
        .ok_or_else(|| ApiError::not_found("no notification has this id"))?;
    ApiResponse::json(200, &notification.view())
}
