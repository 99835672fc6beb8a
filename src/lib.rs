pub mod data;
pub mod fuse;
pub mod kv;
pub mod meta;
pub mod object;
pub mod vfs;
