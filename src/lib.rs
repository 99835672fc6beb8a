pub mod data;
pub mod kv;
pub mod meta;
pub mod object;
