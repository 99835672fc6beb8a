//! The Redis engine (cargo feature `redis`): the KV contract on one Redis
//! server, with every read and every commit one Lua script, so each is
//! atomic on the server.
//!
//! Redis keeps one version of a key, so the engine versions keys itself:
//!
//! | Redis key | type | holds |
//! |---|---|---|
//! | `P:c` | string | the last commit version (INCR per commit) |
//! | `P:v` | hash | key → value |
//! | `P:n` | hash | key → version of its last write (or delete) |
//! | `P:i` | sorted set, all scores 0 | every key with a version: ordered scans (ZRANGEBYLEX compares bytes) |
//! | `P:t` | sorted set | deleted keys (tombstones) by version |
//! | `P:h` | string | the horizon: tombstones at or below it were dropped |
//! | `P:changes:DB` | channel | each commit's version and keys (change notices) |
//!
//! Two invariants hold after every script, and the commit script relies
//! on them to skip sorted-set updates: a key with a value in `P:v` has no
//! tombstone in `P:t`, and a key has a version in `P:n` exactly when it is
//! in `P:i`.
//!
//! A transaction's snapshot is the commit version its first read returns.
//! A read answers only from keys whose version is at or below the
//! snapshot; a key written after it makes the read fail with `Conflict`
//! (the runner retries with a new snapshot), so a transaction never sees
//! anything newer than its snapshot. Values a transaction has read are
//! remembered, so reading them again gives the same answer. A commit
//! checks that no key of its read-conflict set (points, and every key or
//! tombstone of each range) has a version above the snapshot, then applies
//! the writes under the next version: serializable, phantoms included.
//! Adds and maxes are applied by the script: they never conflict.
//!
//! Tracked reads may be answered from what this process last saw of a key
//! (value and version, from reads and its own puts): the commit then checks
//! that the key still has that version, and a transaction that writes
//! nothing checks it in `finish`, with its snapshot reads. A stale answer
//! makes the transaction conflict and retry; it never decides anything.
//!
//! Every commit publishes its version and the keys it wrote (see `feed`):
//! with its feed subscribed, the engine answers recent-snapshot reads
//! (`begin_recent`: a mount's lookups and getattrs) from what it knows,
//! without a round trip, at the newest state the notices vouch for; a
//! state never older than a commit this process knows of, and given up
//! when the feed is lost or misses a commit. Besides keys, it knows
//! ranges that hold nothing else (a complete scan, or a commit's promise
//! such as a new directory's entries), so a key absent there is answered
//! too, and a tracked read of it is checked at the commit by "no version
//! after the range's commit and the notices applied".
//!
//! Deletes leave a tombstone so that later checks see them; tombstones
//! more than [`TOMBSTONE_WINDOW`] versions old are dropped a few per
//! commit, and a transaction whose snapshot is older than the dropped ones
//! conflicts instead of trusting a range that lost them.
//!
//! Durability is the server's: run Redis with `appendonly yes` (and
//! `appendfsync always` for no loss at power failure).
//!
//! URL: `redis://[user][:pass]@host:6379/DB[?prefix=P]`, `rediss://` for
//! TLS (`?insecure=1` skips host name checks), `?notices=0` to read
//! without subscribing to change notices (commits still publish them).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, Script};
use tokio::sync::OnceCell;

mod feed;

use super::url::{Credentials, Endpoint};
use super::{
    key_after, CommitRequest, Engine, EngineTxn, Key, KeyRange, KvError, KvResult, Limits,
    Mutation, Value,
};

pub const ENGINE_NAME: &str = "redis";

/// Tombstones younger than this many commits are kept.
pub const TOMBSTONE_WINDOW: u64 = 100_000;

const LIMITS: Limits = Limits {
    max_key_bytes: 4096,
    max_value_bytes: 1 << 20,
    max_txn_ops: 10_000,
    max_txn_bytes: 8 << 20,
    max_txn_duration: Duration::from_secs(60),
};

/// Entries fetched per ZRANGEBYLEX inside the scan script.
const SCAN_BATCH: usize = 256;

/// KEYS of every script, in this order: c v n i t h, then the change
/// notice channel (not a key; only the commit script uses it).
/// ARGV: snapshot ('' for the current version), then the keys. Versions
/// and values come from one HMGET each per 1,000 keys (Lua's unpack has a
/// stack limit), not two HGETs per key.
const READ: &str = r#"
local snap = tonumber(ARGV[1])
if not snap then snap = tonumber(redis.call('GET', KEYS[1]) or '0') end
local horizon = tonumber(redis.call('GET', KEYS[6]) or '0')
local function hmget(hash)
  local all = {}
  for from = 2, #ARGV, 1000 do
    local part = redis.call('HMGET', hash, unpack(ARGV, from, math.min(from + 999, #ARGV)))
    for j = 1, #part do all[#all + 1] = part[j] end
  end
  return all
end
local vers = hmget(KEYS[3])
for i = 1, #vers do
  if vers[i] then
    if tonumber(vers[i]) > snap then return {-1} end
  elseif snap < horizon then
    return {-1}
  end
end
local vals = hmget(KEYS[2])
local out = {snap}
for i = 1, #vers do
  out[2 * i] = vals[i]
  out[2 * i + 1] = tonumber(vers[i] or '0')
end
return out
"#;

/// ARGV: snapshot, start, end, has end (1/0), limit, reverse (1/0), batch.
const SCAN: &str = r#"
local snap = tonumber(ARGV[1])
if not snap then snap = tonumber(redis.call('GET', KEYS[1]) or '0') end
local horizon = tonumber(redis.call('GET', KEYS[6]) or '0')
if snap < horizon then return {-1} end
local lo = '[' .. ARGV[2]
local hi = '+'
if ARGV[4] == '1' then hi = '(' .. ARGV[3] end
local limit = tonumber(ARGV[5])
local batch = tonumber(ARGV[7])
local out = {snap}
local offset = 0
while true do
  local keys
  if ARGV[6] == '1' then
    keys = redis.call('ZREVRANGEBYLEX', KEYS[4], hi, lo, 'LIMIT', offset, batch)
  else
    keys = redis.call('ZRANGEBYLEX', KEYS[4], lo, hi, 'LIMIT', offset, batch)
  end
  for _, key in ipairs(keys) do
    local ver = redis.call('HGET', KEYS[3], key)
    if ver and tonumber(ver) > snap then return {-1} end
    local value = redis.call('HGET', KEYS[2], key)
    if value then
      out[#out + 1] = key
      out[#out + 1] = value
      out[#out + 1] = tonumber(ver or '0')
      if #out >= 3 * limit + 1 then return out end
    end
  end
  if #keys < batch then return out end
  offset = offset + batch
end
"#;

/// The check, shared by the commit and verify scripts, of the keys a
/// transaction answered from what the engine knew: each still has the
/// version it was answered at (`N`), or at most `N` (`<N`: a key a known
/// range said was absent). Expects `verify` (how many), `pos` (where the
/// pairs start) and `stale` (the answer on a mismatch); moves `pos` past
/// the pairs.
macro_rules! check_known {
    () => {
        r#"
for v = 1, verify do
  local ver = tonumber(redis.call('HGET', KEYS[3], ARGV[pos]) or '0')
  local want = ARGV[pos + 1]
  if string.sub(want, 1, 1) == '<' then
    if ver > tonumber(string.sub(want, 2)) then return stale end
  elseif ver ~= tonumber(want) then return stale end
  pos = pos + 2
end
"#
    };
}

/// ARGV: snapshot ('' when nothing was read), tombstone window, number of
/// keys answered from what the engine knew, then per key (key, version it
/// must still have: `N`, or `<N` for at most N), number of conflict ranges,
/// then per range (start, end, kind: p point, 1 bounded, 0 to the end),
/// then per mutation (op: p put, d delete, a add, m max; key; operand).
/// Returns the commit version, or -1 - the current version on conflict.
const COMMIT: &str = concat!(
    r#"
local snap = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local verify = tonumber(ARGV[3])
local pos = 4
local horizon = tonumber(redis.call('GET', KEYS[6]) or '0')
local stale = -1 - tonumber(redis.call('GET', KEYS[1]) or '0')
"#,
    check_known!(),
    r#"local ranges = tonumber(ARGV[pos])
pos = pos + 1
if ranges > 0 and snap < horizon then return stale end
for r = 1, ranges do
  local from, to, kind = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2]
  pos = pos + 3
  if kind == 'p' then
    local ver = redis.call('HGET', KEYS[3], from)
    if ver and tonumber(ver) > snap then return stale end
  else
    local hi = '+'
    if kind == '1' then hi = '(' .. to end
    for _, key in ipairs(redis.call('ZRANGEBYLEX', KEYS[4], '[' .. from, hi)) do
      local ver = redis.call('HGET', KEYS[3], key)
      if ver and tonumber(ver) > snap then return stale end
    end
  end
end
-- Counters are 8 bytes little-endian; as two unsigned 32-bit halves
-- every step is exact in Lua's doubles.
local function counter(op, cur, operand)
  cur = string.sub(cur, 1, 8) .. string.rep('\0', 8 - math.min(#cur, 8))
  local lo, hi = struct.unpack('<I4I4', cur)
  local olo, ohi = struct.unpack('<I4I4', operand)
  if op == 'm' then
    if hi > ohi or (hi == ohi and lo >= olo) then return cur end
    return operand
  end
  lo = lo + olo
  local carry = 0
  if lo >= 4294967296 then lo, carry = lo - 4294967296, 1 end
  return struct.pack('<I4I4', lo, (hi + ohi + carry) % 4294967296)
end
local version = redis.call('INCR', KEYS[1])
local changed = {}
while pos <= #ARGV do
  local op, key, operand = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2]
  pos = pos + 3
  if op == 'd' then
    if redis.call('HDEL', KEYS[2], key) == 1 then
      redis.call('HSET', KEYS[3], key, version)
      redis.call('ZADD', KEYS[5], version, key)
      changed[#changed + 1] = struct.pack('>H', #key) .. key
    end
  else
    changed[#changed + 1] = struct.pack('>H', #key) .. key
    local value = operand
    if op ~= 'p' then
      value = counter(op, redis.call('HGET', KEYS[2], key) or '', operand)
    end
    -- A key with a value has no tombstone, and a key with a version is
    -- in the index: only a key new to either needs the sorted sets.
    if redis.call('HSET', KEYS[2], key, value) == 1 then
      redis.call('ZREM', KEYS[5], key)
    end
    if redis.call('HSET', KEYS[3], key, version) == 1 then
      redis.call('ZADD', KEYS[4], 0, key)
    end
  end
end
local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', version - window, 'WITHSCORES', 'LIMIT', 0, 16)
for j = 1, #old, 2 do
  redis.call('ZREM', KEYS[4], old[j])
  redis.call('HDEL', KEYS[3], old[j])
  redis.call('ZREM', KEYS[5], old[j])
  if tonumber(old[j + 1]) > horizon then horizon = tonumber(old[j + 1]) end
end
if #old > 0 then redis.call('SET', KEYS[6], horizon) end
-- The change notice (see feed.rs); a user without channel rights still
-- commits.
if #changed > 0 then
  redis.pcall('PUBLISH', KEYS[7], version .. '\n' .. table.concat(changed))
end
return version
"#
);

/// ARGV: snapshot ('' if none), number of pairs, pairs (key, version it
/// must still have: `N`, or `<N` for at most N), then keys read at the snapshot, which must not have
/// changed since. Returns 1, or -1 - the current version if one changed.
const VERIFY: &str = concat!(
    r#"
local snap = tonumber(ARGV[1])
local verify = tonumber(ARGV[2])
local stale = -1 - tonumber(redis.call('GET', KEYS[1]) or '0')
local pos = 3
"#,
    check_known!(),
    r#"if snap then
  local horizon = tonumber(redis.call('GET', KEYS[6]) or '0')
  if pos <= #ARGV and snap < horizon then return stale end
  for i = pos, #ARGV do
    local ver = tonumber(redis.call('HGET', KEYS[3], ARGV[i]) or '0')
    if ver > snap then return stale end
  end
end
return 1
"#
);

struct Scripts {
    read: Script,
    scan: Script,
    commit: Script,
    verify: Script,
}

/// What this process last saw of keys: value and version. Tracked reads
/// are answered from it and the commit (or `finish`) checks that each
/// answer's version is still the key's version; a stale entry costs a
/// retry, never a wrong answer. With the change feed subscribed (see
/// `feed`), the entries it vouches for also answer recent-snapshot reads
/// without a round trip.
#[derive(Default)]
struct Known(Mutex<KnownState>);

#[derive(Default)]
struct KnownState {
    entries: HashMap<Key, Seen>,
    /// Ranges known to hold no key but those of `entries`, by start; they
    /// never overlap.
    ranges: BTreeMap<Key, KnownRange>,
    feed: Option<feed::Feed>,
    /// Notices read but not applied yet, in commit order: the first
    /// names a key of a known range that this process is committing
    /// right now, uncovered so far (most likely the notice of that very
    /// commit, read before its reply). It waits until that commit's
    /// answer is learned (or it failed), so the range is kept or dropped
    /// rightly; until then the state vouched for is the one before it.
    held: VecDeque<feed::Notice>,
    /// Keys of this process's commits in flight that lie in a known range,
    /// with their count.
    committing: HashMap<Key, u32>,
}

/// A range in which every key without an entry in `entries` has been
/// absent since commit `asof`: learned from a complete scan or from a
/// commit that promised it (a new directory's entries, see
/// [`crate::kv::Txn::promise_empty`]), with the feed subscribed and not
/// before the newest notice then applied. Dropped as soon as that may no
/// longer hold: a notice of a key in it that no entry learned at or after
/// that commit covers, an entry in it forgotten, the feed lost. So a
/// lookup of a name that is not there, in a directory this host made or
/// listed, is answered without a round trip (the kernel asks one before
/// every create).
struct KnownRange {
    end: Option<Key>,
    asof: u64,
}

struct Seen {
    value: Option<Value>,
    /// The key's version (its last write).
    version: u64,
    /// The commit version at which `value` was known to be the key's.
    asof: u64,
    /// Learned with the feed subscribed and not before the newest notice
    /// then applied: any later change of the key will be noticed and
    /// forget it, so until then the entry holds.
    noticed: bool,
}

/// The keys of a commit in flight (see `KnownState::held`).
struct Committing {
    known: Arc<Known>,
    keys: Vec<Key>,
}

impl Drop for Committing {
    fn drop(&mut self) {
        let mut state = self.known.lock();
        for key in &self.keys {
            if let Some(count) = state.committing.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    state.committing.remove(key);
                }
            }
        }
        state.apply_held();
    }
}

/// Entries kept before the cache starts over.
const KNOWN_CAPACITY: usize = 200_000;
/// Ranges kept before they start over.
const KNOWN_RANGES: usize = 20_000;

impl KnownState {
    /// The newest commit whose notice and every one before it have been
    /// applied (`None` without a feed).
    fn applied(&self) -> Option<u64> {
        let feed = self.feed.as_ref()?;
        Some(
            self.held
                .front()
                .map_or(feed.seen, |n| n.version.saturating_sub(1)),
        )
    }

    /// Applies held notices in order, stopping at one that must wait (see
    /// `held`).
    fn apply_held(&mut self) {
        while let Some(notice) = self.held.front() {
            let version = notice.version;
            // An entry learned at or after the change covers it (this
            // host's own commit, or a later read).
            let covered = |state: &KnownState, key: &[u8]| {
                state
                    .entries
                    .get(key)
                    .is_some_and(|known| known.asof >= version)
            };
            let wait = notice.keys.iter().any(|key| {
                !covered(self, key)
                    && self.committing.contains_key(key)
                    && self.range_of(key).is_some()
            });
            if wait {
                return;
            }
            let Some(notice) = self.held.pop_front() else {
                return;
            };
            for key in notice.keys {
                if !covered(self, &key) {
                    self.forget(&key);
                }
            }
        }
    }

    /// The known range holding `key`: its start and itself.
    fn range_of(&self, key: &[u8]) -> Option<(&Key, &KnownRange)> {
        let (start, range) = self
            .ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        range
            .end
            .as_deref()
            .is_none_or(|end| key < end)
            .then_some((start, range))
    }

    /// No range vouches for `key` any more.
    fn drop_range_of(&mut self, key: &[u8]) {
        if let Some(start) = self.range_of(key).map(|(start, _)| start.clone()) {
            self.ranges.remove(&start);
        }
    }

    /// Forgets `key`, and so any range it is in (whose keys without an
    /// entry it says are absent).
    fn forget(&mut self, key: &[u8]) {
        self.entries.remove(key);
        self.drop_range_of(key);
    }
}

/// How a commit (or `finish`) checks a tracked answer given from what the
/// engine knew: by the key's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The version the entry had.
    Exactly(u64),
    /// At most this version: a key a known range said was absent, whose
    /// version no one knows, and which no commit after that one touched.
    AtMost(u64),
}

impl Expect {
    /// As the scripts take it: `N`, or `<N` for at most N.
    fn arg(self) -> String {
        match self {
            Expect::Exactly(v) => v.to_string(),
            Expect::AtMost(v) => format!("<{v}"),
        }
    }
}

impl Known {
    fn lock(&self) -> std::sync::MutexGuard<'_, KnownState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Learns keys' values and versions as they were at commit `asof`.
    fn learn(&self, asof: u64, entries: impl IntoIterator<Item = (Key, Option<Value>, u64)>) {
        let mut state = self.lock();
        let noticed = state.applied().is_some_and(|applied| asof >= applied);
        for (key, value, version) in entries {
            if state.entries.len() >= KNOWN_CAPACITY {
                state.entries.clear();
                state.ranges.clear();
            }
            let map = &mut state.entries;
            match map.get(&key) {
                // Never replace what was known later with what was known
                // earlier.
                Some(known) if known.asof > asof => {}
                _ => {
                    map.insert(
                        key,
                        Seen {
                            value,
                            version,
                            asof,
                            noticed,
                        },
                    );
                }
            }
        }
        // A held notice may be covered now.
        state.apply_held();
    }

    /// Registers the keys of a commit about to be sent that lie in a
    /// known range (the only ones whose notice may have to wait), until
    /// the guard is dropped (after its answer was learned, or it failed).
    /// A range learned while the commit is in flight misses its keys: their
    /// notice then drops it, which is only a loss of knowledge.
    fn committing<'a>(self: &Arc<Self>, keys: impl Iterator<Item = &'a Key>) -> Committing {
        let mut state = self.lock();
        let keys: Vec<Key> = keys
            .filter(|key| state.range_of(key).is_some())
            .cloned()
            .collect();
        for key in &keys {
            *state.committing.entry(key.clone()).or_default() += 1;
        }
        Committing {
            known: self.clone(),
            keys,
        }
    }

    fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a Key>) {
        let mut state = self.lock();
        for key in keys {
            state.forget(key);
        }
    }

    /// Learns that `range` held no key but those with an entry at commit
    /// `asof`; kept only while the feed can tell of later changes to it.
    fn learn_range(&self, range: &KeyRange, asof: u64) {
        let mut state = self.lock();
        let noticed = state.applied().is_some_and(|applied| asof >= applied);
        if !noticed || range.is_empty() {
            return;
        }
        if state.ranges.len() >= KNOWN_RANGES {
            state.ranges.clear();
        }
        // What overlaps the new range goes: the one holding its start and
        // those starting inside it.
        let mut overlapping: Vec<Key> = state
            .range_of(&range.start)
            .map(|(start, _)| start.clone())
            .into_iter()
            .collect();
        overlapping.extend(
            state
                .ranges
                .range::<[u8], _>((Bound::Included(range.start.as_slice()), Bound::Unbounded))
                .take_while(|(start, _)| range.contains(start))
                .map(|(start, _)| start.clone()),
        );
        for start in overlapping {
            state.ranges.remove(&start);
        }
        state.ranges.insert(
            range.start.clone(),
            KnownRange {
                end: range.end.clone(),
                asof,
            },
        );
    }

    fn install(&self, feed: feed::Feed) {
        self.lock().feed = Some(feed);
    }

    /// Applies what the feed's socket holds; on a lost feed, nothing is
    /// vouched for any more, and the reason is returned.
    fn drain(state: &mut KnownState) -> Option<String> {
        let feed = state.feed.as_mut()?;
        match feed.drain() {
            feed::Drained::Live(notices) => {
                state.held.extend(notices);
                state.apply_held();
                None
            }
            feed::Drained::Lost(why) => {
                Self::drop_feed(state);
                Some(why)
            }
        }
    }

    fn lose(&self) {
        Self::drop_feed(&mut self.lock());
    }

    fn drop_feed(state: &mut KnownState) {
        state.feed = None;
        state.ranges.clear();
        state.held.clear();
        for known in state.entries.values_mut() {
            known.noticed = false;
        }
    }

    /// The feed task's turn: applies notices and pings, with the commit
    /// counter just read. Err when the feed is gone (lost now or before).
    fn tend(&self, counter: u64) -> Result<(), String> {
        let mut state = self.lock();
        if let Some(why) = Self::drain(&mut state) {
            return Err(why);
        }
        let Some(feed) = state.feed.as_mut() else {
            return Err("the feed was lost".into());
        };
        if feed.ping(counter) {
            return Ok(());
        }
        Self::drop_feed(&mut state);
        Err("the server stopped answering pings".into())
    }

    /// Answers for `keys` at a recent snapshot, from what the feed vouches
    /// for: the snapshot `at` (or, if none yet, the newest state noticed)
    /// and per key its value, or `None` where nothing is known. `None`
    /// when the feed is not subscribed or not current, or when its state
    /// is older than `floor`, a commit this process already knows of (its
    /// own, or one a read saw): what it has seen, it sees again.
    fn recent(
        &self,
        keys: &[&Key],
        at: Option<u64>,
        floor: u64,
    ) -> Option<(u64, Vec<Option<Option<Value>>>)> {
        let mut state = self.lock();
        if let Some(why) = Self::drain(&mut state) {
            tracing::debug!(%why, "redis: change notices lost");
        }
        state.feed.as_ref().filter(|f| f.current())?;
        let applied = state.applied()?;
        let at = at.unwrap_or(applied);
        if at > applied || at < floor {
            return None;
        }
        let answers = keys
            .iter()
            .map(|key| match state.entries.get(*key) {
                Some(known) => (known.noticed && known.asof <= at).then(|| known.value.clone()),
                // Absent since the range's commit, through `applied`.
                None => state
                    .range_of(key)
                    .filter(|(_, range)| range.asof <= at)
                    .map(|_| None),
            })
            .collect();
        Some((at, answers))
    }
}

pub struct RedisEngine {
    info: redis::ConnectionInfo,
    /// Where the server is, for messages (no password).
    address: String,
    keys: Arc<[String; 7]>,
    conn: OnceCell<ConnectionManager>,
    /// Where the change feed subscribes; `None` over TLS.
    feed: Option<feed::FeedTarget>,
    scripts: Arc<Scripts>,
    /// The newest commit version this process has seen (read or written).
    latest: Arc<AtomicU64>,
    known: Arc<Known>,
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl RedisEngine {
    /// An engine for the server at `endpoint`; it connects at the first
    /// transaction.
    pub fn new(
        tls: bool,
        endpoint: &Endpoint,
        db: u32,
        credentials: &Credentials,
        params: &[(String, String)],
    ) -> KvResult<RedisEngine> {
        for (name, value) in params {
            if !["prefix", "insecure", "notices"].contains(&name.as_str()) {
                return Err(KvError::Fatal(format!(
                    "unknown redis URL parameter '{name}' (known: prefix, insecure, notices)"
                )));
            }
            if name == "notices" && !["0", "1"].contains(&value.as_str()) {
                return Err(KvError::Fatal(format!(
                    "redis URL parameter notices={value}: give notices=1 (subscribe to change notices, the default) or notices=0"
                )));
            }
        }
        let addr = if tls {
            ConnectionAddr::TcpTls {
                host: endpoint.host.clone(),
                port: endpoint.port,
                insecure: param(params, "insecure").is_some_and(|v| v == "1" || v == "true"),
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(endpoint.host.clone(), endpoint.port)
        };
        let mut settings = RedisConnectionInfo::default().set_db(i64::from(db));
        if let Some(user) = &credentials.user {
            settings = settings.set_username(user);
        }
        if let Some(password) = &credentials.password {
            settings = settings.set_password(password.expose());
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| KvError::Fatal(format!("redis: {e}")))?
            .set_redis_settings(settings);
        let prefix = param(params, "prefix").unwrap_or("jfs");
        // Channels are server-wide, not per database: the name says both.
        let channel = format!("{prefix}:changes:{db}");
        let keys = ["c", "v", "n", "i", "t", "h", "-"].map(|k| match k {
            "-" => channel.clone(),
            k => format!("{prefix}:{k}"),
        });
        // Every commit publishes; subscribing is what costs the server (a
        // write per commit per subscriber), so it may be left out.
        let subscribe = !tls && param(params, "notices") != Some("0");
        let feed = subscribe.then(|| feed::FeedTarget {
            host: endpoint.host.clone(),
            port: endpoint.port,
            user: credentials.user.clone(),
            password: credentials.password.clone(),
            channel: channel.clone(),
            counter: keys[0].clone(),
        });
        Ok(RedisEngine {
            info,
            address: format!("{}{endpoint}/{db}", if tls { "rediss://" } else { "" }),
            keys: Arc::new(keys),
            conn: OnceCell::new(),
            feed,
            scripts: Arc::new(Scripts {
                read: Script::new(READ),
                scan: Script::new(SCAN),
                commit: Script::new(COMMIT),
                verify: Script::new(VERIFY),
            }),
            known: Arc::default(),
            latest: Arc::default(),
        })
    }

    async fn conn(&self) -> KvResult<ConnectionManager> {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let client = redis::Client::open(self.info.clone())
                    .map_err(|e| connect_error(&self.address, &e))?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(Some(Duration::from_secs(10)))
                    .set_number_of_retries(2);
                let conn = client
                    .get_connection_manager_with_config(config)
                    .await
                    .map_err(|e| connect_error(&self.address, &e))?;
                if let Some(target) = &self.feed {
                    tokio::spawn(feed::run(
                        Arc::downgrade(&self.known),
                        target.clone(),
                        conn.clone(),
                    ));
                }
                Ok::<_, KvError>(conn)
            })
            .await?;
        Ok(conn.clone())
    }
}

impl RedisEngine {
    async fn begin_txn(&self, recent: bool) -> KvResult<Box<dyn EngineTxn>> {
        Ok(Box::new(RedisTxn {
            conn: self.conn().await?,

            keys: self.keys.clone(),
            scripts: self.scripts.clone(),
            snapshot: None,
            seen: HashMap::new(),
            floor: self.latest.load(Ordering::Relaxed),
            latest: self.latest.clone(),
            known: self.known.clone(),
            verify: Vec::new(),
            recent,
        }))
    }
}

fn connect_error(address: &str, e: &redis::RedisError) -> KvError {
    let text = e.to_string();
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || text.contains("WRONGPASS")
        || text.contains("invalid password")
        || text.contains("NOAUTH")
        || text.contains("Authentication required")
    {
        return KvError::Fatal(format!(
            "redis at {address}: authentication failed (no password, or a wrong user name or password): give them in the URL (redis://USER:PASSWORD@host/db) or in META_PASSWORD / REDIS_PASSWORD"
        ));
    }
    if e.is_connection_refusal() || e.is_timeout() || e.is_io_error() {
        return KvError::Transient(format!(
            "redis at {address} does not answer ({text}): check that redis-server runs there and the address and port are right"
        ));
    }
    KvError::Fatal(format!("redis at {address}: {text}"))
}

/// Errors of a read: the server may be back on the next attempt.
fn read_error(e: &redis::RedisError) -> KvError {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
        return KvError::Transient(format!("redis: {e}"));
    }
    let text = e.to_string();
    if text.contains("OOM") {
        return KvError::Fatal(format!(
            "redis is out of memory (maxmemory reached): {text}; raise maxmemory or free space, metadata must not be evicted"
        ));
    }
    if text.contains("LOADING") || text.contains("BUSY") || text.contains("TRYAGAIN") {
        return KvError::Transient(format!("redis: {text}"));
    }
    KvError::Fatal(format!("redis: {text}"))
}

#[async_trait]
impl Engine for RedisEngine {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn limits(&self) -> Limits {
        LIMITS
    }

    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>> {
        self.begin_txn(false).await
    }

    async fn begin_recent(&self) -> KvResult<Box<dyn EngineTxn>> {
        self.begin_txn(true).await
    }

    async fn sync(&self) -> KvResult<()> {
        // What Redis acknowledged is as durable as its appendfsync setting.
        Ok(())
    }

    async fn notes(&self) -> KvResult<Vec<String>> {
        let mut conn = self.conn().await?;
        let started = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| connect_error(&self.address, &e))?;
        let ping = started.elapsed();
        let mut notes = vec![format!(
            "redis at {}: ping {:.2} ms",
            self.address,
            ping.as_secs_f64() * 1000.0
        )];
        // CONFIG may be disabled (managed services): then say nothing.
        let policy: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await;
        if let Ok(policy) = policy {
            if let Some(value) = policy.get(1).filter(|v| v.as_str() != "noeviction") {
                notes.push(format!(
                    "warning: redis maxmemory-policy is '{value}': Redis may evict metadata when memory is full and the volume would lose files; set it to 'noeviction' (CONFIG SET maxmemory-policy noeviction, and in redis.conf)"
                ));
            }
        }
        Ok(notes)
    }
}

struct RedisTxn {
    conn: ConnectionManager,
    keys: Arc<[String; 7]>,
    scripts: Arc<Scripts>,
    /// The commit version this transaction reads at; fixed by its first read.
    snapshot: Option<u64>,
    /// What this transaction has read, so that reading again agrees.
    seen: HashMap<Key, Option<Value>>,
    /// The engine's newest version seen, at begin.
    floor: u64,
    latest: Arc<AtomicU64>,
    known: Arc<Known>,
    /// Keys answered from `known`, with the version each must still have.
    verify: Vec<(Key, Expect)>,
    /// Begun with `begin_recent`: snapshot reads may be answered from
    /// what the change feed vouches for.
    recent: bool,
}

impl RedisTxn {
    fn invocation<'a>(&self, script: &'a Script) -> redis::ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys.iter() {
            invocation.key(key);
        }
        invocation.arg(self.snapshot.map(|s| s.to_string()).unwrap_or_default());
        invocation
    }

    /// Takes the snapshot from a read's answer; -1 means a key changed
    /// after the snapshot.
    fn take_snapshot(&mut self, first: Option<&redis::Value>) -> KvResult<()> {
        match first {
            Some(redis::Value::Int(v)) if *v >= 0 => {
                self.snapshot.get_or_insert(*v as u64);
                self.latest.fetch_max(*v as u64, Ordering::Relaxed);
                Ok(())
            }
            Some(redis::Value::Int(_)) => Err(KvError::Conflict(
                "redis: a key read was written after this transaction's snapshot".into(),
            )),
            other => Err(KvError::Fatal(format!(
                "redis: unexpected answer to a read: {other:?}"
            ))),
        }
    }
}

fn bytes(value: redis::Value) -> KvResult<Option<Value>> {
    match value {
        redis::Value::Nil => Ok(None),
        redis::Value::BulkString(b) => Ok(Some(b)),
        redis::Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        other => Err(KvError::Fatal(format!(
            "redis: unexpected value in an answer: {other:?}"
        ))),
    }
}

fn version(value: Option<redis::Value>) -> KvResult<u64> {
    match value {
        Some(redis::Value::Int(v)) if v >= 0 => Ok(v as u64),
        other => Err(KvError::Fatal(format!(
            "redis: unexpected version in an answer: {other:?}"
        ))),
    }
}

impl RedisTxn {
    /// Reads `keys` at the snapshot (one script call); remembers them.
    async fn fetch(&mut self, keys: &[&Key]) -> KvResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut invocation = self.invocation(&self.scripts.read);
        for key in keys {
            invocation.arg(key.as_slice());
        }
        let answer: Vec<redis::Value> = invocation
            .invoke_async(&mut self.conn)
            .await
            .map_err(|e| read_error(&e))?;
        self.take_snapshot(answer.first())?;
        if answer.len() != 2 * keys.len() + 1 {
            return Err(KvError::Fatal(format!(
                "redis: read answer of {} items for {} keys",
                answer.len(),
                keys.len()
            )));
        }
        let mut rest = answer.into_iter().skip(1);
        let mut learned = Vec::with_capacity(keys.len());
        for key in keys {
            let value = rest.next().map(bytes).transpose()?.flatten();
            let version = version(rest.next())?;
            self.seen.insert((*key).clone(), value.clone());
            learned.push(((*key).clone(), value, version));
        }
        if let Some(asof) = self.snapshot {
            self.known.learn(asof, learned);
        }
        Ok(())
    }

    /// Forgets what this transaction read and wrote: after a conflict or
    /// an unknown outcome, what the engine knew of them may be stale.
    fn forget_all(&self, request: Option<&CommitRequest>) {
        self.known.forget(self.seen.keys());
        if let Some(request) = request {
            self.known.forget(request.mutations.iter().map(|(k, _)| k));
        }
    }
}

#[async_trait]
impl EngineTxn for RedisTxn {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        Ok(self
            .batch_get(&[key.to_vec()])
            .await?
            .pop()
            .unwrap_or_default())
    }

    async fn batch_get(&mut self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        let mut missing: Vec<&Key> = keys
            .iter()
            .filter(|k| !self.seen.contains_key(*k))
            .collect();
        if self.recent && !missing.is_empty() {
            let floor = self.latest.load(Ordering::Relaxed);
            if let Some((at, answers)) = self.known.recent(&missing, self.snapshot, floor) {
                let mut rest = Vec::new();
                for (key, answer) in missing.into_iter().zip(answers) {
                    match answer {
                        Some(value) => {
                            self.snapshot = Some(at);
                            self.seen.insert(key.clone(), value);
                        }
                        None => rest.push(key),
                    }
                }
                missing = rest;
            }
        }
        self.fetch(&missing).await?;
        Ok(keys.iter().map(|k| self.seen[k].clone()).collect())
    }

    async fn get_tracked(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        Ok(self
            .batch_get_tracked(&[key.to_vec()])
            .await?
            .pop()
            .unwrap_or_default())
    }

    async fn batch_get_tracked(&mut self, keys: &[Key]) -> KvResult<Vec<Option<Value>>> {
        let mut missing: Vec<&Key> = Vec::new();
        {
            let known = self.known.lock();
            for key in keys {
                if self.seen.contains_key(key) {
                    continue;
                }
                match known.entries.get(key) {
                    Some(entry) => {
                        self.seen.insert(key.clone(), entry.value.clone());
                        self.verify
                            .push((key.clone(), Expect::Exactly(entry.version)));
                    }
                    // Absent since the range's commit and through every
                    // notice applied: still absent if no commit after
                    // both wrote it.
                    None => match (known.applied(), known.range_of(key)) {
                        (Some(applied), Some((_, range))) => {
                            self.seen.insert(key.clone(), None);
                            let since = range.asof.max(applied);
                            self.verify.push((key.clone(), Expect::AtMost(since)));
                        }
                        _ => missing.push(key),
                    },
                }
            }
        }
        self.fetch(&missing).await?;
        Ok(keys.iter().map(|k| self.seen[k].clone()).collect())
    }

    async fn finish(mut self: Box<Self>) -> KvResult<()> {
        if self.verify.is_empty() {
            return Ok(());
        }
        // Answers from what the engine knew hold now; so must the ones
        // read at the snapshot, for all of them to hold at one time.
        let mut invocation = self.invocation(&self.scripts.verify);
        invocation.arg(self.verify.len());
        let verified: HashSet<&[u8]> = self.verify.iter().map(|(k, _)| k.as_slice()).collect();
        for (key, expect) in &self.verify {
            invocation.arg(key.as_slice()).arg(expect.arg());
        }
        for key in self.seen.keys() {
            if !verified.contains(key.as_slice()) {
                invocation.arg(key.as_slice());
            }
        }
        let answer: i64 = invocation
            .invoke_async(&mut self.conn)
            .await
            .map_err(|e| read_error(&e))?;
        if answer >= 0 {
            return Ok(());
        }
        self.latest
            .fetch_max((-1 - answer) as u64, Ordering::Relaxed);
        self.forget_all(None);
        Err(KvError::Conflict(
            "redis: a key read was written since this process last saw it".into(),
        ))
    }

    async fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> KvResult<Vec<(Key, Value)>> {
        if limit == 0 || range.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.invocation(&self.scripts.scan);
        invocation
            .arg(range.start.as_slice())
            .arg(range.end.as_deref().unwrap_or_default())
            .arg(if range.end.is_some() { "1" } else { "0" })
            .arg(limit.min(i64::MAX as usize) as u64)
            .arg(if reverse { "1" } else { "0" })
            .arg(limit.clamp(1, SCAN_BATCH) as u64 + 8);
        let answer: Vec<redis::Value> = invocation
            .invoke_async(&mut self.conn)
            .await
            .map_err(|e| read_error(&e))?;
        self.take_snapshot(answer.first())?;
        let mut entries = Vec::with_capacity(answer.len() / 3);
        let mut learned = Vec::with_capacity(answer.len() / 3);
        let mut rest = answer.into_iter().skip(1);
        while let Some(key) = rest.next() {
            let (Some(key), Some(value)) =
                (bytes(key)?, rest.next().map(bytes).transpose()?.flatten())
            else {
                return Err(KvError::Fatal("redis: nil in a scan answer".into()));
            };
            learned.push((key.clone(), Some(value.clone()), version(rest.next())?));
            entries.push((key, value));
        }
        if let Some(asof) = self.snapshot {
            self.known.learn(asof, learned);
            // All of the range came back: it holds nothing else.
            if entries.len() < limit {
                self.known.learn_range(range, asof);
            }
        }
        Ok(entries)
    }

    async fn commit(mut self: Box<Self>, request: CommitRequest) -> KvResult<()> {
        if request.mutations.is_empty() {
            return self.finish().await;
        }
        // Points answered from what the engine knew are checked by
        // version; the rest against the snapshot.
        let verified: HashSet<&[u8]> = self.verify.iter().map(|(k, _)| k.as_slice()).collect();
        let ranges: Vec<&KeyRange> = request
            .read_conflicts
            .iter()
            .filter(|r| {
                !(r.end.as_deref() == Some(key_after(&r.start).as_slice())
                    && verified.contains(r.start.as_slice()))
            })
            .collect();
        if self.snapshot.is_none() && !ranges.is_empty() {
            // Conflicts without a read at the snapshot: check them against
            // the newest version this process had seen when the
            // transaction began (older than its true start: only more
            // conservative).
            self.snapshot = Some(self.floor);
        }
        let mut invocation = self.invocation(&self.scripts.commit);
        invocation.arg(TOMBSTONE_WINDOW);
        invocation.arg(self.verify.len());
        for (key, expect) in &self.verify {
            invocation.arg(key.as_slice()).arg(expect.arg());
        }
        invocation.arg(ranges.len());
        for range in ranges {
            let point = range.end.as_deref() == Some(key_after(&range.start).as_slice());
            invocation
                .arg(range.start.as_slice())
                .arg(range.end.as_deref().unwrap_or_default())
                .arg(match (&range.end, point) {
                    (_, true) => "p",
                    (Some(_), false) => "1",
                    (None, false) => "0",
                });
        }
        for (key, mutation) in &request.mutations {
            let (op, operand): (&str, &[u8]) = match mutation {
                Mutation::Put(value) => ("p", value),
                Mutation::Delete => ("d", &[]),
                Mutation::Add(delta) => ("a", &delta.to_le_bytes()),
                Mutation::Max(at_least) => ("m", &at_least.to_le_bytes()),
            };
            invocation.arg(op).arg(key.as_slice()).arg(operand);
        }
        let _committing = self
            .known
            .committing(request.mutations.iter().map(|(k, _)| k));
        let answer: redis::RedisResult<i64> = invocation.invoke_async(&mut self.conn).await;
        match answer {
            Ok(v) if v >= 0 => {
                let v = v as u64;
                self.latest.fetch_max(v, Ordering::Relaxed);
                // Puts are known exactly, and so are deletes of keys this
                // transaction read as present (the delete gave them
                // version `v`); deletes of keys that may not have
                // existed, adds and maxes are not.
                let mut learned = Vec::new();
                let mut unknown = Vec::new();
                for (key, mutation) in &request.mutations {
                    match mutation {
                        Mutation::Put(value) => learned.push((key.clone(), Some(value.clone()), v)),
                        Mutation::Delete if matches!(self.seen.get(key), Some(Some(_))) => {
                            learned.push((key.clone(), None, v))
                        }
                        _ => unknown.push(key),
                    }
                }
                self.known.forget(unknown);
                self.known.learn(v, learned);
                // A promised range is known from this commit on, unless a
                // counter the commit changed lies in it (its value is not
                // known here; a deleted key is known absent).
                for range in &request.empty_after {
                    let counters = request.mutations.iter().any(|(key, m)| {
                        range.contains(key) && matches!(m, Mutation::Add(_) | Mutation::Max(_))
                    });
                    if !counters {
                        self.known.learn_range(range, v);
                    }
                }
                Ok(())
            }
            Ok(v) => {
                // A retry checks against at least the current version.
                self.latest.fetch_max((-1 - v) as u64, Ordering::Relaxed);
                self.forget_all(Some(&request));
                Err(KvError::Conflict(
                    "redis: a key this transaction read was written after it was read".into(),
                ))
            }
            Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => {
                self.forget_all(Some(&request));
                Err(KvError::MaybeCommitted(format!(
                    "redis: connection lost during commit: {e}"
                )))
            }
            Err(e) => {
                self.forget_all(Some(&request));
                Err(read_error(&e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(asof: u64) -> Seen {
        Seen {
            value: Some(b"v".to_vec()),
            version: asof,
            asof,
            noticed: true,
        }
    }

    fn notice(version: u64, keys: &[&[u8]]) -> feed::Notice {
        feed::Notice {
            version,
            keys: keys.iter().map(|k| k.to_vec()).collect(),
        }
    }

    fn with_range() -> KnownState {
        let mut state = KnownState::default();
        state.ranges.insert(
            b"d/".to_vec(),
            KnownRange {
                end: Some(b"d0".to_vec()),
                asof: 3,
            },
        );
        state
    }

    #[test]
    fn a_notice_of_a_key_being_committed_here_waits_for_the_answer() {
        // The notice of this host's own commit, read before its reply: the
        // range stays once the reply's entry covers the key.
        let mut state = with_range();
        state.committing.insert(b"d/x".to_vec(), 1);
        state.held.push_back(notice(5, &[b"d/x"]));
        state.held.push_back(notice(6, &[b"e"]));
        state.apply_held();
        assert_eq!(state.held.len(), 2, "the notice waits, and all after it");
        state.entries.insert(b"d/x".to_vec(), seen(5));
        state.committing.clear();
        state.apply_held();
        assert!(state.held.is_empty());
        assert!(state.range_of(b"d/y").is_some(), "the range is kept");

        // The commit failed (no entry): the notice is another host's, and
        // the range goes.
        state.committing.insert(b"d/z".to_vec(), 1);
        state.held.push_back(notice(7, &[b"d/z"]));
        state.apply_held();
        assert_eq!(state.held.len(), 1);
        state.committing.clear();
        state.apply_held();
        assert!(state.held.is_empty());
        assert!(state.range_of(b"d/y").is_none(), "the range is dropped");
    }

    #[test]
    fn notices_of_others_drop_what_they_touch_and_only_that() {
        let mut state = with_range();
        state.entries.insert(b"d/a".to_vec(), seen(4));
        state.entries.insert(b"e".to_vec(), seen(4));
        // Outside the range, not committed here: applied at once.
        state.held.push_back(notice(5, &[b"e"]));
        state.apply_held();
        assert!(state.held.is_empty());
        assert!(!state.entries.contains_key(b"e".as_slice()));
        assert!(state.range_of(b"d/q").is_some());
        // A key of the range learned later than the notice covers it.
        state.entries.insert(b"d/b".to_vec(), seen(9));
        state.held.push_back(notice(8, &[b"d/b"]));
        state.apply_held();
        assert!(state.range_of(b"d/q").is_some());
        // An entry of the range older than the change: entry and range go.
        state.held.push_back(notice(10, &[b"d/a"]));
        state.apply_held();
        assert!(!state.entries.contains_key(b"d/a".as_slice()));
        assert!(state.range_of(b"d/q").is_none());
        assert!(state.range_of(b"d0").is_none() && state.range_of(b"c").is_none());
    }
}
