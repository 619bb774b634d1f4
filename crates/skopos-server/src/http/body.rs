//! Bounded request bodies: a size limit on the wire and on decompression, so
//! neither a huge body nor a gzip bomb can exhaust memory.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;

/// A request rejected before decoding, with the status to answer.
#[derive(Debug)]
pub struct BodyError {
    pub status: StatusCode,
    pub message: String,
}

/// How much of an over-limit body is read and thrown away so that a client
/// which writes its whole body before reading (most do) sees the 413 and
/// its message instead of a reset connection. Past this the connection is
/// closed.
fn discard_bound(limit: usize) -> u64 {
    (limit as u64).saturating_mul(4).max(64 << 20)
}

/// Reads at most `limit` bytes of body, then undoes `Content-Encoding: gzip`
/// (also bounded by `limit`). An over-limit body is read to its end (up to
/// [`discard_bound`]) and discarded before the 413 is answered.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > discard_bound(limit)) {
        return Err(too_large(limit));
    }
    let mut raw = Vec::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    let mut seen: u64 = 0;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError {
            status: StatusCode::BAD_REQUEST,
            message: format!("reading request body: {e}"),
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen > discard_bound(limit) {
            break;
        }
        if seen <= limit as u64 {
            raw.extend_from_slice(&data);
        }
    }
    if seen > limit as u64 {
        return Err(too_large(limit));
    }
    let raw = Bytes::from(raw);
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
