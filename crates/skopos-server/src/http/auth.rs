//! Bearer-token authentication, applied to every HTTP and gRPC request when a
//! token is configured, except the health and readiness probes. Comparison is constant-time; the token is never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tonic::Status;

use crate::state::AppState;

#[derive(Clone)]
pub struct Token(pub Arc<str>);

/// Constant-time check of an `Authorization` header value against the token.
pub fn authorized(token: &str, header_value: Option<&str>) -> bool {
    let Some(v) = header_value else { return false };
    let Some(given) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn require_token(
    State(token): State<Option<Token>>,
    req: Request,
    next: Next,
) -> Response {
    // Liveness and readiness probes carry no token and learn nothing.
    let open = matches!(req.uri().path(), "/-/healthy" | "/-/ready" | "/ready");
    if let (Some(Token(t)), false) = (&token, open) {
        let h = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !authorized(t, h) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token: send Authorization: Bearer <token>\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// The gRPC services' form of the same check, on the `authorization` metadata.
pub fn check_token<T>(st: &AppState, request: &tonic::Request<T>) -> Result<(), Status> {
    if let Some(token) = &st.auth_token {
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if !crate::http::auth::authorized(token, given) {
            return Err(Status::unauthenticated("missing or wrong bearer token"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        assert!(authorized("s3cret", Some("Bearer s3cret")));
        assert!(!authorized("s3cret", Some("Bearer s3cre")));
        assert!(!authorized("s3cret", Some("Basic s3cret")));
        assert!(!authorized("s3cret", None));
    }
}
