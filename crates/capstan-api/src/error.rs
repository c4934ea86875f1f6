//! The one error every API call returns, whatever the transport: a [`Code`] (gRPC's codes,
//! which map one-to-one onto HTTP statuses) and a message written for the user — what is
//! wrong and what to do. gRPC clients get a `tonic::Status`; REST clients get the status code
//! and `{"error": ..., "code": ..., "message": ...}`, the shape Argo CD's gateway answers with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use capstan_store::StoreError;

/// What kind of failure; decides the gRPC code and the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The request is malformed or names something impossible (400).
    InvalidArgument,
    /// No valid credentials (401).
    Unauthenticated,
    /// Valid credentials, not allowed (403).
    PermissionDenied,
    /// No such object (404).
    NotFound,
    /// The object exists already (409).
    AlreadyExists,
    /// Someone changed the object meanwhile (409): read it again and retry.
    Aborted,
    /// The object is not in a state that allows this (400).
    FailedPrecondition,
    /// Too many attempts (429).
    ResourceExhausted,
    /// A dependency (store, repo-server) is not answering (503).
    Unavailable,
    /// A bug or an unexpected failure (500).
    Internal,
}

impl Code {
    /// The HTTP status of the code.
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC code.
    pub fn grpc(self) -> tonic::Code {
        match self {
            Code::InvalidArgument => tonic::Code::InvalidArgument,
            Code::Unauthenticated => tonic::Code::Unauthenticated,
            Code::PermissionDenied => tonic::Code::PermissionDenied,
            Code::NotFound => tonic::Code::NotFound,
            Code::AlreadyExists => tonic::Code::AlreadyExists,
            Code::Aborted => tonic::Code::Aborted,
            Code::FailedPrecondition => tonic::Code::FailedPrecondition,
            Code::ResourceExhausted => tonic::Code::ResourceExhausted,
            Code::Unavailable => tonic::Code::Unavailable,
            Code::Internal => tonic::Code::Internal,
        }
    }
}

/// An API call's failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The kind.
    pub code: Code,
    /// For the user.
    pub message: String,
}

/// What API calls return.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error of `code`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// Invalid argument (400).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// Not found (404) for `what` (e.g. `application "capstan/guestbook"`).
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(Code::NotFound, format!("{what} not found"))
    }

    /// Permission denied (403), naming the permission that was missing.
    pub fn denied(resource: &str, action: &str, object: &str) -> Self {
        Self::new(
            Code::PermissionDenied,
            format!("permission denied: {resource}, {action}, {object}"),
        )
    }

    /// Unauthenticated (401).
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }

    /// Internal (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::NotFound { .. } => ApiError::new(Code::NotFound, error.to_string()),
            StoreError::Conflict { .. } => ApiError::new(
                Code::Aborted,
                format!("{error}; it was changed meanwhile: read it again and retry"),
            ),
            StoreError::Compacted { .. } | StoreError::FutureRevision { .. } => ApiError::new(
                Code::FailedPrecondition,
                format!("{error}: list again, then watch from the list's resourceVersion"),
            ),
            // A name too long for a key, an object over the value limit: the caller's to fix.
            StoreError::InvalidKey { .. }
            | StoreError::ValueTooLarge { .. }
            | StoreError::InvalidRequest { .. } => ApiError::invalid(error.to_string()),
            StoreError::Closed | StoreError::Backend { .. } | StoreError::Io { .. } => {
                tracing::warn!(error = %error, "store unavailable");
                ApiError::new(
                    Code::Unavailable,
                    format!("the store is unavailable: {error}"),
                )
            }
            _ => {
                tracing::error!(error = %error, "store failure");
                ApiError::internal(format!("store failure: {error}"))
            }
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        tonic::Status::new(error.code.grpc(), error.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.message,
            "code": self.code.grpc() as i32,
            "message": self.message,
        });
        (self.code.http_status(), axum::Json(body)).into_response()
    }
}
