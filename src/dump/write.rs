//! Writing a dump: a depth-first walk of the tree that pages through each
//! directory's entries across transactions (a page of entries per open
//! level in memory) and streams the JSON out as it goes.
//!
//! A dump is not one snapshot: each page is read in a transaction of its
//! own, as JuiceFS's dump of a live volume. Dump a quiet volume (or a
//! read-only mount's) for an exact copy.

use std::collections::VecDeque;
use std::io::Write;

use serde_json::json;

use super::{
    escape, DumpError, DumpedAttr, DumpedChunk, DumpedDelFile, DumpedSlice, DumpedXattr,
    JFS_DATA_FORMAT,
};
use crate::kv::{decode_counter, KeyRange};
use crate::meta::keys::{self, tag, Ino};
use crate::meta::{decode_dentry, Attr, FileKind, Meta, SliceRecord, ROOT_INO};

/// Entries read per page of a directory.
const PAGE_ENTRIES: usize = 256;

pub struct DumpOptions {
    /// Keep the object storage's secret key in `Setting` (else "removed").
    pub keep_secret_key: bool,
}

/// What a dump wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct DumpStats {
    /// Entries written (names; a file with two links counts twice).
    pub entries: u64,
    /// Entries whose inode is missing (skipped; `jfs fsck` reports them).
    pub dangling: u64,
}

/// One entry of a directory page, with what the dump writes of it.
struct Child {
    name: Vec<u8>,
    ino: Ino,
    attr: Attr,
    symlink: Option<Vec<u8>>,
    xattrs: Vec<DumpedXattr>,
    chunks: Vec<DumpedChunk>,
}

/// A directory being written: its entries not yet written, and where
/// the next page starts.
struct Level {
    ino: Ino,
    pending: VecDeque<Child>,
    next: Option<KeyRange>,
    wrote_any: bool,
}

/// Writes the dump of `meta`'s volume to `out`; `progress` is called with
/// the number of entries written so far.
pub async fn dump(
    meta: &Meta,
    out: &mut dyn Write,
    options: &DumpOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<DumpStats, DumpError> {
    let mut stats = DumpStats::default();
    write_header(meta, out, options).await?;
    let root = read_child(meta, b"", ROOT_INO, FileKind::Directory)
        .await?
        .ok_or_else(|| DumpError::Format("the root directory has no attributes".into()))?;
    write!(out, "\n  \"FSTree\": ")?;
    open_directory(out, &root, 1)?;
    let mut levels = vec![Level {
        ino: ROOT_INO,
        pending: VecDeque::new(),
        next: Some(keys::dentries(ROOT_INO)),
        wrote_any: false,
    }];
    while let Some(level) = levels.last_mut() {
        if level.pending.is_empty() {
            if let Some(range) = level.next.take() {
                let page = meta.db().scan_page(&range, PAGE_ENTRIES).await?;
                level.next = page.next;
                for (key, value) in page.entries {
                    let name = keys::dentry_name(level.ino, &key).unwrap_or_default();
                    let Some((kind, ino)) = decode_dentry(&value) else {
                        stats.dangling += 1;
                        continue;
                    };
                    match read_child(meta, name, ino, kind).await? {
                        Some(child) => level.pending.push_back(child),
                        None => stats.dangling += 1,
                    }
                }
                continue;
            }
        }
        let depth = levels.len();
        let Some(level) = levels.last_mut() else {
            break;
        };
        match level.pending.pop_front() {
            Some(child) => {
                if level.wrote_any {
                    write!(out, ",")?;
                }
                level.wrote_any = true;
                stats.entries += 1;
                progress(stats.entries);
                if child.attr.is_dir() {
                    open_directory(out, &child, depth + 1)?;
                    levels.push(Level {
                        ino: child.ino,
                        pending: VecDeque::new(),
                        next: Some(keys::dentries(child.ino)),
                        wrote_any: false,
                    });
                } else {
                    write_leaf(out, &child, depth + 1)?;
                }
            }
            None => {
                let indent = "  ".repeat(depth);
                write!(out, "\n{indent}  }}\n{indent}}}")?;
                levels.pop();
            }
        }
    }
    writeln!(out, "\n}}")?;
    out.flush()?;
    Ok(stats)
}

async fn write_header(
    meta: &Meta,
    out: &mut dyn Write,
    options: &DumpOptions,
) -> Result<(), DumpError> {
    let volume = meta.volume();
    let mut setting = json!({
        "Name": volume.name,
        "UUID": volume.uuid,
        "Storage": volume.storage,
        "Bucket": volume.bucket,
        "BlockSize": volume.block_size_bytes / 1024,
        "Compression": volume.compression,
        "TrashDays": volume.trash_days,
        "Capacity": volume.capacity_bytes,
        "Inodes": volume.inode_limit,
        "JfsDataFormat": JFS_DATA_FORMAT,
        "JfsCreated": volume.created,
    });
    if let Some(access_key) = &volume.access_key {
        setting["AccessKey"] = json!(access_key);
    }
    if let Some(secret_key) = &volume.secret_key {
        setting["SecretKey"] = if options.keep_secret_key {
            json!(secret_key)
        } else {
            json!("removed")
        };
    }
    if let Some(legacy) = &volume.juicefs_blocks {
        setting["JfsJuiceFsBlocks"] = serde_json::to_value(legacy).unwrap_or_default();
    }
    let stat = meta.statfs().await?;
    let counters = json!({
        "usedSpace": stat.used_bytes,
        "usedInodes": stat.used_inodes,
        "nextInodes": next_id(meta, "ino").await?,
        "nextChunk": next_id(meta, "slice").await?,
        "nextSession": next_id(meta, "session").await?,
        "nextTrash": 0,
    });
    write!(
        out,
        "{{\n  \"Setting\": {},",
        serde_json::to_string(&setting)?
    )?;
    write!(
        out,
        "\n  \"Counters\": {},",
        serde_json::to_string(&counters)?
    )?;
    write!(out, "\n  \"Sustained\": [")?;
    let mut sessions: Vec<(u64, Vec<u64>)> = Vec::new();
    for (key, _) in read_all(meta, &keys::session_opens_all()).await? {
        let (Some(sid), Some(ino)) = (be_u64(&key, 1), be_u64(&key, 9)) else {
            continue;
        };
        match sessions.last_mut() {
            Some((last, inodes)) if *last == sid => inodes.push(ino),
            _ => sessions.push((sid, vec![ino])),
        }
    }
    for (i, (sid, inodes)) in sessions.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        write!(out, "{sep}\n    {}", json!({"sid": sid, "inodes": inodes}))?;
    }
    write!(out, "],\n  \"DelFiles\": [")?;
    let mut first = true;
    let mut next = Some(keys::deleted_files());
    while let Some(range) = next {
        let page = meta.db().scan_page(&range, PAGE_ENTRIES).await?;
        next = page.next;
        for (key, value) in page.entries {
            let (Some(inode), Some(length)) = (be_u64(&key, 1), be_u64(&key, 9)) else {
                continue;
            };
            let chunks = read_chunks(meta, inode).await?;
            let deleted = DumpedDelFile {
                inode,
                length,
                expire: decode_counter(&value),
                chunks,
            };
            let sep = if first { "" } else { "," };
            first = false;
            write!(out, "{sep}\n    {}", serde_json::to_string(&deleted)?)?;
        }
    }
    write!(out, "],")?;
    Ok(())
}

/// The first id no allocator shard has handed out yet, an upper bound.
async fn next_id(meta: &Meta, kind: &str) -> Result<u64, DumpError> {
    let batches = read_all(meta, &keys::counter_shards(kind)).await?;
    let top = batches
        .iter()
        .map(|(_, v)| decode_counter(v).max(0) as u64)
        .max()
        .unwrap_or(0);
    Ok(top * crate::meta::ID_SHARDS * crate::meta::ID_BATCH)
}

async fn read_all(meta: &Meta, range: &KeyRange) -> Result<Vec<(Vec<u8>, Vec<u8>)>, DumpError> {
    Ok(meta.db().scan_pages(range, PAGE_ENTRIES * 4).await?)
}

async fn read_chunks(meta: &Meta, ino: Ino) -> Result<Vec<DumpedChunk>, DumpError> {
    let mut chunks = Vec::new();
    for (key, value) in read_all(meta, &keys::chunks(ino)).await? {
        if let Some((_, tag::CHUNK, index)) = keys::parse_inode_key(&key) {
            chunks.push(dumped_chunk(index, &value)?);
        }
    }
    Ok(chunks)
}

fn dumped_chunk(index: &[u8], value: &[u8]) -> Result<DumpedChunk, DumpError> {
    let index = index
        .try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| DumpError::Format("a chunk key is damaged".into()))?;
    let records = SliceRecord::decode_list(value)
        .ok_or_else(|| DumpError::Format("a chunk value is damaged".into()))?;
    Ok(DumpedChunk {
        index,
        slices: records
            .iter()
            .map(|r| DumpedSlice {
                id: r.id,
                pos: r.pos,
                size: r.size,
                off: r.offset,
                len: r.len,
            })
            .collect(),
    })
}

/// Everything the dump writes of inode `ino` named `name`; None when its
/// attributes are missing. A directory's times are its effective ones.
async fn read_child(
    meta: &Meta,
    name: &[u8],
    ino: Ino,
    kind: FileKind,
) -> Result<Option<Child>, DumpError> {
    let mut child = Child {
        name: name.to_vec(),
        ino,
        attr: Attr::new(kind, 0, 0, 0, Default::default()),
        symlink: None,
        xattrs: Vec::new(),
        chunks: Vec::new(),
    };
    let range = if kind == FileKind::Directory {
        match meta.getattr(ino).await {
            Ok(attr) => child.attr = attr,
            Err(crate::meta::MetaError::Errno(libc::ENOENT)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        keys::xattrs(ino)
    } else {
        keys::inode_all(ino)
    };
    let mut found = kind == FileKind::Directory;
    for (key, value) in read_all(meta, &range).await? {
        let Some((_, t, rest)) = keys::parse_inode_key(&key) else {
            continue;
        };
        match t {
            tag::ATTR => {
                child.attr = Attr::decode(&value)
                    .ok_or_else(|| DumpError::Format(format!("inode {ino}: damaged attributes")))?;
                found = true;
            }
            tag::SYMLINK => child.symlink = Some(value),
            tag::XATTR => child.xattrs.push(DumpedXattr {
                name: escape(rest),
                value: escape(&value),
            }),
            tag::CHUNK => child.chunks.push(dumped_chunk(rest, &value)?),
            _ => {}
        }
    }
    Ok(found.then_some(child))
}

fn open_directory(out: &mut dyn Write, dir: &Child, depth: usize) -> Result<(), DumpError> {
    let indent = "  ".repeat(depth);
    if depth > 1 {
        write!(out, "\n{indent}{}: ", json_string(&dir.name))?;
    }
    write!(out, "{{\n{indent}  \"attr\": {}", attr_json(dir)?)?;
    if !dir.xattrs.is_empty() {
        write!(
            out,
            ",\n{indent}  \"xattrs\": {}",
            serde_json::to_string(&dir.xattrs)?
        )?;
    }
    write!(out, ",\n{indent}  \"entries\": {{")?;
    Ok(())
}

fn write_leaf(out: &mut dyn Write, child: &Child, depth: usize) -> Result<(), DumpError> {
    let indent = "  ".repeat(depth);
    write!(
        out,
        "\n{indent}{}: {{\"attr\": {}",
        json_string(&child.name),
        attr_json(child)?
    )?;
    if let Some(target) = &child.symlink {
        write!(out, ", \"symlink\": {}", json_string(target))?;
    }
    if !child.xattrs.is_empty() {
        write!(
            out,
            ", \"xattrs\": {}",
            serde_json::to_string(&child.xattrs)?
        )?;
    }
    if !child.chunks.is_empty() {
        write!(
            out,
            ", \"chunks\": {}",
            serde_json::to_string(&child.chunks)?
        )?;
    }
    write!(out, "}}")?;
    Ok(())
}

fn attr_json(child: &Child) -> Result<String, DumpError> {
    Ok(serde_json::to_string(&DumpedAttr::from_attr(
        child.ino,
        &child.attr,
    ))?)
}

/// A name or target as a JSON string, escaped as JuiceFS does.
fn json_string(bytes: &[u8]) -> String {
    serde_json::Value::String(escape(bytes)).to_string()
}

fn be_u64(key: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(at..at + 8)?.try_into().ok()?))
}
