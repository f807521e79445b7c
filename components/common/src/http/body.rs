//! Request bodies: whether the pipeline reads a route's body
//! ([`BodyMode`]), and [`BodyStream`], a stream of chunks refused past a
//! byte limit (by `Content-Length` before reading anything, and while
//! streaming for bodies without one) or when it ends short of the length
//! it announced.

use crate::http::error::ApiError;
use futures::{Stream, StreamExt as _};
use spin_sdk::http::IncomingRequest;
use std::pin::Pin;
use std::task::{Context, Poll};

/// How the pipeline treats a route's request body before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Read whole into [`crate::ApiRequest::body`] with the JSON body limit
    /// (`json_body_limit_bytes`). What [`crate::serve`] does for every route.
    Buffered,
    /// Left unread for the handler, which streams it with
    /// [`crate::ApiRequest::body_stream`] under a limit of its own (uploads).
    Streamed,
}

/// Why a streamed body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// More than `limit` bytes arrived (or were announced).
    TooLarge { limit: u64 },
    /// The body ended before the `Content-Length` it announced (the client
    /// went away mid-request).
    Incomplete { expected: u64, received: u64 },
    /// The host reported a failure while reading.
    Read(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(f, "the request body exceeds the limit of {limit} bytes")
            }
            BodyError::Incomplete { expected, received } => write!(
                f,
                "the request body ended after {received} of the {expected} bytes announced by Content-Length"
            ),
            BodyError::Read(why) => write!(f, "the request body could not be read: {why}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        match e {
            BodyError::TooLarge { limit } => ApiError::payload_too_large(limit),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

/// A request body as a stream of chunks that counts what it yields and
/// stops with [`BodyError::TooLarge`] past its limit, or with
/// [`BodyError::Incomplete`] when it ends short of `Content-Length`.
/// Nothing is buffered beyond the chunk the host hands over.
pub struct BodyStream {
    inner: Pin<Box<dyn Stream<Item = Result<Vec<u8>, BodyError>> + Send>>,
    limit: u64,
    declared: Option<u64>,
    received: u64,
    done: bool,
}

impl BodyStream {
    pub(crate) fn new(
        incoming: IncomingRequest,
        content_length: Option<&str>,
        limit: u64,
    ) -> Result<BodyStream, ApiError> {
        let declared = check_content_length(content_length, limit)?;
        let inner = incoming
            .into_body_stream()
            .map(|chunk| chunk.map_err(|e| BodyError::Read(format!("{e:?}"))));
        Ok(BodyStream::from_chunks(inner, declared, limit))
    }

    /// Limits any stream of chunks (`declared`: the announced length).
    pub fn from_chunks(
        chunks: impl Stream<Item = Result<Vec<u8>, BodyError>> + Send + 'static,
        declared: Option<u64>,
        limit: u64,
    ) -> BodyStream {
        BodyStream {
            inner: Box::pin(chunks),
            limit,
            declared,
            received: 0,
            done: false,
        }
    }
}

impl Stream for BodyStream {
    type Item = Result<Vec<u8>, BodyError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        let outcome = match item {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if self.received > self.limit {
                    Some(Err(BodyError::TooLarge { limit: self.limit }))
                } else {
                    return Poll::Ready(Some(Ok(chunk)));
                }
            }
            Some(Err(e)) => Some(Err(e)),
            None => match self.declared {
                Some(expected) if self.received < expected => Some(Err(BodyError::Incomplete {
                    expected,
                    received: self.received,
                })),
                _ => None,
            },
        };
        self.done = true;
        Poll::Ready(outcome)
    }
}

/// The announced body length: 413 above `limit`, 400 when not a number.
fn check_content_length(content_length: Option<&str>, limit: u64) -> Result<Option<u64>, ApiError> {
    let Some(declared) = content_length else {
        return Ok(None);
    };
    match declared.trim().parse::<u64>() {
        Ok(n) if n > limit => Err(ApiError::payload_too_large(limit)),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(ApiError::bad_request("Content-Length is not a number")),
    }
}

/// Reads the body, refusing more than `limit` bytes: by `Content-Length`
/// before reading anything, and while streaming for bodies without one.
pub(crate) async fn read_body(
    incoming: IncomingRequest,
    content_length: Option<&str>,
    limit: u64,
) -> Result<Vec<u8>, ApiError> {
    collect_body(BodyStream::new(incoming, content_length, limit)?).await
}

async fn collect_body(mut stream: BodyStream) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk?);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
        failure: Option<BodyError>,
    ) -> impl Stream<Item = Result<Vec<u8>, BodyError>> + Send + 'static {
        let mut items: Vec<Result<Vec<u8>, BodyError>> =
            parts.iter().map(|p| Ok(p.to_vec())).collect();
        items.extend(failure.map(Err));
        futures::stream::iter(items)
    }

    fn collect(stream: BodyStream) -> Result<Vec<u8>, ApiError> {
        futures::executor::block_on(collect_body(stream))
    }

    #[test]
    fn bodies_are_limited_while_streaming() {
        let ok = BodyStream::from_chunks(chunks(&[b"ab", b"cd"], None), None, 4);
        assert_eq!(collect(ok).unwrap(), b"abcd");
        let big = BodyStream::from_chunks(chunks(&[b"ab", b"cde", b"never"], None), None, 4);
        assert_eq!(collect(big).unwrap_err().status, 413);
        // The stream ends after the refusal.
        let mut big = BodyStream::from_chunks(chunks(&[b"abcde", b"f"], None), None, 4);
        futures::executor::block_on(async {
            assert_eq!(
                big.next().await,
                Some(Err(BodyError::TooLarge { limit: 4 }))
            );
            assert_eq!(big.next().await, None);
        });
    }

    #[test]
    fn short_and_failed_bodies_are_errors() {
        let short = BodyStream::from_chunks(chunks(&[b"ab"], None), Some(3), 10);
        let e = collect(short).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("2 of the 3 bytes"), "{}", e.message);
        let failed = BodyStream::from_chunks(
            chunks(&[b"ab"], Some(BodyError::Read("reset".into()))),
            None,
            10,
        );
        assert_eq!(collect(failed).unwrap_err().status, 400);
    }

    #[test]
    fn content_length_is_checked_before_reading() {
        assert_eq!(check_content_length(None, 5).unwrap(), None);
        assert_eq!(check_content_length(Some(" 5 "), 5).unwrap(), Some(5));
        assert_eq!(check_content_length(Some("6"), 5).unwrap_err().status, 413);
        assert_eq!(check_content_length(Some("x"), 5).unwrap_err().status, 400);
    }
}
