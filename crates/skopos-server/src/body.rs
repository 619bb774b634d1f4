//! Bounded request bodies: a size limit on the wire and on decompression, so
//! neither a huge body nor a gzip bomb can exhaust memory.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};

/// A request rejected before decoding, with the status to answer.
#[derive(Debug)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
}

/// Reads at most `limit` bytes of body, then undoes `Content-Encoding: gzip`
/// (also bounded by `limit`).
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    if let Some(len) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large(limit));
        }
    }
    let raw = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let msg = e.to_string();
        if msg.contains("length limit") {
            too_large(limit)
        } else {
            BodyError {
                status: StatusCode::BAD_REQUEST,
                message: format!("reading request body: {msg}"),
            }
        }
    })?;
    let encoding = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" | "snappy" => Ok(raw),
        "gzip" | "x-gzip" => gunzip(&raw, limit).map(Bytes::from),
        other => Err(BodyError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!("unsupported Content-Encoding {other:?}: use gzip or none"),
        }),
    }
}

fn too_large(limit: usize) -> BodyError {
    BodyError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!(
            "request body is larger than the limit of {limit} bytes (--max-body-size)"
        ),
    }
}

/// Decompresses gzip, refusing output larger than `limit`.
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    let mut dec = flate2::read::MultiGzDecoder::new(data).take(limit as u64 + 1);
    dec.read_to_end(&mut out).map_err(|e| BodyError {
        status: StatusCode::BAD_REQUEST,
        message: format!("malformed gzip body: {e}"),
    })?;
    if out.len() > limit {
        return Err(BodyError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "decompressed body is larger than the limit of {limit} bytes (--max-body-size)"
            ),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_bomb_is_refused_with_413() {
        let bomb = gz(&vec![0u8; 10_000]);
        let err = gunzip(&bomb, 1000).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(gunzip(&bomb, 10_000).unwrap().len(), 10_000);
    }

    #[test]
    fn malformed_gzip_is_400() {
        let err = gunzip(b"not gzip at all", 1000).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("gzip"));
    }
}
