//! Errors a request can end in, each knowing its HTTP status and short JSON
//! body, and the errors that keep folio from starting. Cache-tier failures
//! are not here: L2 fails open (see `cache::l2`).

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::Body;

/// Why folio could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Upstream(String),
    #[error("invalid Redis URL: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Config(String),
}

/// Why folio answered with an error instead of the upstream's response.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ProxyError {
    /// Connection refused, reset, or closed before a response.
    #[error("the upstream could not be reached: {0}")]
    UpstreamUnavailable(String),
    /// TLS with an `https://` upstream failed: its certificate did not
    /// verify, or the handshake did not complete. Nothing was sent.
    #[error("TLS with the upstream failed, so nothing was sent to it: {0}")]
    UpstreamTls(String),
    /// No response headers within the upstream timeout.
    #[error("the upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    /// An answer that cannot be one to what folio asked: a 1xx as the final
    /// answer to a request that asked no upgrade, a 304 to one without
    /// validators.
    #[error("the upstream's answer does not fit what folio asked: {0}")]
    UpstreamInvalid(String),
    /// The response body broke off or stalled.
    #[error("the upstream's response body could not be read: {0}")]
    UpstreamBody(String),
    /// `Cache-Control: only-if-cached` and nothing suitable is stored.
    #[error("nothing suitable is stored, and the request said only-if-cached")]
    NotCached,
    /// Something in the request itself (e.g. an unusable tenant header).
    #[error("{0}")]
    BadRequest(String),
    /// `CONNECT`: a reverse proxy has no tunnel to open.
    #[error("folio does not tunnel: CONNECT is not served")]
    Tunnel,
    /// A transfer coding other than `chunked` on the request's body.
    #[error("folio reads request bodies sent plain or chunked only")]
    TransferCoding,
    /// The request already passed through folio (`Via`): forwarding loops.
    #[error("the request already passed through folio: the upstream points back at it")]
    Loop,
    /// A bug: serving the request panicked. Only this request fails.
    #[error("folio could not serve this request")]
    Internal,
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::UpstreamUnavailable(_)
            | Self::UpstreamTls(_)
            | Self::UpstreamInvalid(_)
            | Self::UpstreamBody(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) | Self::NotCached => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Loop => StatusCode::LOOP_DETECTED,
            Self::Tunnel | Self::TransferCoding => StatusCode::NOT_IMPLEMENTED,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the request itself is the cause, not folio or its upstream.
    pub(crate) fn is_the_requests(&self) -> bool {
        matches!(
            self,
            Self::BadRequest(_)
                | Self::Tunnel
                | Self::TransferCoding
                | Self::Loop
                | Self::NotCached
        )
    }

    /// A stable, machine-readable name for the `error` field.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::UpstreamUnavailable(_) => "upstream_unavailable",
            Self::UpstreamTls(_) => "upstream_tls",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::UpstreamInvalid(_) => "upstream_invalid",
            Self::UpstreamBody(_) => "upstream_body",
            Self::NotCached => "only_if_cached",
            Self::BadRequest(_) => "bad_request",
            Self::Loop => "loop_detected",
            Self::Tunnel | Self::TransferCoding => "not_implemented",
            Self::Internal => "internal_error",
        }
    }

    /// `{"error": "...", "message": "..."}` with the right status.
    pub(crate) fn to_response(&self) -> Response<Body> {
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        let mut response = Response::new(Body::full(body.to_string()));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
