//! The vfs error: the errno the kernel gets. Failures that are not a plain
//! POSIX answer (KV store or object storage trouble, damaged data) are
//! logged once here, where they become EIO.

use crate::data::DataError;
use crate::meta::MetaError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfsError(pub i32);

pub type VfsResult<T> = Result<T, VfsError>;

impl VfsError {
    pub fn errno(e: i32) -> VfsError {
        VfsError(e)
    }
}

impl std::fmt::Display for VfsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}

impl std::error::Error for VfsError {}

impl From<MetaError> for VfsError {
    fn from(e: MetaError) -> VfsError {
        if !matches!(e, MetaError::Errno(_)) {
            tracing::error!(error = %e, "metadata operation failed");
        }
        VfsError(e.errno())
    }
}

impl From<DataError> for VfsError {
    fn from(e: DataError) -> VfsError {
        match e {
            DataError::Meta(e) => e.into(),
            e => {
                tracing::error!(error = %e, "data operation failed");
                VfsError(e.errno())
            }
        }
    }
}
