//! What goes wrong, said so that the user knows what to do next, and the exit code scripts
//! can branch on. Server errors arrive as gRPC statuses or REST error bodies; both become a
//! [`CliError`] with the same [`Exit`] code, so `--rest` changes nothing for a script.

use std::fmt;

/// The process exit codes (listed in `capstan --help`; stable: scripts depend on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `app diff` found differences.
    Differences = 1,
    /// Bad flags, arguments or input files.
    Usage = 2,
    /// Not logged in, the session expired, or wrong credentials.
    Unauthenticated = 3,
    /// Logged in, but not allowed.
    PermissionDenied = 4,
    /// The object does not exist (or is hidden from the caller).
    NotFound = 5,
    /// The object exists already, or changed meanwhile.
    Conflict = 6,
    /// The server cannot be reached or is not ready.
    Unavailable = 7,
    /// A wait ran out of time.
    Timeout = 8,
    /// An operation the command waited for failed (a sync or a rollback).
    OperationFailed = 9,
    /// Anything else the server or this machine reported.
    Other = 10,
}

/// An error for the user: a message, a hint saying what to do, and an exit code.
#[derive(Debug)]
pub struct CliError {
    /// How the process exits.
    pub exit: Exit,
    /// What went wrong.
    pub message: String,
    /// What to do about it, when there is something to say.
    pub hint: Option<String>,
}

/// The result of everything the CLI does.
pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    /// An error with `exit` and `message`, without a hint.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
            hint: None,
        }
    }

    /// Bad input from the user.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(Exit::Usage, message)
    }

    /// A failure on this machine or an unexpected answer.
    pub fn other(message: impl Into<String>) -> Self {
        CliError::new(Exit::Other, message)
    }

    /// Adds (or replaces) the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The error a server answered with: its gRPC code (REST answers carry it too), its
    /// message, and the hint that goes with the code.
    pub fn from_server(code: tonic::Code, message: &str) -> Self {
        use tonic::Code as C;
        let message = message.trim().to_owned();
        let (exit, hint) = match code {
            C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => (Exit::Usage, None),
            C::Unauthenticated => (
                Exit::Unauthenticated,
                Some(
                    "log in with `capstan login SERVER`, or pass a token with --auth-token or CAPSTAN_AUTH_TOKEN",
                ),
            ),
            C::PermissionDenied => (
                Exit::PermissionDenied,
                Some(
                    "ask an administrator for a role that allows it; `capstan account can-i ACTION RESOURCE OBJECT` shows what you may do",
                ),
            ),
            C::NotFound => (Exit::NotFound, None),
            C::AlreadyExists => (
                Exit::Conflict,
                Some("choose another name, or replace it (--upsert, where the command has it)"),
            ),
            C::Aborted => (
                Exit::Conflict,
                Some("it changed meanwhile: read it again and retry"),
            ),
            C::Unavailable => (
                Exit::Unavailable,
                Some(
                    "check the server address and that the server runs; if a proxy blocks gRPC, add --rest",
                ),
            ),
            C::DeadlineExceeded => (Exit::Timeout, None),
            C::ResourceExhausted => (Exit::Unavailable, Some("wait a moment and try again")),
            _ => (Exit::Other, None),
        };
        CliError {
            exit,
            message: if message.is_empty() {
                format!("the server answered {code:?} without a message")
            } else {
                message
            },
            hint: hint.map(str::to_owned),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        CliError::other(error.to_string())
    }
}

impl From<serde_json::Error> for CliError {
    fn from(error: serde_json::Error) -> Self {
        CliError::other(format!("unexpected JSON from the server: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes_map_to_documented_exit_codes_with_hints() {
        let denied = CliError::from_server(tonic::Code::PermissionDenied, "permission denied");
        assert_eq!(denied.exit as i32, 4);
        assert!(denied.to_string().contains("can-i"), "{denied}");
        let missing = CliError::from_server(tonic::Code::NotFound, "application x not found");
        assert_eq!(missing.exit as i32, 5);
        assert_eq!(missing.to_string(), "application x not found");
        let login = CliError::from_server(tonic::Code::Unauthenticated, "");
        assert_eq!(login.exit as i32, 3);
        assert!(login.message.contains("Unauthenticated"), "{login}");
    }
}
