//! Content encodings: an answer must be read to be masked, so an encoded one is decoded
//! first (gzip, deflate, br), with a bound on the decoded size so a small compressed body
//! cannot expand without limit. The masked answer goes out unencoded.
//! <https://www.rfc-editor.org/rfc/rfc9110#name-content-codings>

use std::io::Read;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EncodingError {
    #[error("the content encoding '{0}' is not one the gateway can decode")]
    Unsupported(String),
    #[error("the {0} body could not be decoded")]
    Corrupt(String),
    #[error("the decoded body is larger than {0} bytes")]
    TooLarge(usize),
}

/// Decodes `body` per its `Content-Encoding` (a single coding, or `identity`).
pub fn decode(encoding: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, EncodingError> {
    let coding = encoding.trim().to_ascii_lowercase();
    let reader: Box<dyn Read + '_> = match coding.as_str() {
        "" | "identity" => return Ok(body.to_vec()),
        "gzip" | "x-gzip" => Box::new(flate2::read::GzDecoder::new(body)),
        // HTTP's "deflate" is zlib-wrapped; some servers send raw deflate, so try both.
        "deflate" => {
            return read_limited(flate2::read::ZlibDecoder::new(body), limit, &coding).or_else(
                |_| read_limited(flate2::read::DeflateDecoder::new(body), limit, &coding),
            );
        }
        "br" => Box::new(brotli::Decompressor::new(body, 4096)),
        other => return Err(EncodingError::Unsupported(other.to_owned())),
    };
    read_limited(reader, limit, &coding)
}

fn read_limited(reader: impl Read, limit: usize, coding: &str) -> Result<Vec<u8>, EncodingError> {
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| EncodingError::Corrupt(coding.to_owned()))?;
    if out.len() > limit {
        return Err(EncodingError::TooLarge(limit));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_each_coding() {
        let body = br#"{"value":"secret"}"#;
        assert_eq!(decode("gzip", &gzip(body), 1024).unwrap(), body);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(body).unwrap();
        assert_eq!(decode("deflate", &z.finish().unwrap(), 1024).unwrap(), body);
        let mut br = Vec::new();
        brotli::BrotliCompress(&mut &body[..], &mut br, &Default::default()).unwrap();
        assert_eq!(decode("br", &br, 1024).unwrap(), body);
        assert_eq!(decode("identity", body, 1024).unwrap(), body);
    }

    #[test]
    fn refuses_what_it_cannot_decode_or_bound() {
        assert_eq!(
            decode("zstd", b"x", 10),
            Err(EncodingError::Unsupported("zstd".into()))
        );
        assert!(decode("gzip", b"not gzip", 10).is_err());
        let bomb = gzip(&vec![b'a'; 100_000]);
        assert!(bomb.len() < 1_000);
        assert_eq!(
            decode("gzip", &bomb, 10_000),
            Err(EncodingError::TooLarge(10_000))
        );
    }
}
