//! Content decoding in bounded pieces: what `http::body` runs a coded body
//! through, so a small body that inflates to gigabytes costs no more than
//! the body limit.
//!
//! awc's own decompression is off (it inflates a whole network chunk before
//! anyone can count the result); requests ask for [`ACCEPT_ENCODING`]
//! themselves, and a [`Decoder`] built from the answer's
//! `Content-Encoding` turns the wire bytes into the body one piece of at
//! most the caller's buffer at a time. The caller counts each piece against
//! its limit and stops calling at the limit, so decoding stops there too:
//! memory and work stay within the limit plus one piece and the decoders'
//! windows (32 KiB for gzip and deflate, at most 16 MiB for br, at most
//! 8 MiB for zstd, whose larger windows are refused as the `zstd` content
//! coding allows).
//!
//! The rules:
//! - `gzip` (and `x-gzip`), `deflate` (the zlib format as HTTP says, or raw
//!   deflate as some servers send, told apart by the zlib header), `br` and
//!   `zstd` are decoded; `identity` is no coding.
//! - Codings applied one after the other (`Content-Encoding: gzip, br`) are
//!   undone in reverse order, at most [`MAX_CODINGS`] of them.
//! - Any other coding, more codings than that, a corrupt stream or one cut
//!   short is [`ErrorKind::ContentEncoding`]: the bytes are never handed on
//!   as if they were the body.
//! - Concatenated gzip members and zstd frames are decoded one after the
//!   other, as their formats allow; an empty body is empty whatever its
//!   coding (answers to `HEAD`, or a `204`).

use std::io;

use awc::http::header::{self, HeaderMap};
use compression_codecs::core::util::{PartialBuffer, WriteBuffer};
use compression_codecs::zstd::params::DParameter;
use compression_codecs::{
    BrotliDecoder, DecodeV2, DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder,
};

use crate::error::ErrorKind;

/// The codings every request asks for, unless it sets its own
/// `Accept-Encoding`: those a [`Decoder`] decodes.
pub(crate) const ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

/// The most codings one body may stack: each adds its decoder's window
/// (up to 16 MiB for br), so an endless list must not be honoured.
pub(crate) const MAX_CODINGS: usize = 2;

/// The largest piece one stage hands the next: the bound on what decoding
/// produces between two checks of the limit.
pub(crate) const PIECE: usize = 32 << 10;

/// The largest zstd window accepted (8 MiB, 2^23), as the `zstd` content
/// coding requires of encoders: a frame declaring more is refused rather
/// than allocated.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// A coding this module decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    fn parse(token: &str) -> Option<Option<Coding>> {
        let t = token.trim().to_ascii_lowercase();
        Some(Some(match t.as_str() {
            "" | "identity" => return Some(None),
            "gzip" | "x-gzip" => Coding::Gzip,
            "deflate" => Coding::Deflate,
            "br" => Coding::Brotli,
            "zstd" => Coding::Zstd,
            _ => return None,
        }))
    }

    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// Where a stage stands in its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Decoding; `full`: the last call filled its output, so the codec may
    /// hold more that it has not written yet.
    Decoding { full: bool },
    /// The stream (or member) ended, or its input did: the codec writes
    /// what it still holds and checks the stream is whole.
    Flushing,
    /// A member ended: another may follow in the same input.
    Member,
    /// Over: no input is left and none will come.
    Ended,
}

/// One coding's decoder and the input it has not consumed yet.
struct Stage {
    coding: Coding,
    /// `None` for `deflate` until its first two bytes say zlib or raw.
    codec: Option<Box<dyn DecodeV2 + Send>>,
    state: State,
    /// The previous stage's output (or the wire bytes, for the first).
    input: Vec<u8>,
    /// How much of `input` is consumed.
    pos: usize,
    /// Whether any input ever came: an empty body is empty, not cut short.
    fed: bool,
}

/// Decodes one body's codings, a bounded piece at a time: [`feed`] it each
/// wire chunk and [`read`] until it returns 0, then [`end`] it and
/// [`read`] the rest until 0.
///
/// [`feed`]: Decoder::feed
/// [`read`]: Decoder::read
/// [`end`]: Decoder::end
pub(crate) struct Decoder {
    /// In decoding order: the first reads the wire, each later one the
    /// output of the one before.
    stages: Vec<Stage>,
    /// No more wire bytes will come.
    eof: bool,
}

impl Decoder {
    /// The decoder for the codings `headers` name, or `None` when there is
    /// none (or only `identity`); unknown codings or too many are
    /// [`ErrorKind::ContentEncoding`].
    pub(crate) fn for_headers(headers: &HeaderMap) -> Result<Option<Decoder>, ErrorKind> {
        let mut codings = Vec::new();
        for value in headers.get_all(header::CONTENT_ENCODING) {
            let text = String::from_utf8_lossy(value.as_bytes());
            for token in text.split(',') {
                match Coding::parse(token) {
                    Some(Some(coding)) => codings.push(coding),
                    Some(None) => {}
                    None => return Err(refused(token.trim(), "not a coding the crawler decodes")),
                }
            }
        }
        if codings.len() > MAX_CODINGS {
            let all: Vec<&str> = codings.iter().map(|c| c.name()).collect();
            let reason = format!("more than {MAX_CODINGS} codings stacked");
            return Err(refused(&all.join(", "), &reason));
        }
        if codings.is_empty() {
            return Ok(None);
        }
        // Applied left to right, so undone right to left.
        let stages = codings.into_iter().rev().map(Stage::new).collect();
        Ok(Some(Decoder { stages, eof: false }))
    }

    /// A decoder of one gzip stream (a body whose bytes are gzip whatever
    /// its headers say: a `.xml.gz` sitemap served as a file).
    pub(crate) fn gzip() -> Decoder {
        Decoder {
            stages: vec![Stage::new(Coding::Gzip)],
            eof: false,
        }
    }

    /// Hands over the next wire chunk, once [`read`](Self::read) has
    /// returned 0 (what it left unread is kept: a few bytes a codec waits
    /// to see whole).
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let first = &mut self.stages[0];
        first.input.drain(..first.pos);
        first.input.extend_from_slice(chunk);
        first.pos = 0;
        first.fed |= !chunk.is_empty();
    }

    /// Says no more wire bytes will come.
    pub(crate) fn end(&mut self) {
        self.eof = true;
    }

    /// Decodes into `out`; returns how many bytes were written (at most
    /// `out.len()`). 0 means the input fed so far is used up; after
    /// [`end`](Self::end), that the body is complete (a stream cut short is
    /// an error then).
    pub(crate) fn read(&mut self, out: &mut [u8]) -> Result<usize, ErrorKind> {
        let mut buf = WriteBuffer::new_initialized(out);
        fill(&mut self.stages, self.eof, &mut buf)?;
        let n = buf.written_len();
        if n == 0 && self.eof {
            if let Some(stage) = self.stages.iter().find(|s| s.state != State::Ended) {
                return Err(refused(stage.coding.name(), "the stream is cut short"));
            }
        }
        Ok(n)
    }
}

/// Fills `out` from the last of `stages`, refilling its input from the ones
/// before as it runs dry; stops when `out` is full or nothing moves.
fn fill(stages: &mut [Stage], eof: bool, out: &mut WriteBuffer<'_>) -> Result<(), ErrorKind> {
    let (last, before) = stages.split_last_mut().expect("a decoder has a stage");
    loop {
        let mut refilled = false;
        // Refilled when used up, or down to one byte (the deflate sniff
        // needs two): what is left moves to the front.
        if last.pos + 1 >= last.input.len() && !before.is_empty() {
            last.input.drain(..last.pos);
            last.pos = 0;
            let kept = last.input.len();
            last.input.resize(kept + PIECE, 0);
            let mut piece = WriteBuffer::new_initialized(&mut last.input[kept..]);
            fill(before, eof, &mut piece)?;
            let n = piece.written_len();
            last.input.truncate(kept + n);
            last.fed |= n > 0;
            refilled = n > 0;
        }
        let upstream_over = match before.last() {
            None => eof,
            Some(prev) => eof && prev.state == State::Ended,
        };
        let moved = last.step(upstream_over && last.pos == last.input.len(), out)?;
        if out.has_no_spare_space() || !(moved || refilled) {
            return Ok(());
        }
    }
}

impl Stage {
    fn new(coding: Coding) -> Stage {
        let codec: Option<Box<dyn DecodeV2 + Send>> = match coding {
            Coding::Gzip => Some(Box::new(GzipDecoder::new())),
            Coding::Deflate => None,
            Coding::Brotli => Some(Box::new(BrotliDecoder::new())),
            Coding::Zstd => Some(Box::new(ZstdDecoder::new_with_params(&[
                DParameter::window_log_max(ZSTD_WINDOW_LOG_MAX),
            ]))),
        };
        Stage {
            coding,
            codec,
            state: State::Decoding { full: false },
            input: Vec::new(),
            pos: 0,
            fed: false,
        }
    }

    /// One move of the stage's stream; `eof`: its input is all here.
    /// Returns whether anything moved (input consumed, output written, a
    /// state left).
    fn step(&mut self, eof: bool, out: &mut WriteBuffer<'_>) -> Result<bool, ErrorKind> {
        if !self.fed {
            // Nothing ever came: an empty body, or not yet.
            if eof && self.state != State::Ended {
                self.state = State::Ended;
                return Ok(true);
            }
            return Ok(false);
        }
        if self.codec.is_none() && !self.sniff_deflate(eof) {
            return Ok(false);
        }
        let name = self.coding.name();
        let corrupt = |e: io::Error| refused(name, &e.to_string());
        let codec = self.codec.as_mut().expect("chosen above");
        let mut input = PartialBuffer::new(&self.input[self.pos..]);
        let written = out.written_len();
        let was = self.state;
        match self.state {
            State::Decoding { full } if input.unwritten().is_empty() => {
                if full {
                    // Drains what the codec still holds; with nothing held
                    // some codecs answer an error that means only that.
                    let _ = codec.decode(&mut input, out);
                    self.state = State::Decoding {
                        full: out.has_no_spare_space(),
                    };
                } else if eof {
                    self.state = State::Flushing;
                }
            }
            State::Decoding { .. } => {
                let ended = codec.decode(&mut input, out).map_err(corrupt)?;
                self.state = if ended {
                    State::Flushing
                } else {
                    State::Decoding {
                        full: out.has_no_spare_space(),
                    }
                };
            }
            State::Flushing => {
                if codec.finish(out).map_err(corrupt)? {
                    self.state = State::Member;
                }
            }
            State::Member if !input.unwritten().is_empty() => {
                codec.reinit().map_err(corrupt)?;
                self.state = State::Decoding { full: false };
            }
            State::Member if eof => self.state = State::Ended,
            State::Member | State::Ended => {}
        }
        let consumed = input.written_len();
        self.pos += consumed;
        Ok(consumed > 0 || out.written_len() > written || self.state != was)
    }

    /// Chooses zlib or raw deflate from the first two bytes (a zlib header
    /// names method 8 and is a multiple of 31); false while they are not
    /// all here.
    fn sniff_deflate(&mut self, eof: bool) -> bool {
        let head = &self.input[self.pos..];
        if head.len() < 2 && !eof {
            return false;
        }
        let zlib = head.len() >= 2
            && head[0] & 0x0f == 8
            && head[0] >> 4 <= 7
            && (u16::from(head[0]) << 8 | u16::from(head[1])) % 31 == 0;
        self.codec = Some(if zlib {
            Box::new(ZlibDecoder::new())
        } else {
            Box::new(DeflateDecoder::new())
        });
        true
    }
}

fn refused(coding: &str, reason: &str) -> ErrorKind {
    ErrorKind::ContentEncoding {
        coding: coding.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use awc::http::header::HeaderValue;

    use super::*;

    fn headers(coding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(coding).unwrap(),
        );
        h
    }

    /// Decodes `wire` fed `chunk` bytes at a time into pieces of `out`
    /// bytes.
    fn decode(coding: &str, wire: &[u8], chunk: usize, out: usize) -> Result<Vec<u8>, ErrorKind> {
        let mut d = Decoder::for_headers(&headers(coding))?.expect("a coding");
        let mut body = Vec::new();
        let mut piece = vec![0; out];
        let mut drain = |d: &mut Decoder| -> Result<(), ErrorKind> {
            loop {
                let n = d.read(&mut piece)?;
                if n == 0 {
                    return Ok(());
                }
                assert!(n <= out);
                body.extend_from_slice(&piece[..n]);
            }
        };
        for part in wire.chunks(chunk.max(1)) {
            d.feed(part);
            drain(&mut d)?;
        }
        d.end();
        drain(&mut d)?;
        Ok(body)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn br(data: &[u8]) -> Vec<u8> {
        let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        e.write_all(data).unwrap();
        e.into_inner()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::encode_all(data, 3).unwrap()
    }

    /// Text that compresses but is not one repeated byte.
    fn page() -> Vec<u8> {
        (0..20_000u32)
            .flat_map(|i| format!("line {} of the page\n", i % 977).into_bytes())
            .collect()
    }

    #[test]
    fn every_coding_decodes_whatever_the_chunk_and_piece_sizes() {
        let page = page();
        let cases: [(&str, Vec<u8>); 6] = [
            ("gzip", gzip(&page)),
            ("x-gzip", gzip(&page)),
            ("deflate", zlib(&page)),
            ("deflate", raw_deflate(&page)),
            ("br", br(&page)),
            ("zstd", zstd(&page)),
        ];
        for (coding, wire) in &cases {
            for (chunk, out) in [(1, 7), (3, PIECE), (4096, 100), (wire.len(), PIECE)] {
                let body = decode(coding, wire, chunk, out)
                    .unwrap_or_else(|e| panic!("{coding} {chunk}/{out}: {e}"));
                assert!(body == page, "{coding} {chunk}/{out}: {} bytes", body.len());
            }
        }
    }

    #[test]
    fn stacked_codings_are_undone_in_reverse_and_members_follow_each_other() {
        let page = page();
        // gzip first, then br over it.
        let wire = br(&gzip(&page));
        for (chunk, out) in [(1, 5), (1000, PIECE)] {
            assert!(decode("gzip, br", &wire, chunk, out).unwrap() == page);
        }
        // Two header lines say the same as one list.
        let mut h = headers("gzip");
        h.append(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity, br"),
        );
        let mut d = Decoder::for_headers(&h).unwrap().unwrap();
        d.feed(&wire);
        let mut out = vec![0; page.len() + 1];
        let mut n = 0;
        loop {
            let got = d.read(&mut out[n..]).unwrap();
            if got == 0 {
                break;
            }
            n += got;
        }
        assert!(out[..n] == page[..]);
        // Concatenated gzip members and zstd frames make one body.
        let mut two = gzip(b"first ");
        two.extend(gzip(b"second"));
        assert_eq!(decode("gzip", &two, 5, 3).unwrap(), b"first second");
        let mut two = zstd(b"first ");
        two.extend(zstd(b"second"));
        assert_eq!(decode("zstd", &two, 5, 3).unwrap(), b"first second");
    }

    #[test]
    fn identity_is_no_coding_and_an_empty_body_is_empty() {
        assert!(Decoder::for_headers(&HeaderMap::new()).unwrap().is_none());
        assert!(Decoder::for_headers(&headers("identity"))
            .unwrap()
            .is_none());
        for coding in ["gzip", "deflate", "br", "zstd", "gzip, br"] {
            assert_eq!(decode(coding, b"", 1, 10).unwrap(), b"", "{coding}");
        }
    }

    #[test]
    fn unknown_stacked_corrupt_and_cut_streams_are_clear_errors() {
        let refused = |r: Result<_, ErrorKind>| match r {
            Err(ErrorKind::ContentEncoding { coding, reason }) => (coding, reason),
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("accepted"),
        };
        let (coding, _) = refused(Decoder::for_headers(&headers("compress")).map(|_| ()));
        assert_eq!(coding, "compress");
        let (coding, reason) =
            refused(Decoder::for_headers(&headers("gzip, br, zstd")).map(|_| ()));
        assert_eq!(coding, "gzip, br, zstd");
        assert!(reason.contains("more than 2"), "{reason}");

        let page = page();
        // Corrupt in the middle: gzip's checksum tells (br and zstd as
        // sent here carry none, and may decode to other bytes).
        let mut bad = gzip(&page);
        let mid = bad.len() / 2;
        bad[mid..mid + 8].copy_from_slice(&[0xff; 8]);
        let (named, _) = refused(decode("gzip", &bad, 100, PIECE).map(|_| ()));
        assert_eq!(named, "gzip");
        for (coding, wire) in [
            ("gzip", gzip(&page)),
            ("br", br(&page)),
            ("zstd", zstd(&page)),
        ] {
            // Cut short.
            let cut = &wire[..wire.len() / 2];
            let (named, reason) = refused(decode(coding, cut, 100, PIECE).map(|_| ()));
            assert_eq!(named, coding);
            assert!(!reason.is_empty());
            // Not a stream of that coding at all.
            let (named, _) = refused(decode(coding, b"<html>plain</html>", 100, PIECE).map(|_| ()));
            assert_eq!(named, coding);
            // Garbage after the end.
            let mut tail = wire.clone();
            tail.extend_from_slice(b"garbage after the stream");
            refused(decode(coding, &tail, 100, PIECE).map(|_| ()));
        }
    }

    #[test]
    fn a_zstd_window_over_8_mib_is_refused_not_allocated() {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        e.set_parameter(zstd::stream::raw::CParameter::WindowLog(27))
            .unwrap();
        e.include_contentsize(false).unwrap();
        e.write_all(&page()).unwrap();
        let wire = e.finish().unwrap();
        let Err(ErrorKind::ContentEncoding { coding, .. }) = decode("zstd", &wire, 4096, PIECE)
        else {
            panic!("a 128 MiB window was accepted");
        };
        assert_eq!(coding, "zstd");
    }
}
