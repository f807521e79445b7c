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

use crate::http::host_response::host_error;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
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
        let req = req
            .map(|inner| Bounded::new(inner, max, Over::Request(tripwire.clone())).boxed_unsync());
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
        response.map(|inner| Bounded::new(inner, max, Over::Response { component }).boxed_unsync())
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

/// What a [`Bounded`] body does once more than its limit came through.
enum Over {
    /// A request body: trip the request's tripwire (the host answers 413),
    /// drain what is left in the background, and fail the guest's read.
    Request(Tripwire),
    /// A response body: log it and end the body in an error (the client sees
    /// a cut-off response; its head is already sent).
    Response { component: String },
}

/// A body that fails once more than `max` bytes came through it.
struct Bounded {
    /// `None` once a request body went over (the rest is being drained).
    inner: Option<WasiBody>,
    seen: u64,
    max: u64,
    over: Over,
    /// Over the limit: the body has ended.
    done: bool,
}

impl Bounded {
    fn new(inner: WasiBody, max: u64, over: Over) -> Self {
        Bounded {
            inner: Some(inner),
            seen: 0,
            max,
            over,
            done: false,
        }
    }

    /// The error that ends the body, after doing what `over` says.
    fn went_over(&mut self) -> HttpError {
        self.done = true;
        match &self.over {
            Over::Request(tripwire) => {
                tripwire.trip();
                if let Some(rest) = self.inner.take() {
                    drain(rest);
                }
                HttpError::HttpRequestBodySize(Some(self.seen))
            }
            Over::Response { component } => {
                tracing::error!(
                    "component `{component}`: response body cut off: over the edge platform's limit of {} MiB ({} bytes)",
                    self.max >> 20,
                    self.max
                );
                HttpError::HttpResponseBodySize(Some(self.seen))
            }
        }
    }
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut().filter(|_| !this.done) else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
            this.seen += data.len() as u64;
            if this.seen > this.max {
                return Poll::Ready(Some(Err(this.went_over())));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(b) if !self.done => b.size_hint(),
            _ => SizeHint::with_exact(0),
        }
    }
}
