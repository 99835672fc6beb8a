//! Change notices: how a Redis engine learns, without asking, which keys
//! other processes changed, so that recent-snapshot reads
//! ([`crate::kv::Engine::begin_recent`]) can be answered from what it
//! knows.
//!
//! Every commit script publishes its version and the keys it wrote on the
//! volume's channel (`PREFIX:changes:DB`). The engine keeps one more
//! connection, subscribed to it, and applies the notices to what it knows
//! (`Known`): a key changed after the state an entry describes is
//! forgotten. Redis delivers a connection's messages in commit order, so
//! once the notice of commit `v` is applied, every entry learned at or
//! after the newest notice then applied (and not forgotten since) holds at
//! `v`: together they are the store's state at `v`.
//!
//! Notices are read whenever a recent read asks (a non-blocking read of
//! the socket, so a notice already delivered to this host is never missed)
//! and every [`PING_EVERY`] by the feed's task, which also checks the
//! feed: it reads the commit counter, then pings; the answer to the ping
//! comes after every notice published before it, so by then the notices
//! must have reached the counter read. If they have, the state known is
//! confirmed as of the ping; if not, some commit published no notice (a
//! client of an older jfs, or a user without channel rights) and the
//! feed is dropped. Known state last confirmed longer ago than
//! [`CURRENT_FOR`] (a feed that stopped answering, or one that missed a
//! commit), or with the feed lost, answers nothing until the feed is
//! subscribed again. No thread is woken per commit.
//!
//! Not for `rediss://` (the feed speaks plain TCP): recent reads there are
//! ordinary reads.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::Weak;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use super::Known;
use crate::kv::url::Secret;

/// How often the feed's task reads notices and pings.
pub(super) const PING_EVERY: Duration = Duration::from_millis(250);
/// Known state whose last confirmed ping was sent longer ago than this is
/// not answered from: the kernel's default attribute and entry timeout,
/// which a recent read stands in for.
pub(super) const CURRENT_FOR: Duration = Duration::from_secs(1);
/// Wait before subscribing again after the feed was lost.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// Wait before trying again after the server refused the subscription
/// (for example an ACL user without channel rights).
const REFUSED_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Where and as whom the feed connects.
#[derive(Clone)]
pub(super) struct FeedTarget {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub channel: String,
    /// The commit counter's Redis key.
    pub counter: String,
}

/// A subscribed connection and what has been applied from it.
pub(super) struct Feed {
    /// Read with plain non-blocking syscalls, not through the runtime:
    /// the runtime's readiness lags the socket until its driver next
    /// polls, and a read must see every notice already delivered.
    stream: std::net::TcpStream,
    buf: Vec<u8>,
    /// Every notice up to this commit version has been applied.
    pub seen: u64,
    /// Pings not answered yet, oldest first: when each was sent and the
    /// commit counter read just before.
    pings: VecDeque<(Instant, u64)>,
    /// Send time of the newest answered ping: every notice published
    /// before it has been applied.
    confirmed: Instant,
}

/// One notice: a commit's version and the keys it wrote.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Notice {
    pub version: u64,
    pub keys: Vec<Vec<u8>>,
}

/// What reading the feed's socket found.
pub(super) enum Drained {
    /// Still subscribed; the notices read, in commit order.
    Live(Vec<Notice>),
    /// The connection ended or sent something unexpected.
    Lost(String),
}

impl Feed {
    /// True when what was applied is recent enough to answer from.
    pub fn current(&self) -> bool {
        self.confirmed.elapsed() < CURRENT_FOR
    }

    /// Reads what the socket holds, without waiting.
    pub fn drain(&mut self) -> Drained {
        let mut chunk = [0u8; 16 << 10];
        loop {
            match (&self.stream).read(&mut chunk) {
                Ok(0) => return Drained::Lost("the server closed the connection".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Drained::Lost(e.to_string()),
            }
        }
        let mut notices = Vec::new();
        let mut at = 0;
        loop {
            let frame = match parse(&self.buf[at..]) {
                Ok(Some((frame, used))) => {
                    at += used;
                    frame
                }
                Ok(None) => break,
                Err(e) => return Drained::Lost(e),
            };
            match frame {
                Frame::Array(items) => match items.first() {
                    Some(Frame::Bulk(kind)) if kind == b"message" => {
                        let Some(Frame::Bulk(payload)) = items.get(2) else {
                            return Drained::Lost("a message without payload".into());
                        };
                        match decode_notice(payload) {
                            Some(notice) => {
                                self.seen = self.seen.max(notice.version);
                                notices.push(notice);
                            }
                            None => return Drained::Lost("a malformed change notice".into()),
                        }
                    }
                    Some(Frame::Bulk(kind)) if kind == b"pong" => {
                        if let Some((sent, counter)) = self.pings.pop_front() {
                            if self.seen < counter {
                                return Drained::Lost(format!(
                                    "commits up to {counter} happened but notices only up to {}: a client that publishes none (an older jfs, or a Redis user without channel rights) writes to this volume",
                                    self.seen
                                ));
                            }
                            self.confirmed = sent;
                        }
                    }
                    _ => {}
                },
                Frame::Error(e) => return Drained::Lost(e),
                _ => {}
            }
        }
        self.buf.drain(..at);
        Drained::Live(notices)
    }

    /// Sends a ping, to be answered after the notices of every commit up
    /// to `counter` (read before); false when the socket cannot take it
    /// or too many are unanswered (the server stopped answering).
    pub fn ping(&mut self, counter: u64) -> bool {
        if PING_EVERY * self.pings.len() as u32 > 2 * CURRENT_FOR {
            return false;
        }
        let ping = command(&[b"PING"]);
        match (&self.stream).write(&ping) {
            Ok(n) if n == ping.len() => {
                self.pings.push_back((Instant::now(), counter));
                true
            }
            // A partial write of a few bytes into an empty buffer does not
            // happen short of a broken connection.
            _ => false,
        }
    }
}

/// `version\n` then per key a big-endian u16 length and the key, as the
/// commit script publishes it.
pub(super) fn decode_notice(payload: &[u8]) -> Option<Notice> {
    let newline = payload.iter().position(|&b| b == b'\n')?;
    let version = std::str::from_utf8(&payload[..newline])
        .ok()?
        .parse()
        .ok()?;
    let mut rest = &payload[newline + 1..];
    let mut keys = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        if rest.len() < 2 + len {
            return None;
        }
        keys.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    Some(Notice { version, keys })
}

/// A RESP2 reply, as far as the feed needs one.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Frame>),
}

/// One frame from the front of `buf` and the bytes it took, or `None`
/// when `buf` holds only part of one.
fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, String> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = &buf[1..end];
    let after = end + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    let number = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("a bad length in a reply: {:?}", text()))
    };
    match buf.first() {
        Some(b'+') => Ok(Some((Frame::Simple(text()), after))),
        Some(b'-') => Ok(Some((Frame::Error(text()), after))),
        Some(b':') => Ok(Some((Frame::Int(number()?), after))),
        Some(b'$') => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Frame::Nil, after)));
            }
            let len = len as usize;
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            Ok(Some((
                Frame::Bulk(buf[after..after + len].to_vec()),
                after + len + 2,
            )))
        }
        Some(b'*') => {
            let count = number()?;
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..count.max(0) {
                match parse(&buf[at..])? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Frame::Array(items), at)))
        }
        _ => Err(format!("an unexpected reply: {:?}", text())),
    }
}

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends `args` and waits for one reply (before the feed is installed).
async fn call(stream: &tokio::net::TcpStream, args: &[&[u8]]) -> Result<Frame, String> {
    let request = command(args);
    let mut sent = 0;
    while sent < request.len() {
        stream.writable().await.map_err(|e| e.to_string())?;
        match stream.try_write(&request[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((frame, _)) = parse(&buf)? {
            return Ok(frame);
        }
        stream.readable().await.map_err(|e| e.to_string())?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Connects, authenticates and subscribes. `Err((message, refused))`:
/// refused when the server said no (retrying soon will not help).
async fn subscribe(target: &FeedTarget) -> Result<tokio::net::TcpStream, (String, bool)> {
    let connect = tokio::net::TcpStream::connect((target.host.as_str(), target.port));
    let stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| ("connect timed out".to_string(), false))?
        .map_err(|e| (e.to_string(), false))?;
    let _ = stream.set_nodelay(true);
    let lost = |e: String| (e, false);
    if let Some(password) = &target.password {
        let mut args: Vec<&[u8]> = vec![b"AUTH"];
        if let Some(user) = &target.user {
            args.push(user.as_bytes());
        }
        args.push(password.expose().as_bytes());
        if let Frame::Error(e) = call(&stream, &args).await.map_err(lost)? {
            return Err((format!("authentication: {e}"), true));
        }
    }
    match call(&stream, &[b"SUBSCRIBE", target.channel.as_bytes()])
        .await
        .map_err(lost)?
    {
        Frame::Array(items) if items.first() == Some(&Frame::Bulk(b"subscribe".to_vec())) => {
            Ok(stream)
        }
        Frame::Error(e) => Err((e, true)),
        other => Err((
            format!("an unexpected answer to SUBSCRIBE: {other:?}"),
            false,
        )),
    }
}

/// The feed's task: subscribes, installs the feed in `known`, reads and
/// pings every [`PING_EVERY`], subscribes again when the feed is lost.
/// Ends when the engine is gone.
pub(super) async fn run(known: Weak<Known>, target: FeedTarget, mut conn: ConnectionManager) {
    let mut warned = false;
    loop {
        let wait = match subscribe(&target).await {
            Ok(stream) => {
                // Subscribed first, then the counter: every commit after
                // the version read is noticed.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::debug!(error = %e, "redis: change feed socket");
                        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
                        continue;
                    }
                };
                let counter: redis::RedisResult<Option<u64>> = redis::cmd("GET")
                    .arg(&target.counter)
                    .query_async(&mut conn)
                    .await;
                match (counter, known.upgrade()) {
                    (Ok(version), Some(k)) => {
                        k.install(Feed {
                            stream,
                            buf: Vec::new(),
                            seen: version.unwrap_or(0),
                            pings: VecDeque::new(),
                            confirmed: Instant::now(),
                        });
                        tracing::debug!(channel = %target.channel, "redis: change notices subscribed");
                        match tend(&known, &target, &mut conn).await {
                            Some(why) if !warned => {
                                tracing::warn!("redis: change notices lost ({why}); lookups and getattrs read from the server until they are back");
                                warned = true;
                            }
                            Some(why) => tracing::debug!(%why, "redis: change notices lost"),
                            None => return,
                        }
                        RESUBSCRIBE_AFTER
                    }
                    (_, None) => return,
                    (Err(_), Some(_)) => RESUBSCRIBE_AFTER,
                }
            }
            Err((e, refused)) => {
                if !warned {
                    tracing::warn!(
                        "redis: cannot subscribe to change notices ({e}): lookups and getattrs read from the server each time (grant the user channel rights, e.g. ACL '&*', to let them be answered locally)"
                    );
                    warned = true;
                }
                if refused {
                    REFUSED_RETRY_AFTER
                } else {
                    RESUBSCRIBE_AFTER
                }
            }
        };
        tokio::time::sleep(wait).await;
        if known.strong_count() == 0 {
            return;
        }
    }
}

/// Reads, checks and pings until the feed is lost (why) or the engine
/// is gone (`None`).
async fn tend(
    known: &Weak<Known>,
    target: &FeedTarget,
    conn: &mut ConnectionManager,
) -> Option<String> {
    loop {
        tokio::time::sleep(PING_EVERY).await;
        let counter: redis::RedisResult<Option<u64>> = redis::cmd("GET")
            .arg(&target.counter)
            .query_async(conn)
            .await;
        let k = known.upgrade()?;
        let counter = match counter {
            Ok(counter) => counter.unwrap_or(0),
            Err(e) => {
                k.lose();
                return Some(format!("reading the commit counter: {e}"));
            }
        };
        if let Err(why) = k.tend(counter) {
            return Some(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_decode_as_the_commit_script_writes_them() {
        let mut payload = b"42\n".to_vec();
        for key in [&b"a"[..], b"", b"\x00\xff\n"] {
            payload.extend_from_slice(&(key.len() as u16).to_be_bytes());
            payload.extend_from_slice(key);
        }
        assert_eq!(
            decode_notice(&payload),
            Some(Notice {
                version: 42,
                keys: vec![b"a".to_vec(), vec![], b"\x00\xff\n".to_vec()]
            })
        );
        assert_eq!(
            decode_notice(b"7\n"),
            Some(Notice {
                version: 7,
                keys: vec![]
            })
        );
        assert_eq!(decode_notice(b"7\n\x00\x05ab"), None, "a key cut short");
        assert_eq!(decode_notice(b"x\n"), None, "not a version");
    }

    #[test]
    fn replies_parse_whole_or_wait_for_the_rest() {
        let message = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nA\r\n\r\n";
        let (frame, used) = parse(message).unwrap().unwrap();
        assert_eq!(used, message.len());
        assert_eq!(
            frame,
            Frame::Array(vec![
                Frame::Bulk(b"message".to_vec()),
                Frame::Bulk(b"ch".to_vec()),
                Frame::Bulk(b"A\r\n".to_vec()),
            ])
        );
        for cut in 0..message.len() {
            assert_eq!(parse(&message[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(
            parse(b"-NOPERM no\r\n").unwrap(),
            Some((Frame::Error("NOPERM no".into()), 12))
        );
        assert!(parse(b"?\r\n").is_err());
    }
}
