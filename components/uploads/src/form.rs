//! Reading an upload request's body into files: `multipart/form-data` with
//! up to [`MAX_FILES`] parts named `file`, or a raw body that is the file.
//! Where the bytes go is a [`FileSink`], so the reading is tested natively
//! (and fuzzed) against a map, with the body cut into pieces of every size:
//! the answer never depends on how the client's bytes were split.

use crate::rules::{MAX_FILES, MULTIPART_OVERHEAD};
use app_common::ApiError;
use app_common::http::body::{BodyError, BodyStream};
use app_common::http::error::Detail;
use futures::{Stream, StreamExt as _};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Where the files of one request go as they stream in.
pub trait FileSink {
    /// A new file starts; the client calls it `name`.
    fn begin(&mut self, name: Option<String>) -> Result<(), ApiError>;
    /// The next bytes of the current file.
    fn push(&mut self, bytes: &[u8]) -> Result<(), ApiError>;
    /// The current file is complete.
    fn finish(&mut self) -> Result<(), ApiError>;
}

/// The most a form may carry: [`MAX_FILES`] files of `limit` bytes plus
/// the parts' headers and boundaries.
pub fn form_limit(limit: u64) -> u64 {
    (MAX_FILES as u64)
        .saturating_mul(limit)
        .saturating_add(MULTIPART_OVERHEAD)
}

/// A raw body: one file named `name`.
pub async fn read_raw(
    mut body: BodyStream,
    name: Option<String>,
    sink: &mut impl FileSink,
) -> Result<(), ApiError> {
    sink.begin(name)?;
    while let Some(bytes) = body.next().await {
        sink.push(&bytes?)?;
    }
    sink.finish()
}

/// A `multipart/form-data` body with the given `Content-Type`.
pub async fn read_form(
    body: BodyStream,
    content_type: &str,
    sink: &mut impl FileSink,
) -> Result<(), ApiError> {
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::bad_request("a multipart/form-data Content-Type needs a boundary parameter")
    })?;
    let mut form = multer::Multipart::new(EndOnItsOwnLook::new(body), boundary);
    let mut files = 0;
    while let Some(mut field) = form.next_field().await.map_err(form_error)? {
        if field.name() != Some("file") {
            let name: String = field.name().unwrap_or("").chars().take(100).collect();
            return Err(ApiError::validation(vec![Detail::field(
                &name,
                "unknown_field",
                "the only form field accepted is `file`",
            )]));
        }
        files += 1;
        if files > MAX_FILES {
            return Err(ApiError::validation(vec![Detail::field(
                "file",
                "too_many_files",
                format!("at most {MAX_FILES} files per request"),
            )]));
        }
        sink.begin(field.file_name().map(str::to_string))?;
        while let Some(bytes) = field.chunk().await.map_err(form_error)? {
            sink.push(&bytes)?;
        }
        sink.finish()?;
    }
    if files == 0 {
        return Err(ApiError::validation(vec![Detail::field(
            "file",
            "required",
            "the form has no `file` part",
        )]));
    }
    Ok(())
}

/// A stream whose end is never seen in the same look as data before it.
///
/// multer 3.1 looks at the stream twice while it seeks the first boundary,
/// and if the second look drains the stream to its end it reports
/// "incomplete multipart stream" without searching what that look read
/// (rwf2/multer#70, unreleased). A body the host has fully buffered by then
/// hits it: under load, a valid form was refused as malformed. So after
/// data the end waits for a look of its own: the reader is woken and told
/// "not yet" once.
struct EndOnItsOwnLook<S> {
    inner: S,
    after_data: bool,
    ended: bool,
}

impl<S> EndOnItsOwnLook<S> {
    fn new(inner: S) -> Self {
        EndOnItsOwnLook {
            inner,
            after_data: false,
            ended: false,
        }
    }
}

impl<S: Stream + Unpin> Stream for EndOnItsOwnLook<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => {
                self.after_data = true;
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => {
                self.ended = true;
                if std::mem::take(&mut self.after_data) {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                self.after_data = false;
                Poll::Pending
            }
        }
    }
}

/// A failure of the body itself (too large, cut short) keeps its own
/// answer; anything else is a malformed form.
fn form_error(e: multer::Error) -> ApiError {
    if let multer::Error::StreamReadFailed(inner) = &e
        && let Some(body) = inner.downcast_ref::<BodyError>()
    {
        return body.clone().into();
    }
    ApiError::bad_request(format!("the multipart/form-data body is malformed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    /// Files kept in memory; refuses a file whose first byte is `!` (as
    /// the real intake refuses a wrong type at its first bytes).
    #[derive(Default, Debug, PartialEq)]
    struct MemorySink {
        files: Vec<(Option<String>, Vec<u8>)>,
        open: bool,
    }

    impl FileSink for MemorySink {
        fn begin(&mut self, name: Option<String>) -> Result<(), ApiError> {
            assert!(!self.open, "begin while a file is open");
            self.open = true;
            self.files.push((name, Vec::new()));
            Ok(())
        }
        fn push(&mut self, bytes: &[u8]) -> Result<(), ApiError> {
            let file = &mut self.files.last_mut().expect("a file began").1;
            file.extend_from_slice(bytes);
            if file.first() == Some(&b'!') {
                return Err(ApiError::unsupported_media_type(
                    "refused by its first byte",
                ));
            }
            Ok(())
        }
        fn finish(&mut self) -> Result<(), ApiError> {
            assert!(self.open, "finish without begin");
            self.open = false;
            Ok(())
        }
    }

    const TYPE: &str = "multipart/form-data; boundary=XyZ";

    fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (field, file, bytes) in parts {
            body.extend_from_slice(b"--XyZ\r\ncontent-disposition: form-data; name=\"");
            body.extend_from_slice(field.as_bytes());
            body.push(b'"');
            if let Some(f) = file {
                body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
            }
            body.extend_from_slice(b"\r\ncontent-type: application/octet-stream\r\n\r\n");
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\n");
        body
    }

    /// `bytes` as a stream cut at the given piece sizes (cycled).
    fn stream(bytes: &[u8], pieces: &[usize]) -> BodyStream {
        let mut chunks = Vec::new();
        let mut rest = bytes;
        let mut sizes = pieces.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).clamp(1, rest.len());
            chunks.push(Ok(rest[..n].to_vec()));
            rest = &rest[n..];
        }
        let declared = Some(bytes.len() as u64);
        BodyStream::from_chunks(futures::stream::iter(chunks), declared, form_limit(1 << 20))
    }

    /// A stream that is not ready before each chunk (as a network is),
    /// waking its reader at once.
    struct Stuttering<S> {
        inner: S,
        ready: bool,
    }

    impl<S: futures::Stream + Unpin> futures::Stream for Stuttering<S> {
        type Item = S::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<S::Item>> {
            if !self.ready {
                self.ready = true;
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            self.ready = false;
            std::pin::Pin::new(&mut self.inner).poll_next(cx)
        }
    }

    /// What reading `body` yields: the files, or the error's status, code
    /// and message.
    fn outcome(body: &[u8], pieces: &[usize]) -> Result<MemorySink, (u16, String)> {
        let ready = outcome_of(stream(body, pieces));
        let stuttering = outcome_of(BodyStream::from_chunks(
            Stuttering {
                inner: stream(body, pieces),
                ready: false,
            },
            Some(body.len() as u64),
            form_limit(1 << 20),
        ));
        assert_eq!(
            ready, stuttering,
            "a stream that is not always ready reads differently"
        );
        // Not ready at first, then everything at once: the request whose
        // body the host had fully buffered by the second look (issue 11).
        let mut first_look = true;
        let mut everything = futures::stream::iter(vec![Ok(body.to_vec())]);
        let late = outcome_of(BodyStream::from_chunks(
            futures::stream::poll_fn(move |cx| {
                if std::mem::take(&mut first_look) {
                    cx.waker().wake_by_ref();
                    return std::task::Poll::Pending;
                }
                everything.poll_next_unpin(cx)
            }),
            Some(body.len() as u64),
            form_limit(1 << 20),
        ));
        assert_eq!(
            ready, late,
            "a body that arrives all at once, late, reads differently"
        );
        ready
    }

    fn outcome_of(body: BodyStream) -> Result<MemorySink, (u16, String)> {
        let mut sink = MemorySink::default();
        match block_on(read_form(body, TYPE, &mut sink)) {
            Ok(()) => Ok(sink),
            Err(e) => Err((e.status, format!("{} {}", e.code, e.message))),
        }
    }

    fn splits() -> Vec<Vec<usize>> {
        let mut all = vec![vec![1], vec![2], vec![3], vec![7], vec![64], vec![1 << 20]];
        all.push(vec![1, 100, 2, 5000, 3]);
        all.push(vec![5, 1, 1, 17, 4096]);
        all
    }

    #[test]
    fn the_answer_does_not_depend_on_how_the_body_is_split() {
        let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let refused: Vec<u8> = [b"!".as_slice(), &big].concat();
        let cases: Vec<Vec<u8>> = vec![
            form(&[("file", Some("a.bin"), b"hello")]),
            form(&[("file", Some("a.bin"), &big), ("file", None, b"second")]),
            // refused at its first bytes, long before its end
            form(&[("file", Some("x.gif"), &refused)]),
            // a body full of near-boundaries
            form(&[("file", Some("b"), b"--XyZ-\r\n--Xy\r\n\r\n--XyZZ")]),
            form(&[("other", None, b"x")]),
            form(&[]),
            b"--XyZ\r\ncontent-disposition: form-data; name=\"file\"\r\n\r\ncut sho".to_vec(),
            b"no boundary at all".to_vec(),
        ];
        for body in &cases {
            let first = outcome(body, &[1 << 20]);
            for pieces in splits() {
                assert_eq!(
                    outcome(body, &pieces),
                    first,
                    "pieces {pieces:?} of {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(80)])
                );
            }
        }
        let files = outcome(&cases[1], &[3]).unwrap().files;
        assert_eq!(files[0], (Some("a.bin".into()), big.clone()));
        assert_eq!(files[1], (None, b"second".to_vec()));
        assert_eq!(outcome(&cases[2], &[1]).unwrap_err().0, 415);
    }

    #[test]
    fn a_body_cut_short_of_its_length_says_so() {
        let body = form(&[("file", Some("a"), b"hello")]);
        let mut sink = MemorySink::default();
        let short = &body[..body.len() - 4];
        // Declared longer than what arrives.
        let s = BodyStream::from_chunks(
            futures::stream::iter(vec![Ok(short.to_vec())]),
            Some(body.len() as u64),
            1 << 20,
        );
        let e = block_on(read_form(s, TYPE, &mut sink)).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("ended after"), "{}", e.message);
    }

    #[test]
    fn fuzz_the_multipart_reader() {
        // Any bytes, any split: no panic, and the same answer for every split.
        let iterations = std::env::var("FUZZ_ITERATIONS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2_000);
        bolero::check!()
            .with_type::<(Vec<u8>, Vec<u8>)>()
            .with_iterations(iterations)
            .for_each(|(body, pieces)| {
                let pieces: Vec<usize> = pieces.iter().map(|p| usize::from(*p) + 1).collect();
                let pieces = if pieces.is_empty() {
                    vec![1 << 20]
                } else {
                    pieces
                };
                let mut body = body.clone();
                // Half the inputs start like a form, so the fuzzer gets past the preamble.
                if body.first().is_some_and(|b| b % 2 == 0) {
                    body.splice(
                        0..0,
                        b"--XyZ\r\ncontent-disposition: form-data; name=\"file\"\r\n\r\n"
                            .iter()
                            .copied(),
                    );
                }
                assert_eq!(outcome(&body, &pieces), outcome(&body, &[1 << 20]));
            });
    }
}
