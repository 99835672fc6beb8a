pub mod kv;
pub mod meta;
