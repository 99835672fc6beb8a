pub mod data;
pub mod kv;
pub mod meta;
pub mod fuse;
pub mod object;
pub mod vfs;
