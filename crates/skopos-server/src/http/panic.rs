//! The last line against a panic reachable from a request. Parsers and
//! handlers must not panic on any input (they are fuzzed); should one still
//! do so, [`catch_panic`] answers 500 with a generic message and logs the
//! panic with the request's method and path, instead of the connection being
//! dropped or the panic text reaching the client. Blocking work goes through
//! [`blocking`], which hands a panic of the worker thread back to the
//! request's task so the same layer catches it.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;

/// Runs `f` on the blocking pool; a panic in `f` continues in the caller.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking task did not complete: {e}"),
    }
}

/// The blocking work of a request panicked (logged where it happened).
#[derive(Debug, thiserror::Error)]
#[error("internal server error: the request could not be completed (the server logged the cause)")]
pub struct Panicked;

/// Runs `f` on the blocking pool for a path that must answer with an error
/// of its own protocol (gRPC, the shared append paths): a panic in `f` is
/// logged with `what` and becomes [`Panicked`], whose text names no detail.
pub async fn blocking_or_error<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Panicked> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Ok(v),
        Err(e) => {
            let detail = if e.is_panic() {
                message(e.into_panic().as_ref()).to_string()
            } else {
                e.to_string()
            };
            tracing::error!(task = what, panic = detail, "blocking task panicked");
            Err(Panicked)
        }
    }
}

fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

/// Middleware: a panicking handler answers 500 in Prometheus' error shape.
pub async fn catch_panic(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(payload) => {
            tracing::error!(
                %method,
                path,
                panic = message(payload.as_ref()),
                "request handler panicked; answered 500"
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"error","errorType":"internal","error":"internal server error: the request could not be completed (the server logged the cause)"}"#,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    async fn answer(router: Router, path: &str) -> (StatusCode, String) {
        let resp = router
            .layer(axum::middleware::from_fn(catch_panic))
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_without_the_panic_text() {
        let router = Router::new()
            .route(
                "/inline",
                get(|| async {
                    if true {
                        panic!("secret detail 1");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/blocking",
                get(|| async { blocking(|| -> &'static str { panic!("secret detail 2") }).await }),
            )
            .route("/fine", get(|| async { blocking(|| "ok").await }));
        for path in ["/inline", "/blocking"] {
            let (status, body) = answer(router.clone(), path).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert!(body.contains("internal server error"), "{path}: {body}");
            assert!(!body.contains("secret detail"), "{path}: {body}");
        }
        assert_eq!(answer(router, "/fine").await, (StatusCode::OK, "ok".into()));
    }
}
