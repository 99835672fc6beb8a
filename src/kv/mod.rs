//! The ordered, transactional key-value contract that every metadata engine
//! honours, and the engines themselves.
//!
//! The contract is the strongest that all engines can give: optimistic
//! serializable transactions with read-your-writes, reads at a fixed snapshot,
//! tracked reads (conflict on change) and snapshot reads (no conflict),
//! ordered range scans with limits and paging, explicit read-conflict ranges
//! and atomic add.
//!
//! Engines implement only the small [`Engine`] / [`EngineTxn`] pair: snapshot
//! reads and an atomic commit of a write set guarded by a read-conflict set.
//! Everything shared (write buffering, read-your-writes, limits, retries) lives
//! above the trait, in [`Txn`] and [`Db`], once.

mod db;
mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
mod faults;
#[cfg(feature = "fdb")]
pub mod fdb;
pub mod local;
mod mem;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
mod resolver;
mod retry;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod sql;
#[cfg(feature = "tikv")]
pub mod tikv;
pub mod txn;
mod types;
pub mod url;

pub use db::{Db, DbOptions};
pub use error::{KvError, KvResult};
pub use faults::{FaultConfig, FaultyEngine};
pub use mem::MemEngine;
pub use retry::{RetryPolicy, TxnStats, STATS};
pub use txn::Txn;
pub use types::{
    counter_value, decode_counter, decode_max, encode_counter, key_after, prefix_end,
    CommitRequest, Engine, EngineTxn, Key, KeyRange, KeySpace, Limits, Mutation, Page, Value,
};
pub use url::MetaUrl;
