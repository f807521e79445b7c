//! The edge platform's bound on request and response bodies
//! ([`EdgeLimits::BODY_BYTES`](super::EdgeLimits::BODY_BYTES) each), applied
//! by the host to requests from clients (not to service chaining inside
//! the app).
//!
//! - A request whose `Content-Length` is over the limit is answered 413 by
//!   the host before any component runs. A body that streams past it (no
//!   or a false length) fails for the component at the limit, and the host
//!   answers 413 in place of whatever the component then returns (if its
//!   response had not started by then).
//! - A response that declares a length over the limit is replaced by a 500
//!   from the host; one that streams past it is cut off there (the client
//!   sees the connection end mid-body). Both are logged as errors naming
//!   the component and the limit.
//!
//! A refused request body is read on and thrown away (bounded) so that a
//! client still sending gets the 413 rather than a reset connection.

use crate::http::trigger::host_error;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// How much of a refused request body is read and thrown away at most,
/// and for how long, before the connection is simply closed.
const DRAIN_BYTES: u64 = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The body limit of a host: `None` leaves bodies as they are.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    max: Option<u64>,
}

/// Set when a request body streamed past the limit.
#[derive(Debug, Clone, Default)]
pub struct Tripwire(Arc<AtomicBool>);

impl Tripwire {
    fn trip(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    fn tripped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

fn declared_length<T>(headers: &http::HeaderMap<T>) -> Option<u64>
where
    T: AsRef<[u8]>,
{
    let value = headers.get(http::header::CONTENT_LENGTH)?;
    std::str::from_utf8(value.as_ref())
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl BodyLimit {
    pub fn new(max: Option<u64>) -> BodyLimit {
        BodyLimit { max }
    }

    /// The request with its body counted, or the host's 413 when its
    /// declared length is already over the limit.
    // Both sides are a request or response head, of a size; once a request.
    #[allow(clippy::result_large_err)]
    pub fn admit(
        &self,
        req: Request<WasiBody>,
    ) -> Result<(Request<WasiBody>, Tripwire), Response<WasiBody>> {
        let tripwire = Tripwire::default();
        let Some(max) = self.max else {
            return Ok((req, tripwire));
        };
        if declared_length(req.headers()).is_some_and(|n| n > max) {
            drain(req.into_body());
            return Err(request_too_large(max));
        }
        let req = req.map(|inner| {
            CountedRequest {
                inner: Some(inner),
                seen: 0,
                max,
                tripwire: tripwire.clone(),
            }
            .boxed_unsync()
        });
        Ok((req, tripwire))
    }

    /// The component's response, bounded; the host's 413 instead if the
    /// request body went over the limit meanwhile.
    pub fn bound(
        &self,
        response: Response<WasiBody>,
        tripwire: &Tripwire,
        component: &str,
    ) -> Response<WasiBody> {
        let Some(max) = self.max else {
            return response;
        };
        if tripwire.tripped() {
            return request_too_large(max);
        }
        if let Some(declared) = declared_length(response.headers()).filter(|n| *n > max) {
            tracing::error!(
                component,
                "response body of {declared} bytes is over the edge platform's limit of {} MiB ({max} bytes); answered 500 instead",
                max >> 20
            );
            return host_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "response_too_large",
                &format!(
                    "the response is over the edge platform's limit of {} MiB",
                    max >> 20
                ),
            );
        }
        let component = component.to_string();
        response.map(|inner| {
            CappedResponse {
                inner,
                sent: 0,
                max,
                component,
                cut: false,
            }
            .boxed_unsync()
        })
    }
}

fn request_too_large(max: u64) -> Response<WasiBody> {
    let mut r = host_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!(
            "the request body exceeds the edge platform's limit of {} MiB ({max} bytes)",
            max >> 20
        ),
    );
    r.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Reads what is left of a refused body in the background, within bounds.
fn drain(mut body: WasiBody) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DRAIN_TIME, async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
                if seen > DRAIN_BYTES {
                    break;
                }
            }
        })
        .await;
    });
}

/// A request body that fails once more than `max` bytes came through.
struct CountedRequest {
    /// `None` once over the limit (the rest is being drained).
    inner: Option<WasiBody>,
    seen: u64,
    max: u64,
    tripwire: Tripwire,
}

impl Body for CountedRequest {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
            this.seen += data.len() as u64;
            if this.seen > this.max {
                this.tripwire.trip();
                if let Some(rest) = this.inner.take() {
                    drain(rest);
                }
                return Poll::Ready(Some(Err(HttpError::HttpRequestBodySize(Some(this.seen)))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

/// A response body that ends in an error once it would pass `max` bytes.
struct CappedResponse {
    inner: WasiBody,
    sent: u64,
    max: u64,
    component: String,
    cut: bool,
}

impl Body for CappedResponse {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        if this.cut {
            return Poll::Ready(None);
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
            this.sent += data.len() as u64;
            if this.sent > this.max {
                this.cut = true;
                tracing::error!(
                    "component `{}`: response body cut off: over the edge platform's limit of {} MiB ({} bytes)",
                    this.component,
                    this.max >> 20,
                    this.max
                );
                return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(this.sent)))));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.cut || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
