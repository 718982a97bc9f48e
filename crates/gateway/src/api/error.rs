//! The one mapping from everything that can go wrong in a request to OpenAI's error shape and
//! HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::MAX_BODY_BYTES;
use super::wire::{ErrorBody, ErrorDetail};
use crate::customers::AuthError;
use crate::relay::{Fault, RelayError};

/// An error in OpenAI's shape.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
}

/// OpenAI's `type` for a request at fault.
const INVALID_REQUEST: &str = "invalid_request_error";

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            code: Some(code.to_string()),
            param: None,
            message: message.into(),
        }
    }

    /// 400: the request is malformed or asks for something unsupported; `param` names the field.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: INVALID_REQUEST,
            code: None,
            param: param.map(str::to_string),
            message: message.into(),
        }
    }

    /// 401 (no or unknown key) or 429 (no credit left).
    pub fn auth(e: AuthError) -> Self {
        match e {
            AuthError::Missing => Self::new(
                StatusCode::UNAUTHORIZED,
                INVALID_REQUEST,
                "invalid_api_key",
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
            ),
            AuthError::Unknown => Self::new(
                StatusCode::UNAUTHORIZED,
                INVALID_REQUEST,
                "invalid_api_key",
                "Incorrect API key provided.",
            ),
            AuthError::NoCredit { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                "insufficient_quota",
                "You exceeded your current quota: this key has no credit left.",
            ),
            AuthError::Expired { at } => Self::new(
                StatusCode::UNAUTHORIZED,
                INVALID_REQUEST,
                "expired_api_key",
                format!("This API key expired at unix time {at}."),
            ),
            // Raised by the relay before any work; kept here so every refusal maps once.
            AuthError::OverCap { cap, need } => Self::new(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "request_over_cap",
                format!(
                    "This request may cost up to {} base units; this key's per-request cap is {}. \
                     Lower max_tokens or send less.",
                    need.0, cap.0
                ),
            ),
        }
    }

    /// A signed key request that does not check: 403 when the signature is not the account's,
    /// 400 for the rest (`param` names the field).
    pub fn key_request(e: &agora_market::keys::KeyRequestError) -> Self {
        use agora_market::keys::KeyRequestError as K;
        let (status, code, param) = match e {
            K::Signature => (StatusCode::FORBIDDEN, "bad_signature", "signature"),
            K::Name => (
                StatusCode::BAD_REQUEST,
                "invalid_key_request",
                "request.name",
            ),
            K::Cap => (
                StatusCode::BAD_REQUEST,
                "invalid_key_request",
                "request.per_request_cap",
            ),
            K::Expired { .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_key_request",
                "request.expires_at",
            ),
            K::WrongGateway { .. } => (StatusCode::BAD_REQUEST, "wrong_gateway", "request.gateway"),
            K::Skew { .. } => (StatusCode::BAD_REQUEST, "stale_request", "request.at_ms"),
        };
        let mut err = Self::new(status, INVALID_REQUEST, code, e.to_string());
        err.param = Some(param.into());
        err
    }

    /// The key book's refusals: 409 for a replayed request, a key busy with requests or a key
    /// digest that is already another key's, 429
    /// when too many keys wait for a deposit, 500 when the book cannot be written.
    pub fn key_issue(e: &crate::customers::IssueError) -> Self {
        use crate::customers::IssueError as I;
        let (status, kind, code) = match e {
            I::Replayed { .. } => (StatusCode::CONFLICT, INVALID_REQUEST, "replayed_request"),
            I::Busy => (StatusCode::CONFLICT, INVALID_REQUEST, "key_busy"),
            I::Taken => (StatusCode::CONFLICT, INVALID_REQUEST, "key_taken"),
            I::Full => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "too_many_keys",
            ),
            I::Io(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "key_book",
            ),
        };
        Self::new(status, kind, code, e.to_string())
    }

    /// 404: no route for the URL.
    pub fn unknown_url() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "unknown_url",
            "Unknown request URL. See docs/design/gateway.md for the endpoints.",
        )
    }

    /// 404: the model is unknown or has no live provider.
    /// 404: no response `id` is kept for this key (never kept, expired, or another key's).
    pub fn response_not_found(id: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "response_not_found",
            format!(
                "No response with id `{id}` is kept for this API key (responses are kept for a \
                 day, in memory, for the key that created them)."
            ),
        );
        e.param = Some("previous_response_id".into());
        e
    }

    pub fn model_not_found(name: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "model_not_found",
            format!(
                "The model `{name}` does not exist or no provider on the network serves it now."
            ),
        );
        e.param = Some("model".into());
        e
    }

    /// 404: the gateway keeps no receipt for this request id.
    pub fn receipts_not_found(request_id: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "receipts_not_found",
            format!("This gateway keeps no receipt for request `{request_id}`."),
        );
        e.param = Some("request_id".into());
        e
    }

    /// The audit desk's refusals: 403 for a requester that is not an active validator or whose
    /// signed request does not check, 404 for what the gateway does not hold, 503 without a
    /// ledger.
    pub fn audit(e: &crate::audit::DeskError) -> Self {
        use crate::audit::DeskError as D;
        let (status, code) = match e {
            D::NotAValidator(_) => (StatusCode::FORBIDDEN, "not_a_validator"),
            D::BadSignature | D::WrongChain(_) => (StatusCode::BAD_REQUEST, "bad_verdict"),
            D::NoBatch => (StatusCode::NOT_FOUND, "batch_not_found"),
            D::NoReceipt => (StatusCode::NOT_FOUND, "receipt_not_found"),
            D::Chain(_) => (StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable"),
        };
        Self::new(status, INVALID_REQUEST, code, e.to_string())
    }

    /// 403: a case request whose auditor signature does not check.
    pub fn audit_auth(e: &agora_market::audit::FetchAuthError) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            INVALID_REQUEST,
            "bad_auditor_signature",
            e.to_string(),
        )
    }

    /// 404: this gateway does not take part in audits.
    pub fn no_audits() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            "audits_off",
            "This gateway does not serve audits.",
        )
    }

    /// 408: the request body stopped arriving.
    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            INVALID_REQUEST,
            "request_timeout",
            "The request body stopped arriving.",
        )
    }

    /// 413: the request body is over `MAX_BODY_BYTES`.
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            "request_too_large",
            format!("The request body exceeds {MAX_BODY_BYTES} bytes."),
        )
    }

    /// 503: the network could not give an answer of the expected form (`code` says what).
    pub fn upstream(code: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            code,
            message,
        )
    }

    /// 502: a provider's output does not have the form the request bound it to (a tool call
    /// outside the tools' schemas).
    pub fn bad_output(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "provider_output",
            message,
        )
    }

    /// 400 with the relay's code when the request is at fault, 429 when the key's free credit
    /// cannot cover it, 503 for network trouble.
    pub fn from_relay(e: RelayError) -> Self {
        match e.fault {
            Fault::Client => {
                let mut out = Self::invalid(e.message, None);
                out.code = Some(e.code);
                out
            }
            Fault::Quota => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                &e.code,
                e.message,
            ),
            Fault::Network => Self::upstream(&e.code, e.message),
        }
    }

    /// The body OpenAI's SDKs parse, also sent as the last event of a broken stream.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.as_deref(),
                message: &self.message,
                param: self.param.as_deref(),
                kind: self.kind,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}
