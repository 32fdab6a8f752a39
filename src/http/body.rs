//! Reading a response body under a size limit: into memory, or streamed to
//! a file piece by piece.
//!
//! The stream read here is awc's payload as it came off the wire: awc's own
//! decompression is off, and a coded body (`Content-Encoding`) goes through
//! a [`Decoder`] that hands back at most [`PIECE`] bytes at a time. Each
//! piece is counted against the limit before it is kept, and decoding stops
//! at the first piece over it, so a compression bomb costs the limit plus
//! one piece (and the decoder's window), however far it would inflate. The
//! stream is dropped then, which drops the connection: the rest is never
//! read.

use std::path::{Path, PathBuf};

use awc::error::PayloadError;
use awc::http::header::{self, HeaderMap};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::error::ErrorKind;
use crate::http::decode::{Decoder, PIECE};
use crate::http::stream_dir::StreamDirs;

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

/// What to do with the bytes past the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Refuse the body: [`ErrorKind::BodyTooLarge`].
    Refuse,
    /// Keep the first `limit` bytes and stop reading (robots.txt, whose
    /// standard says to parse a prefix of a large file).
    Truncate,
}

/// Reads `stream` to its end, decoding it as its `Content-Encoding` says
/// and refusing more than `limit` decoded bytes with
/// [`ErrorKind::BodyTooLarge`]. A response that declares a `Content-Length`
/// over the limit, with no content coding, is refused before anything is
/// read, unless it has no body (`bodyless`: an answer to `HEAD`, a 1xx,
/// 204 or 304). A coding that cannot be undone is
/// [`ErrorKind::ContentEncoding`].
///
/// With `to`, each piece is written to that file as it is decoded (created
/// or truncated, once checked again against the stream directories, which
/// refuse it with [`ErrorKind::StreamToRefused`]) and never kept; a failure to write is
/// [`ErrorKind::BodyWrite`]. If reading fails, or the future is dropped (on
/// timeout), the partial file is removed.
pub(crate) async fn read<S>(
    stream: S,
    headers: &HeaderMap,
    bodyless: bool,
    limit: usize,
    to: Option<(&Path, &StreamDirs)>,
) -> Result<Body, ErrorKind>
where
    S: Stream<Item = Result<Bytes, PayloadError>>,
{
    let declared = declared_len(headers);
    if !bodyless && declared.is_some_and(|len| len > limit as u64) {
        return Err(ErrorKind::BodyTooLarge { limit });
    }
    let decoder = if bodyless {
        None
    } else {
        Decoder::for_headers(headers)?
    };
    let mut sink = match to {
        None => {
            let capacity = declared.unwrap_or(0).min(limit as u64) as usize;
            Sink::memory(limit, capacity, Overflow::Refuse)
        }
        Some((path, dirs)) => Sink::file(limit, path, dirs).await?,
    };
    pump(stream, decoder, &mut sink).await?;
    sink.finish().await
}

/// Reads at most `limit` decoded bytes of `stream` into memory, and stops
/// there without an error; returns them, and whether the body went on.
pub(crate) async fn read_prefix<S>(
    stream: S,
    headers: &HeaderMap,
    limit: usize,
) -> Result<(Bytes, bool), ErrorKind>
where
    S: Stream<Item = Result<Bytes, PayloadError>>,
{
    let decoder = Decoder::for_headers(headers)?;
    let mut sink = Sink::memory(limit, 0, Overflow::Truncate);
    pump(stream, decoder, &mut sink).await?;
    let truncated = sink.truncated;
    Ok((sink.finish().await?.bytes, truncated))
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

/// Moves the body from `stream` into `sink`, through `decoder` when it is
/// coded, until the stream ends or the sink is full.
async fn pump<S>(
    stream: S,
    mut decoder: Option<Decoder>,
    sink: &mut Sink<'_>,
) -> Result<(), ErrorKind>
where
    S: Stream<Item = Result<Bytes, PayloadError>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut piece = vec![0; if decoder.is_some() { PIECE } else { 0 }];
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(payload_error)?;
        let Some(decoder) = decoder.as_mut() else {
            if !sink.put_chunk(chunk).await? {
                return Ok(());
            }
            continue;
        };
        decoder.feed(&chunk);
        if !drain(decoder, &mut piece, sink).await? {
            return Ok(());
        }
    }
    if let Some(decoder) = decoder.as_mut() {
        decoder.end();
        drain(decoder, &mut piece, sink).await?;
    }
    Ok(())
}

/// Hands the sink every piece the decoder has now; false once the sink is
/// full.
async fn drain(
    decoder: &mut Decoder,
    piece: &mut [u8],
    sink: &mut Sink<'_>,
) -> Result<bool, ErrorKind> {
    loop {
        let n = decoder.read(piece)?;
        if n == 0 {
            return Ok(true);
        }
        if !sink.put(&piece[..n]).await? {
            return Ok(false);
        }
    }
}

/// Where the decoded body goes, counted against the limit.
struct Sink<'a> {
    limit: usize,
    overflow: Overflow,
    /// Bytes kept so far.
    len: u64,
    /// Bytes offered, kept or not: what decoding produced.
    offered: u64,
    /// The limit cut the body short (with [`Overflow::Truncate`]).
    truncated: bool,
    out: Out<'a>,
}

enum Out<'a> {
    /// In memory. The first chunk is kept as it came (`held`, no copy)
    /// while it is the whole body; a second chunk copies both into `buf`,
    /// allocated then with room for `capacity` bytes (the declared
    /// length), so each byte is copied once at most.
    Memory {
        held: Bytes,
        buf: BytesMut,
        capacity: usize,
    },
    File {
        file: tokio::fs::File,
        path: &'a Path,
        /// Removes the file unless the body is read to its end.
        partial: Partial<'a>,
    },
}

impl<'a> Sink<'a> {
    fn memory(limit: usize, capacity: usize, overflow: Overflow) -> Self {
        let out = Out::Memory {
            held: Bytes::new(),
            buf: BytesMut::new(),
            capacity,
        };
        Sink::new(limit, overflow, out)
    }

    async fn file(limit: usize, path: &'a Path, dirs: &StreamDirs) -> Result<Sink<'a>, ErrorKind> {
        let (dirs, owned) = (dirs.clone(), path.to_path_buf());
        let file = tokio::task::spawn_blocking(move || dirs.open(&owned))
            .await
            .map_err(|e| write_error(path, std::io::Error::other(e)))??;
        let file = tokio::fs::File::from_std(file);
        let partial = Partial(Some(path));
        Ok(Sink::new(
            limit,
            Overflow::Refuse,
            Out::File {
                file,
                path,
                partial,
            },
        ))
    }

    fn new(limit: usize, overflow: Overflow, out: Out<'a>) -> Self {
        Sink {
            limit,
            overflow,
            len: 0,
            offered: 0,
            truncated: false,
            out,
        }
    }

    /// [`Sink::put`] for a chunk the sink may keep as it is: the first
    /// chunk of a body held in memory, when it is within the limit.
    async fn put_chunk(&mut self, chunk: Bytes) -> Result<bool, ErrorKind> {
        let room = (self.limit as u64).saturating_sub(self.len);
        if let Out::Memory { held, buf, .. } = &mut self.out {
            if held.is_empty() && buf.is_empty() && chunk.len() as u64 <= room {
                self.offered += chunk.len() as u64;
                self.len += chunk.len() as u64;
                *held = chunk;
                return Ok(true);
            }
        }
        self.put(&chunk).await
    }

    /// Keeps `bytes`, or refuses them over the limit; false once nothing
    /// more is wanted (truncated at the limit).
    async fn put(&mut self, bytes: &[u8]) -> Result<bool, ErrorKind> {
        self.offered += bytes.len() as u64;
        let room = (self.limit as u64).saturating_sub(self.len) as usize;
        let keep = if bytes.len() <= room {
            bytes
        } else if self.overflow == Overflow::Truncate {
            self.truncated = true;
            &bytes[..room]
        } else {
            return Err(ErrorKind::BodyTooLarge { limit: self.limit });
        };
        self.len += keep.len() as u64;
        match &mut self.out {
            Out::Memory {
                held,
                buf,
                capacity,
            } => {
                if buf.capacity() == 0 {
                    buf.reserve((*capacity).max(held.len() + keep.len()));
                }
                if !held.is_empty() {
                    buf.extend_from_slice(&std::mem::take(held));
                }
                buf.extend_from_slice(keep);
            }
            Out::File { file, path, .. } => file
                .write_all(keep)
                .await
                .map_err(|e| write_error(path, e))?,
        }
        Ok(!self.truncated)
    }

    /// The body, once read to its end.
    async fn finish(self) -> Result<Body, ErrorKind> {
        match self.out {
            Out::Memory { held, buf, .. } => {
                let bytes = if buf.is_empty() { held } else { buf.freeze() };
                Ok(Body {
                    len: bytes.len() as u64,
                    bytes,
                    path: None,
                })
            }
            Out::File {
                mut file,
                path,
                mut partial,
            } => {
                // Waits for the last write, whose error would otherwise be
                // lost.
                file.flush().await.map_err(|e| write_error(path, e))?;
                partial.0 = None;
                Ok(Body {
                    bytes: Bytes::new(),
                    len: self.len,
                    path: Some(path.to_path_buf()),
                })
            }
        }
    }
}

fn write_error(path: &Path, e: std::io::Error) -> ErrorKind {
    ErrorKind::BodyWrite {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
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
    use std::io::Write;
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
    async fn a_body_in_one_chunk_is_kept_without_a_copy_and_more_chunks_are_joined() {
        let chunk = Bytes::from(vec![7u8; 100]);
        let one = stream::iter([Ok(chunk.clone())]);
        let body = read(one, &with_length(100), false, 100, None)
            .await
            .unwrap();
        assert_eq!((body.len, &body.bytes[..]), (100, &chunk[..]));
        assert_eq!(body.bytes.as_ptr(), chunk.as_ptr(), "the chunk was copied");

        // The first chunk, then two more: one body, in order.
        let parts = [&b"ab"[..], b"cde", b"f"].map(|p| Ok(Bytes::from_static(p)));
        let body = read(stream::iter(parts), &HeaderMap::new(), false, 6, None)
            .await
            .unwrap();
        assert_eq!((body.len, &body.bytes[..]), (6, &b"abcdef"[..]));

        // A held first chunk still counts against the limit.
        let parts = [&b"abc"[..], b"def"].map(|p| Ok(Bytes::from_static(p)));
        let err = read(stream::iter(parts), &HeaderMap::new(), false, 5, None)
            .await
            .unwrap_err();
        assert!(matches!(err, ErrorKind::BodyTooLarge { limit: 5 }), "{err}");
        let parts = [&b"abc"[..], b"def"].map(|p| Ok(Bytes::from_static(p)));
        let (bytes, truncated) = read_prefix(stream::iter(parts), &HeaderMap::new(), 5)
            .await
            .unwrap();
        assert_eq!((&bytes[..], truncated), (&b"abcde"[..], true));
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

        // A coded body's length is the compressed one: decoded and counted.
        let mut coded = with_length(1000);
        coded.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let gz = gzip(&[7; 60]);
        let wire = stream::iter([Ok(Bytes::from(gz))]);
        let body = read(wire, &coded, false, 100, None).await.unwrap();
        assert_eq!((body.len, &body.bytes[..]), (60, &[7u8; 60][..]));
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A bomb: `total` bytes of zeros in `coding`, compressed a MiB at a
    /// time as the stream is polled (each poll's chunk is what that MiB
    /// added), so only what the reader takes is ever built; counts polls.
    fn bomb<'a>(
        coding: &'static str,
        total: usize,
        polled: &'a AtomicUsize,
    ) -> impl Stream<Item = Result<Bytes, PayloadError>> + 'a {
        let zeros = vec![0u8; MIB];
        let out = Shared::default();
        let mut encoder: Box<dyn Write> = match coding {
            "gzip" => Box::new(flate2::write::GzEncoder::new(
                out.clone(),
                flate2::Compression::fast(),
            )),
            "br" => Box::new(brotli::CompressorWriter::new(out.clone(), 4096, 1, 22)),
            "zstd" => Box::new(zstd::stream::write::Encoder::new(out.clone(), 1).unwrap()),
            other => panic!("no {other} bomb"),
        };
        stream::iter(0..total / MIB).map(move |_| {
            polled.fetch_add(1, Ordering::SeqCst);
            encoder.write_all(&zeros).unwrap();
            encoder.flush().unwrap();
            Ok(Bytes::from(std::mem::take(&mut *out.0.lock().unwrap())))
        })
    }

    /// A `Write` whose bytes the test takes out as they come.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn coded(coding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(coding).unwrap(),
        );
        h
    }

    const MIB: usize = 1 << 20;

    #[actix_rt::test]
    async fn a_bomb_stops_at_the_limit_having_decoded_at_most_one_piece_more() {
        const LIMIT: usize = 4 * MIB;
        for coding in ["gzip", "br", "zstd"] {
            // 1 GiB of zeros, refused in memory and in a file alike.
            for to_file in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("body");
                let dirs = crate::http::stream_dir::resolve(&[dir.path().to_path_buf()]).unwrap();
                let dirs = StreamDirs::new(&dirs);
                let polled = AtomicUsize::new(0);
                let mut sink = if to_file {
                    Sink::file(LIMIT, &path, &dirs).await.unwrap()
                } else {
                    Sink::memory(LIMIT, 0, Overflow::Refuse)
                };
                let decoder = Decoder::for_headers(&coded(coding)).unwrap();
                let err = pump(bomb(coding, 1 << 30, &polled), decoder, &mut sink)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, ErrorKind::BodyTooLarge { limit: LIMIT }),
                    "{coding}: {err}"
                );
                // What decoding produced: the limit and the one piece that
                // crossed it, nothing more.
                let offered = sink.offered as usize;
                assert!(
                    offered > LIMIT && offered <= LIMIT + PIECE,
                    "{coding}: decoded {offered} bytes at a limit of {LIMIT}"
                );
                // The wire was read no further than the limit needed (one
                // chunk per MiB, and the chunk being decoded).
                let polls = polled.load(Ordering::SeqCst);
                assert!(polls <= LIMIT / MIB + 2, "{coding}: {polls} chunks read");
                drop(sink);
                assert!(!path.exists(), "{coding}: the partial file was left behind");
            }
        }
    }

    #[actix_rt::test]
    async fn a_prefix_read_keeps_the_limit_and_stops() {
        let polled = AtomicUsize::new(0);
        let (bytes, truncated) = read_prefix(bomb("gzip", 1 << 30, &polled), &coded("gzip"), 1000)
            .await
            .unwrap();
        assert_eq!((bytes.len(), truncated), (1000, true));
        assert_eq!(polled.load(Ordering::SeqCst), 1);
        let (bytes, truncated) = read_prefix(chunks(1, 10, &polled), &HeaderMap::new(), 1000)
            .await
            .unwrap();
        assert_eq!((bytes.len(), truncated), (10, false));
    }

    #[actix_rt::test]
    async fn streams_to_a_file_and_removes_it_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = crate::http::stream_dir::resolve(&[dir.path().to_path_buf()]).unwrap();
        let dirs = StreamDirs::new(&dirs);
        let path = dir.path().join("body");
        let polled = AtomicUsize::new(0);
        let body = read(
            chunks(3, 5, &polled),
            &HeaderMap::new(),
            false,
            15,
            Some((&path, &dirs)),
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
            Some((&path, &dirs)),
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
            Some((&missing, &dirs)),
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
