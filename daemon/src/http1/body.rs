//! Message bodies: how one is delimited ([`BodyKind`]), decoding it as it
//! arrives ([`BodyDecoder`]: length, chunked with its trailers, or until
//! close) and encoding it for the wire ([`BodyEncoder`]).

use std::io::Write;

use super::head::trim;
use super::HttpError;

/// How a message body is delimited (RFC 9112 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyKind {
    #[default]
    None,
    Length(u64),
    Chunked,
    /// Response only: the body runs until the server closes.
    Close,
}

/// Longest chunk-size line (with extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum ChunkState {
    /// Reading the chunk-size line; bytes of it seen so far.
    Size {
        line: Vec<u8>,
    },
    /// Inside chunk data.
    Data {
        remaining: u64,
    },
    /// Expecting CRLF after chunk data; how many of the 2 bytes seen.
    DataEnd {
        seen: u8,
    },
    /// After the last chunk: trailer lines until an empty line.
    Trailers {
        line: Vec<u8>,
        total: usize,
    },
    Done,
}

/// Decodes a message body incrementally: give it bytes, get body data out.
/// Its state is its own (the chunked one included), so nothing outside
/// can put it in a state the decoder would not reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDecoder(Decoding);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Decoding {
    Length { remaining: u64 },
    Chunked(ChunkState),
    Close,
    Done,
}

impl BodyDecoder {
    pub fn new(kind: BodyKind) -> BodyDecoder {
        BodyDecoder(match kind {
            BodyKind::None | BodyKind::Length(0) => Decoding::Done,
            BodyKind::Length(n) => Decoding::Length { remaining: n },
            BodyKind::Chunked => Decoding::Chunked(ChunkState::Size { line: Vec::new() }),
            BodyKind::Close => Decoding::Close,
        })
    }

    pub fn is_done(&self) -> bool {
        self.0 == Decoding::Done
    }

    /// Consume a prefix of `input`, appending decoded body data to `out`.
    /// Returns how many bytes were consumed; stops at the end of the body,
    /// leaving any following bytes (a pipelined message) unconsumed.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, HttpError> {
        match &mut self.0 {
            Decoding::Done => Ok(0),
            Decoding::Close => {
                out.extend_from_slice(input);
                Ok(input.len())
            }
            Decoding::Length { remaining } => {
                let n = (*remaining).min(input.len() as u64) as usize;
                out.extend_from_slice(&input[..n]);
                *remaining -= n as u64;
                if *remaining == 0 {
                    self.0 = Decoding::Done;
                }
                Ok(n)
            }
            Decoding::Chunked(st) => {
                let n = decode_chunked(st, input, out)?;
                if *st == ChunkState::Done {
                    self.0 = Decoding::Done;
                }
                Ok(n)
            }
        }
    }

    /// The peer closed: fine for a close-delimited body, an error otherwise.
    pub fn on_eof(&mut self) -> Result<(), HttpError> {
        match self.0 {
            Decoding::Close | Decoding::Done => {
                self.0 = Decoding::Done;
                Ok(())
            }
            _ => Err(HttpError::TruncatedBody),
        }
    }
}

fn decode_chunked(
    st: &mut ChunkState,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, HttpError> {
    let mut i = 0;
    while i < input.len() {
        match st {
            ChunkState::Done => break,
            ChunkState::Size { line } => {
                let b = input[i];
                i += 1;
                if b == b'\n' {
                    let l = line
                        .strip_suffix(b"\r")
                        .ok_or(HttpError::BadChunk("bare LF"))?;
                    let size = parse_chunk_size(l)?;
                    *st = if size == 0 {
                        ChunkState::Trailers {
                            line: Vec::new(),
                            total: 0,
                        }
                    } else {
                        ChunkState::Data { remaining: size }
                    };
                } else {
                    if line.last() == Some(&b'\r') {
                        return Err(HttpError::BadChunk("bare CR"));
                    }
                    if line.len() >= MAX_CHUNK_LINE {
                        return Err(HttpError::BadChunk("chunk-size line too long"));
                    }
                    line.push(b);
                }
            }
            ChunkState::Data { remaining } => {
                let n = (*remaining).min((input.len() - i) as u64) as usize;
                out.extend_from_slice(&input[i..i + n]);
                i += n;
                *remaining -= n as u64;
                if *remaining == 0 {
                    *st = ChunkState::DataEnd { seen: 0 };
                }
            }
            ChunkState::DataEnd { seen } => {
                let want = if *seen == 0 { b'\r' } else { b'\n' };
                if input[i] != want {
                    return Err(HttpError::BadChunk("missing CRLF after chunk data"));
                }
                i += 1;
                *seen += 1;
                if *seen == 2 {
                    *st = ChunkState::Size { line: Vec::new() };
                }
            }
            ChunkState::Trailers { line, total } => {
                let b = input[i];
                i += 1;
                *total += 1;
                if *total > MAX_TRAILERS {
                    return Err(HttpError::BadChunk("trailer section too large"));
                }
                if b == b'\n' {
                    let l = line
                        .strip_suffix(b"\r")
                        .ok_or(HttpError::BadChunk("bare LF"))?;
                    if l.is_empty() {
                        *st = ChunkState::Done;
                    } else {
                        if l[0] == b' ' || l[0] == b'\t' || !l.contains(&b':') {
                            return Err(HttpError::BadChunk("malformed trailer field"));
                        }
                        line.clear();
                    }
                } else {
                    if line.last() == Some(&b'\r') {
                        return Err(HttpError::BadChunk("bare CR"));
                    }
                    line.push(b);
                }
            }
        }
    }
    Ok(i)
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    // chunk-size [ chunk-ext ]; extensions are ignored but must not hide CTLs.
    let (size, ext) = match line.iter().position(|&b| b == b';') {
        Some(p) => (&line[..p], &line[p..]),
        None => (line, &line[line.len()..]),
    };
    if ext.iter().any(|&b| b < 0x20 && b != b'\t') {
        return Err(HttpError::BadChunk("control character in chunk extension"));
    }
    let size = trim(size);
    if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(HttpError::BadChunk("invalid chunk size"));
    }
    let s = std::str::from_utf8(size).map_err(|_| HttpError::BadChunk("invalid chunk size"))?;
    u64::from_str_radix(s, 16).map_err(|_| HttpError::BadChunk("invalid chunk size"))
}

/// Encodes body data for the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoder {
    /// Content-Length or close-delimited: bytes as they are.
    Raw,
    Chunked,
    None,
}

impl BodyEncoder {
    pub fn new(kind: BodyKind) -> BodyEncoder {
        match kind {
            BodyKind::None => BodyEncoder::None,
            BodyKind::Length(_) | BodyKind::Close => BodyEncoder::Raw,
            BodyKind::Chunked => BodyEncoder::Chunked,
        }
    }

    pub fn encode(&self, data: &[u8], out: &mut Vec<u8>) {
        match self {
            BodyEncoder::None => {}
            BodyEncoder::Raw => out.extend_from_slice(data),
            BodyEncoder::Chunked => {
                if data.is_empty() {
                    return;
                }
                let _ = write!(out, "{:x}\r\n", data.len());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Bytes that end the body (the last chunk for chunked).
    pub fn finish(&self, out: &mut Vec<u8>) {
        if *self == BodyEncoder::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(kind: BodyKind, pieces: &[&[u8]]) -> Result<(Vec<u8>, Vec<u8>), HttpError> {
        let mut d = BodyDecoder::new(kind);
        let mut out = Vec::new();
        let mut rest = Vec::new();
        for p in pieces {
            let n = d.decode(p, &mut out)?;
            rest.extend_from_slice(&p[n..]);
        }
        if !d.is_done() {
            d.on_eof()?;
        }
        Ok((out, rest))
    }

    #[test]
    fn chunked_decode_byte_by_byte_and_whole() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let (out, rest) = decode_all(BodyKind::Chunked, &[body]).unwrap();
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(rest, b"NEXT");
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let (out2, rest2) = decode_all(BodyKind::Chunked, &bytes).unwrap();
        assert_eq!((out2, rest2), (out, rest));
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"4\nWiki\r\n0\r\n\r\n",
            b"4\r\nWikiXX0\r\n\r\n",
            b"4\r\nWiki\r\n0\r\n\r\r\n",
            b"ffffffffffffffffff\r\n",
            b"4\r\nWiki\r\n0\r\nbad trailer\r\n\r\n",
        ] {
            assert!(
                decode_all(BodyKind::Chunked, &[bad]).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Truncated.
        assert_eq!(
            decode_all(BodyKind::Chunked, &[b"4\r\nWi"]),
            Err(HttpError::TruncatedBody)
        );
    }

    #[test]
    fn length_and_close_bodies() {
        let (out, rest) = decode_all(BodyKind::Length(3), &[b"ab", b"cdef"]).unwrap();
        assert_eq!(
            (out.as_slice(), rest.as_slice()),
            (&b"abc"[..], &b"def"[..])
        );
        assert_eq!(
            decode_all(BodyKind::Length(3), &[b"ab"]),
            Err(HttpError::TruncatedBody)
        );
        let (out, _) = decode_all(BodyKind::Close, &[b"ab", b"cd"]).unwrap();
        assert_eq!(out, b"abcd");
    }

    #[test]
    fn chunked_encode_roundtrip() {
        let enc = BodyEncoder::new(BodyKind::Chunked);
        let mut wire = Vec::new();
        enc.encode(b"hello ", &mut wire);
        enc.encode(b"", &mut wire);
        enc.encode(b"world", &mut wire);
        enc.finish(&mut wire);
        assert_eq!(wire, b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
        let (out, rest) = decode_all(BodyKind::Chunked, &[&wire]).unwrap();
        assert_eq!(out, b"hello world");
        assert!(rest.is_empty());
    }
}
