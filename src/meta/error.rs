//! The metadata layer's error: a POSIX errno for the caller, or a KV failure
//! the retry runner could not overcome.

use crate::kv::KvError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// The answer of a POSIX operation (ENOENT, EEXIST, ...).
    #[error("{}", errno_text(*.0))]
    Errno(i32),
    #[error(transparent)]
    Kv(#[from] KvError),
    /// The volume itself is unusable (not formatted, newer format, damaged).
    #[error("{0}")]
    Volume(String),
}

pub type MetaResult<T> = Result<T, MetaError>;

impl MetaError {
    /// The errno to give the kernel.
    pub fn errno(&self) -> i32 {
        match self {
            MetaError::Errno(e) => *e,
            MetaError::Kv(KvError::TooLarge(_)) => libc::EFBIG,
            MetaError::Kv(_) | MetaError::Volume(_) => libc::EIO,
        }
    }
}

/// Shorthand for `Err(MetaError::Errno(e))`.
pub fn errno<T>(e: i32) -> MetaResult<T> {
    Err(MetaError::Errno(e))
}

fn errno_text(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}
