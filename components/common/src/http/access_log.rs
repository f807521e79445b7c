//! What a served request leaves behind: one structured log line
//! ([`crate::telemetry::logging`]) and, unless it was a liveness answer,
//! the request metrics ([`crate::telemetry::metrics`]; best-effort, bounded
//! by the host, never failing the request).

use crate::http::request::RequestHead;
use crate::http::response::Finished;
use crate::telemetry::logging::{self, RequestLog};
use std::time::Instant;

/// Logs the request and records its metrics (`record_metrics`: not for
/// a liveness answer, which touches no store).
pub(crate) fn record(
    component: &'static str,
    head: &RequestHead,
    route: &'static str,
    user_id: Option<&str>,
    finished: &mut Finished,
    started: Instant,
    record_metrics: bool,
) {
    let status = finished.status;
    let duration = started.elapsed().as_secs_f64();
    logging::emit(&RequestLog {
        ts: crate::util::time::rfc3339_millis(crate::util::time::now_millis()),
        level: if status >= 500 { "error" } else { "info" },
        msg: "request",
        component,
        method: &head.method_name,
        route,
        status,
        duration_ms: (duration * 1e6).round() / 1e3,
        correlation_id: &head.correlation_id,
        user_id,
        client: &head.client,
        error_code: finished.error_code,
        error: finished.error_cause.take(),
    });
    if record_metrics {
        crate::telemetry::metrics::record_request(
            component,
            head.method.as_str(),
            route,
            status,
            duration,
        );
    }
}
