//! Reading a response body under a size limit: into memory, or streamed to
//! a file chunk by chunk.
//!
//! The stream read here is awc's payload, already decoded: awc asks for
//! `br, gzip, deflate, zstd` (its `Accept-Encoding`, set on every request
//! whose decompression is left on, whatever the client's default headers)
//! and inflates by `Content-Encoding`, so the limit counts decoded bytes and
//! a small compressed body that inflates past it is refused as soon as it
//! does. The stream is dropped at the first byte over the limit, which
//! drops the connection: the rest is never read.

use std::path::{Path, PathBuf};

use awc::error::PayloadError;
use awc::http::header::{self, HeaderMap};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::error::ErrorKind;

/// A body read to its end.
#[derive(Debug, Default)]
pub(crate) struct Body {
    /// The bytes; empty when the body went to a file.
    pub bytes: Bytes,
    /// How many (decoded) bytes there were, in memory or in the file.
    pub len: u64,
    /// The file the body was streamed to.
    pub path: Option<PathBuf>,
}

/// Reads `stream` to its end, refusing more than `limit` bytes with
/// [`ErrorKind::BodyTooLarge`]. A response that declares a `Content-Length`
/// over the limit, with no content coding, is refused before anything is
/// read, unless it has no body (`bodyless`: an answer to `HEAD`, a 1xx,
/// 204 or 304).
///
/// With `to`, each chunk is written to that file as it arrives (created or
/// truncated) and never kept; a failure to write is
/// [`ErrorKind::BodyWrite`]. If reading fails, or the future is dropped (on
/// timeout), the partial file is removed.
pub(crate) async fn read<S>(
    stream: S,
    headers: &HeaderMap,
    bodyless: bool,
    limit: usize,
    to: Option<&Path>,
) -> Result<Body, ErrorKind>
where
    S: Stream<Item = Result<Bytes, PayloadError>>,
{
    let declared = declared_len(headers);
    if !bodyless && declared.is_some_and(|len| len > limit as u64) {
        return Err(ErrorKind::BodyTooLarge { limit });
    }
    let stream = std::pin::pin!(stream);
    match to {
        None => {
            let capacity = declared.unwrap_or(0).min(limit as u64) as usize;
            read_to_memory(stream, limit, capacity).await
        }
        Some(path) => read_to_file(stream, limit, path).await,
    }
}

/// The `Content-Length` when it counts the decoded body (no content coding
/// other than `identity`).
fn declared_len(headers: &HeaderMap) -> Option<u64> {
    let coded = headers
        .get_all(header::CONTENT_ENCODING)
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if coded {
        return None;
    }
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn read_to_memory<S>(
    mut stream: std::pin::Pin<&mut S>,
    limit: usize,
    capacity: usize,
) -> Result<Body, ErrorKind>
where
    S: Stream<Item = Result<Bytes, PayloadError>>,
{
    let mut buf = BytesMut::with_capacity(capacity);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(payload_error)?;
        if buf.len() + chunk.len() > limit {
            return Err(ErrorKind::BodyTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Body {
        len: buf.len() as u64,
        bytes: buf.freeze(),
        path: None,
    })
}

async fn read_to_file<S>(
    mut stream: std::pin::Pin<&mut S>,
    limit: usize,
    path: &Path,
) -> Result<Body, ErrorKind>
where
    S: Stream<Item = Result<Bytes, PayloadError>>,
{
    let write_error = |e: std::io::Error| ErrorKind::BodyWrite {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut file = tokio::fs::File::create(path).await.map_err(write_error)?;
    let mut partial = Partial(Some(path));
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(payload_error)?;
        len += chunk.len() as u64;
        if len > limit as u64 {
            return Err(ErrorKind::BodyTooLarge { limit });
        }
        file.write_all(&chunk).await.map_err(write_error)?;
    }
    // Waits for the last write, whose error would otherwise be lost.
    file.flush().await.map_err(write_error)?;
    partial.0 = None;
    Ok(Body {
        bytes: Bytes::new(),
        len,
        path: Some(path.to_path_buf()),
    })
}

/// Removes a file left incomplete, when dropped before being disarmed.
struct Partial<'a>(Option<&'a Path>);

impl Drop for Partial<'_> {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn payload_error(e: PayloadError) -> ErrorKind {
    ErrorKind::Body(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use awc::http::header::HeaderValue;
    use futures_util::stream;

    use super::*;

    fn chunks(
        n: usize,
        size: usize,
        polled: &AtomicUsize,
    ) -> impl Stream<Item = Result<Bytes, PayloadError>> + '_ {
        stream::iter(0..n).map(move |i| {
            polled.fetch_add(1, Ordering::SeqCst);
            Ok(Bytes::from(vec![i as u8; size]))
        })
    }

    fn with_length(len: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        h
    }

    #[actix_rt::test]
    async fn reads_up_to_the_limit_and_stops_at_the_first_chunk_over() {
        let polled = AtomicUsize::new(0);
        let body = read(chunks(4, 10, &polled), &HeaderMap::new(), false, 40, None)
            .await
            .unwrap();
        assert_eq!((body.len, body.bytes.len(), body.path), (40, 40, None));

        let polled = AtomicUsize::new(0);
        let err = read(chunks(100, 10, &polled), &HeaderMap::new(), false, 35, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ErrorKind::BodyTooLarge { limit: 35 }),
            "{err}"
        );
        assert_eq!(polled.load(Ordering::SeqCst), 4);
    }

    #[actix_rt::test]
    async fn a_declared_length_over_the_limit_is_refused_unread() {
        let polled = AtomicUsize::new(0);
        let err = read(chunks(1, 10, &polled), &with_length(1000), false, 100, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ErrorKind::BodyTooLarge { limit: 100 }),
            "{err}"
        );
        assert_eq!(polled.load(Ordering::SeqCst), 0);

        // No body to come (HEAD, 304): the length is not the body's.
        let body = read(chunks(0, 0, &polled), &with_length(1000), true, 100, None)
            .await
            .unwrap();
        assert_eq!(body.len, 0);

        // A coded body's length is the compressed one: read and count.
        let mut coded = with_length(1000);
        coded.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let body = read(chunks(2, 10, &polled), &coded, false, 100, None)
            .await
            .unwrap();
        assert_eq!(body.len, 20);
    }

    #[actix_rt::test]
    async fn streams_to_a_file_and_removes_it_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body");
        let polled = AtomicUsize::new(0);
        let body = read(
            chunks(3, 5, &polled),
            &HeaderMap::new(),
            false,
            15,
            Some(&path),
        )
        .await
        .unwrap();
        assert_eq!((body.len, body.bytes.len()), (15, 0));
        assert_eq!(body.path.as_deref(), Some(path.as_path()));
        let mut expected = vec![0u8; 5];
        expected.extend([1; 5]);
        expected.extend([2; 5]);
        assert_eq!(std::fs::read(&path).unwrap(), expected);

        let err = read(
            chunks(4, 5, &polled),
            &HeaderMap::new(),
            false,
            15,
            Some(&path),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ErrorKind::BodyTooLarge { .. }), "{err}");
        assert!(!path.exists(), "the partial file was left behind");

        let missing = dir.path().join("no/such/dir/body");
        let err = read(
            chunks(1, 5, &polled),
            &HeaderMap::new(),
            false,
            15,
            Some(&missing),
        )
        .await
        .unwrap_err();
        let ErrorKind::BodyWrite { path, reason } = &err else {
            panic!("not a write error: {err}");
        };
        assert_eq!(path, &missing);
        assert!(!reason.is_empty());
        assert!(err.to_string().contains("no/such/dir/body"), "{err}");
    }
}
