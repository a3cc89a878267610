use thiserror::Error;

/// The error every thrifty core returns.
///
/// Each variant names the offending argument so that a caller (and the Python exception it
/// becomes) can say what was expected and what was received.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CoreError {
    /// A value is outside its domain (a negative cost, `k > n`, a non-positive weight).
    #[error("{argument}: {message}")]
    InvalidValue {
        argument: &'static str,
        message: String,
    },
    /// An array has the wrong shape or length.
    #[error("{argument}: {message}")]
    Shape {
        argument: &'static str,
        message: String,
    },
    /// An array holds NaN or infinity where finite values are required.
    #[error("{argument}: {message}")]
    NonFinite {
        argument: &'static str,
        message: String,
    },
    /// A peer (or the coordinator, or the link to one) was lost during a collective; the
    /// caller's buffer has been restored and the topology must be updated before retrying.
    #[error("{0}")]
    PeerLost(String),
    /// A blocking call ran past its deadline.
    #[error("{0}")]
    Timeout(String),
    /// A connection failed authentication (wrong or missing shared secret).
    #[error("{0}")]
    Authentication(String),
    /// A collective was aborted for a reason other than a lost peer: a peer rejected its own
    /// input. Retrying the same call will fail again.
    #[error("{0}")]
    Aborted(String),
    /// Peers called different collectives, or the same one with different shapes. Retrying
    /// the same call will fail again.
    #[error("{0}")]
    Mismatch(String),
    /// A broken invariant inside thrifty itself; always a bug worth reporting.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    pub fn invalid(argument: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidValue {
            argument,
            message: message.into(),
        }
    }

    pub fn shape(argument: &'static str, message: impl Into<String>) -> Self {
        Self::Shape {
            argument,
            message: message.into(),
        }
    }

    pub fn non_finite(argument: &'static str, message: impl Into<String>) -> Self {
        Self::NonFinite {
            argument,
            message: message.into(),
        }
    }

    /// The error for a panic caught at a boundary (a thread, the FFI): always a bug.
    pub fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Self::Internal(format!("a bug in thrifty, please report it: {what}"))
    }

    /// The argument this error is about, if it is about one.
    pub fn argument(&self) -> Option<&'static str> {
        match self {
            Self::InvalidValue { argument, .. }
            | Self::Shape { argument, .. }
            | Self::NonFinite { argument, .. } => Some(argument),
            Self::PeerLost(_)
            | Self::Timeout(_)
            | Self::Authentication(_)
            | Self::Aborted(_)
            | Self::Mismatch(_)
            | Self::Internal(_) => None,
        }
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_the_argument() {
        let e = CoreError::shape("cost", "must be square, got shape (3, 4)");
        assert_eq!(e.to_string(), "cost: must be square, got shape (3, 4)");
        assert_eq!(e.argument(), Some("cost"));
        assert_eq!(CoreError::Internal("x".into()).argument(), None);
    }

    #[test]
    fn a_panic_becomes_an_internal_error_with_its_message() {
        let payload = std::panic::catch_unwind(|| panic!("index {} out of range", 3)).unwrap_err();
        assert_eq!(
            CoreError::panicked(&*payload).to_string(),
            "internal error: a bug in thrifty, please report it: index 3 out of range"
        );
        let payload = std::panic::catch_unwind(|| std::panic::panic_any(7)).unwrap_err();
        assert!(CoreError::panicked(&*payload)
            .to_string()
            .ends_with("unknown panic"));
    }
}
