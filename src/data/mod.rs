//! The data path: files cut into chunks, slices and blocks stored as
//! objects. So far: the block format and object naming.

pub mod block;
