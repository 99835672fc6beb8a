//! Model-based test of the metadata engine: random operation sequences run
//! against jfs and against a simple in-memory model of POSIX semantics; every
//! answer (errno) and the final tree must agree. Then concurrent clients:
//! in separate subtrees (model-checked), and on one shared tree (checked for
//! consistency: every inode reachable exactly as linked, no loops, counters
//! exact). Runs on every engine of `common::engines()` in strict-limits mode.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use common::{engines, runtime, Opened};
use jfs::kv::{Db, KeyRange};
use jfs::meta::{
    Ctx, FileKind, Ino, Meta, MetaError, SetAttr, Volume, RENAME_EXCHANGE, RENAME_NOREPLACE,
    ROOT_INO,
};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for engine in engines().into_iter().filter(|e| e.strict) {
        let engine = Arc::new(engine);
        let skip = engine.skip.is_some();
        let e = engine.clone();
        trials.push(
            Trial::test(
                format!("meta_model::{}::sequential_matches_model", engine.label),
                move || runtime().block_on(sequential(e.open(), 12, 400)),
            )
            .with_ignored_flag(skip),
        );
        let e = engine.clone();
        trials.push(
            Trial::test(
                format!(
                    "meta_model::{}::four_clients_in_own_subtrees_match_model",
                    engine.label
                ),
                move || runtime().block_on(subtrees(e.open(), 4, 300)),
            )
            .with_ignored_flag(skip),
        );
        let e = engine.clone();
        trials.push(
            Trial::test(
                format!(
                    "meta_model::{}::four_clients_on_one_tree_stay_consistent",
                    engine.label
                ),
                move || runtime().block_on(shared_tree(e.open(), 4, 300)),
            )
            .with_ignored_flag(skip),
        );
    }
    libtest_mimic::run(&args, trials).exit();
}

pub fn volume() -> Volume {
    common::volume("model")
}

async fn formatted(db: &Db) -> Result<Meta, Failed> {
    Meta::format(db, &volume(), false)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Meta::load(db.clone()).await.map_err(|e| e.to_string())?)
}

type Res<T> = Result<T, i32>;

fn errno_of<T>(r: Result<T, MetaError>) -> Result<Res<T>, Failed> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(MetaError::Errno(e)) => Ok(Err(e)),
        Err(other) => Err(format!("non-POSIX error: {other}").into()),
    }
}

// ---------------------------------------------------------------- model

#[derive(Debug, Clone)]
struct Node {
    kind: FileKind,
    mode: u32,
    uid: u32,
    gid: u32,
    links: u32,
    size: u64,
    target: Vec<u8>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    children: BTreeMap<Vec<u8>, usize>,
    parent: usize,
    /// jfs inode, learned when created.
    ino: Ino,
    alive: bool,
}

/// POSIX semantics as plainly as possible, in the same order of checks
/// as the kernel documents them (and jfs follows).
struct Model {
    nodes: Vec<Node>,
}

impl Model {
    fn new(root_ino: Ino, root_uid: u32, root_mode: u32) -> Model {
        Model {
            nodes: vec![Node {
                kind: FileKind::Directory,
                mode: root_mode,
                uid: root_uid,
                gid: root_uid,
                links: 1,
                size: 4096,
                target: Vec::new(),
                xattrs: BTreeMap::new(),
                children: BTreeMap::new(),
                parent: 0,
                ino: root_ino,
                alive: true,
            }],
        }
    }

    fn attr(&self, id: usize) -> jfs::meta::Attr {
        let n = &self.nodes[id];
        let mut a = jfs::meta::Attr::new(n.kind, n.mode as u16, n.uid, n.gid, Default::default());
        a.length = n.size;
        a
    }

    fn dir(&self, ctx: &Ctx, id: usize) -> Res<()> {
        let n = &self.nodes[id];
        if !n.alive {
            return Err(libc::ENOENT);
        }
        if n.kind != FileKind::Directory {
            return Err(libc::ENOTDIR);
        }
        if !ctx.can(&self.attr(id), jfs::meta::W_OK | jfs::meta::X_OK) {
            return Err(libc::EACCES);
        }
        Ok(())
    }

    fn sticky_ok(&self, ctx: &Ctx, dir: usize, entry: usize) -> bool {
        ctx.may_delete_from(&self.attr(dir), &self.attr(entry))
    }

    fn create(
        &mut self,
        ctx: &Ctx,
        parent: usize,
        name: &[u8],
        kind: FileKind,
        mode: u32,
        target: &[u8],
    ) -> Res<usize> {
        self.dir(ctx, parent)?;
        if self.nodes[parent].children.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let mut mode = mode & 0o7777;
        let pmode = self.nodes[parent].mode;
        let gid = if pmode & libc::S_ISGID != 0 {
            if kind == FileKind::Directory {
                mode |= libc::S_ISGID;
            }
            self.nodes[parent].gid
        } else {
            ctx.gid
        };
        let size = match kind {
            FileKind::Directory => 4096,
            FileKind::Symlink => target.len() as u64,
            _ => 0,
        };
        self.nodes.push(Node {
            kind,
            mode,
            uid: ctx.uid,
            gid,
            links: 1,
            size,
            target: if kind == FileKind::Symlink {
                target.to_vec()
            } else {
                Vec::new()
            },
            xattrs: BTreeMap::new(),
            children: BTreeMap::new(),
            parent,
            ino: 0,
            alive: true,
        });
        let id = self.nodes.len() - 1;
        self.nodes[parent].children.insert(name.to_vec(), id);
        Ok(id)
    }

    fn unlink(&mut self, ctx: &Ctx, parent: usize, name: &[u8]) -> Res<()> {
        self.dir(ctx, parent)?;
        let &child = self.nodes[parent].children.get(name).ok_or(libc::ENOENT)?;
        if self.nodes[child].kind == FileKind::Directory {
            return Err(libc::EISDIR);
        }
        if !self.sticky_ok(ctx, parent, child) {
            return Err(libc::EPERM);
        }
        self.nodes[parent].children.remove(name);
        self.drop_link(child);
        Ok(())
    }

    fn drop_link(&mut self, id: usize) {
        let n = &mut self.nodes[id];
        n.links -= 1;
        if n.links == 0 {
            n.alive = false;
        }
    }

    fn rmdir(&mut self, ctx: &Ctx, parent: usize, name: &[u8]) -> Res<()> {
        self.dir(ctx, parent)?;
        let &child = self.nodes[parent].children.get(name).ok_or(libc::ENOENT)?;
        if self.nodes[child].kind != FileKind::Directory {
            return Err(libc::ENOTDIR);
        }
        if !self.sticky_ok(ctx, parent, child) {
            return Err(libc::EPERM);
        }
        if !self.nodes[child].children.is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        self.nodes[parent].children.remove(name);
        self.nodes[child].alive = false;
        Ok(())
    }

    fn is_within(&self, mut dir: usize, moving: usize) -> bool {
        loop {
            if dir == moving {
                return true;
            }
            if dir == 0 {
                return false;
            }
            dir = self.nodes[dir].parent;
        }
    }

    fn link(&mut self, ctx: &Ctx, target: usize, parent: usize, name: &[u8]) -> Res<()> {
        self.dir(ctx, parent)?;
        if !self.nodes[target].alive {
            return Err(libc::ENOENT);
        }
        if self.nodes[target].kind == FileKind::Directory {
            return Err(libc::EPERM);
        }
        if self.nodes[parent].children.contains_key(name) {
            return Err(libc::EEXIST);
        }
        self.nodes[target].links += 1;
        self.nodes[parent].children.insert(name.to_vec(), target);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn rename(
        &mut self,
        ctx: &Ctx,
        sp: usize,
        sn: &[u8],
        dp: usize,
        dn: &[u8],
        flags: u32,
    ) -> Res<()> {
        let exchange = flags & RENAME_EXCHANGE != 0;
        self.dir(ctx, sp)?;
        self.dir(ctx, dp)?;
        let &src = self.nodes[sp].children.get(sn).ok_or(libc::ENOENT)?;
        if sp == dp && sn == dn {
            return Ok(());
        }
        if !self.sticky_ok(ctx, sp, src) {
            return Err(libc::EPERM);
        }
        let dst = self.nodes[dp].children.get(dn).copied();
        if let Some(d) = dst {
            if !self.sticky_ok(ctx, dp, d) {
                return Err(libc::EPERM);
            }
            if flags & RENAME_NOREPLACE != 0 {
                return Err(libc::EEXIST);
            }
            if d == src && !exchange {
                return Ok(());
            }
        } else if exchange {
            return Err(libc::ENOENT);
        }
        let src_dir = self.nodes[src].kind == FileKind::Directory;
        if src_dir && sp != dp {
            if ctx.uid != 0 && !ctx.can(&self.attr(src), jfs::meta::W_OK) {
                return Err(libc::EACCES);
            }
            if self.is_within(dp, src) {
                return Err(libc::EINVAL);
            }
        }
        if exchange {
            let d = dst.ok_or(libc::ENOENT)?;
            if self.nodes[d].kind == FileKind::Directory && sp != dp {
                if ctx.uid != 0 && !ctx.can(&self.attr(d), jfs::meta::W_OK) {
                    return Err(libc::EACCES);
                }
                if self.is_within(sp, d) {
                    return Err(libc::EINVAL);
                }
            }
            self.nodes[sp].children.insert(sn.to_vec(), d);
            self.nodes[dp].children.insert(dn.to_vec(), src);
            self.nodes[src].parent = dp;
            self.nodes[d].parent = sp;
            return Ok(());
        }
        if let Some(d) = dst {
            let dst_dir = self.nodes[d].kind == FileKind::Directory;
            match (src_dir, dst_dir) {
                (true, false) => return Err(libc::ENOTDIR),
                (false, true) => return Err(libc::EISDIR),
                (true, true) => {
                    if !self.nodes[d].children.is_empty() {
                        return Err(libc::ENOTEMPTY);
                    }
                    self.nodes[d].alive = false;
                }
                (false, false) => self.drop_link(d),
            }
        }
        self.nodes[sp].children.remove(sn);
        self.nodes[dp].children.insert(dn.to_vec(), src);
        self.nodes[src].parent = dp;
        Ok(())
    }

    fn chmod(&mut self, ctx: &Ctx, id: usize, mode: u32) -> Res<()> {
        let n = &self.nodes[id];
        if !n.alive {
            return Err(libc::ENOENT);
        }
        if ctx.uid != 0 && ctx.uid != n.uid {
            return Err(libc::EPERM);
        }
        let mut mode = mode & 0o7777;
        if ctx.uid != 0 && n.kind != FileKind::Directory && !ctx.in_group(n.gid) {
            mode &= !libc::S_ISGID;
        }
        self.nodes[id].mode = mode;
        Ok(())
    }

    fn truncate(&mut self, ctx: &Ctx, id: usize, size: u64) -> Res<()> {
        let n = &self.nodes[id];
        if !n.alive {
            return Err(libc::ENOENT);
        }
        if n.kind == FileKind::Directory {
            return Err(libc::EISDIR);
        }
        if n.kind != FileKind::File {
            return Err(libc::EINVAL);
        }
        if ctx.uid != 0 && ctx.uid != n.uid && !ctx.can(&self.attr(id), jfs::meta::W_OK) {
            return Err(libc::EACCES);
        }
        self.nodes[id].size = size;
        Ok(())
    }

    fn xattr_perm(&self, ctx: &Ctx, id: usize) -> Res<()> {
        let n = &self.nodes[id];
        if !n.alive {
            return Err(libc::ENOENT);
        }
        if ctx.uid != 0 && ctx.uid != n.uid && !ctx.can(&self.attr(id), jfs::meta::W_OK) {
            return Err(libc::EACCES);
        }
        Ok(())
    }

    fn setxattr(&mut self, ctx: &Ctx, id: usize, name: &[u8], value: &[u8], flags: u32) -> Res<()> {
        self.xattr_perm(ctx, id)?;
        let exists = self.nodes[id].xattrs.contains_key(name);
        if flags == libc::XATTR_CREATE as u32 && exists {
            return Err(libc::EEXIST);
        }
        if flags == libc::XATTR_REPLACE as u32 && !exists {
            return Err(libc::ENODATA);
        }
        self.nodes[id].xattrs.insert(name.to_vec(), value.to_vec());
        Ok(())
    }

    fn removexattr(&mut self, ctx: &Ctx, id: usize, name: &[u8]) -> Res<()> {
        self.xattr_perm(ctx, id)?;
        self.nodes[id]
            .xattrs
            .remove(name)
            .map(|_| ())
            .ok_or(libc::ENODATA)
    }

    /// Every alive node below `root` by path: (kind, mode, uid, nlink, size,
    /// symlink target, xattrs, identity).
    fn listing(&self, root: usize) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![(String::new(), root)];
        while let Some((path, id)) = stack.pop() {
            for (name, &child) in &self.nodes[id].children {
                let p = format!("{path}/{}", String::from_utf8_lossy(name));
                let n = &self.nodes[child];
                let nlink = if n.kind == FileKind::Directory {
                    2 + n
                        .children
                        .values()
                        .filter(|&&c| self.nodes[c].kind == FileKind::Directory)
                        .count() as u32
                } else {
                    n.links
                };
                out.insert(
                    p.clone(),
                    format!(
                        "{:?} {:o} uid={} nlink={} size={} target={:?} xattrs={:?} ino={}",
                        n.kind, n.mode, n.uid, nlink, n.size, n.target, n.xattrs, n.ino
                    ),
                );
                if n.kind == FileKind::Directory {
                    stack.push((p, child));
                }
            }
        }
        out
    }
}

/// The same listing read from jfs.
async fn listing(meta: &Meta, root: Ino) -> Result<BTreeMap<String, String>, Failed> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), root)];
    let ctx = Ctx::root();
    while let Some((path, ino)) = stack.pop() {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = meta
                .readdir(&ctx, ino, after.as_deref(), 7, true)
                .await
                .map_err(|e| e.to_string())?;
            if page.is_empty() {
                break;
            }
            after = page.last().map(|e| e.name.clone());
            for e in page {
                let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                let a = e
                    .attr
                    .ok_or_else(|| format!("{p}: entry without attributes"))?;
                let target = if a.kind == FileKind::Symlink {
                    meta.readlink(e.ino).await.map_err(|e| e.to_string())?
                } else {
                    Vec::new()
                };
                let mut xattrs = BTreeMap::new();
                for name in meta.listxattr(e.ino).await.map_err(|e| e.to_string())? {
                    let v = meta
                        .getxattr(e.ino, &name)
                        .await
                        .map_err(|e| e.to_string())?;
                    xattrs.insert(name, v);
                }
                out.insert(
                    p.clone(),
                    format!(
                        "{:?} {:o} uid={} nlink={} size={} target={:?} xattrs={:?} ino={}",
                        a.kind, a.mode, a.uid, a.nlink, a.length, target, xattrs, e.ino
                    ),
                );
                if a.kind == FileKind::Directory {
                    stack.push((p, e.ino));
                }
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- driver

const NAMES: [&[u8]; 5] = [b"a", b"b", b"c", b"d", b"e"];

struct Driver {
    model: Model,
    rng: fastrand::Rng,
    ops: usize,
}

impl Driver {
    fn pick_dir(&mut self) -> usize {
        // Mostly live directories, sometimes a removed one (ENOENT paths).
        let dirs: Vec<usize> = (0..self.model.nodes.len())
            .filter(|&i| {
                self.model.nodes[i].kind == FileKind::Directory
                    && (self.model.nodes[i].alive || self.rng.u8(..) < 20)
            })
            .collect();
        dirs[self.rng.usize(..dirs.len())]
    }

    fn pick_node(&mut self) -> usize {
        let n = self.model.nodes.len();
        let alive: Vec<usize> = (1..n).filter(|&i| self.model.nodes[i].alive).collect();
        if alive.is_empty() || self.rng.u8(..) < 15 {
            return self.rng.usize(..n);
        }
        alive[self.rng.usize(..alive.len())]
    }

    fn name(&mut self) -> &'static [u8] {
        NAMES[self.rng.usize(..NAMES.len())]
    }

    fn ctx(&mut self) -> Ctx {
        if self.rng.u8(..) < 40 {
            Ctx::user(1000, 1000)
        } else {
            Ctx::root()
        }
    }

    /// One random operation on both sides; Err when they disagree.
    async fn step(&mut self, meta: &Meta) -> Result<(), Failed> {
        self.ops += 1;
        let ctx = self.ctx();
        let op = self.rng.u8(..100);
        let (what, want, got): (String, Res<()>, Res<()>) = if op < 25 {
            let parent = self.pick_dir();
            let name = self.name();
            let (kind, mode) = match self.rng.u8(..4) {
                0 => (
                    FileKind::Directory,
                    [0o755, 0o777, 0o1777, 0o700, 0o2775][self.rng.usize(..5)],
                ),
                1 => (FileKind::Symlink, 0o777),
                2 => (FileKind::Fifo, 0o644),
                _ => (FileKind::File, [0o644, 0o600, 0o666][self.rng.usize(..3)]),
            };
            let target = b"some/target".to_vec();
            let want = self.model.create(&ctx, parent, name, kind, mode, &target);
            let pino = self.model.nodes[parent].ino;
            let got = errno_of(match kind {
                FileKind::Directory => meta.mkdir(&ctx, pino, name, mode).await,
                FileKind::Symlink => meta.symlink(&ctx, pino, name, &target).await,
                _ => meta.mknod(&ctx, pino, name, kind, mode, 0).await,
            })?;
            if let (Ok(id), Ok((ino, _))) = (&want, &got) {
                self.model.nodes[*id].ino = *ino;
            }
            (
                format!(
                    "create {kind:?} {:?} in {pino}",
                    String::from_utf8_lossy(name)
                ),
                want.map(|_| ()),
                got.map(|_| ()),
            )
        } else if op < 37 {
            let parent = self.pick_dir();
            let name = self.name();
            let pino = self.model.nodes[parent].ino;
            (
                format!("unlink {pino}/{}", String::from_utf8_lossy(name)),
                self.model.unlink(&ctx, parent, name),
                errno_of(meta.unlink(&ctx, pino, name).await.map(|_| ()))?,
            )
        } else if op < 47 {
            let parent = self.pick_dir();
            let name = self.name();
            let pino = self.model.nodes[parent].ino;
            (
                format!("rmdir {pino}/{}", String::from_utf8_lossy(name)),
                self.model.rmdir(&ctx, parent, name),
                errno_of(meta.rmdir(&ctx, pino, name).await)?,
            )
        } else if op < 70 {
            let (sp, dp) = (self.pick_dir(), self.pick_dir());
            let (sn, dn) = (self.name(), self.name());
            let flags = [0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE][self.rng.usize(..4)];
            let (spi, dpi) = (self.model.nodes[sp].ino, self.model.nodes[dp].ino);
            (
                format!(
                    "rename {spi}/{} -> {dpi}/{} flags {flags}",
                    String::from_utf8_lossy(sn),
                    String::from_utf8_lossy(dn)
                ),
                self.model.rename(&ctx, sp, sn, dp, dn, flags),
                errno_of(meta.rename(&ctx, spi, sn, dpi, dn, flags).await.map(|_| ()))?,
            )
        } else if op < 77 {
            let target = self.pick_node();
            let parent = self.pick_dir();
            let name = self.name();
            let (ti, pi) = (self.model.nodes[target].ino, self.model.nodes[parent].ino);
            (
                format!("link {ti} -> {pi}/{}", String::from_utf8_lossy(name)),
                self.model.link(&ctx, target, parent, name),
                errno_of(meta.link(&ctx, ti, pi, name).await.map(|_| ()))?,
            )
        } else if op < 84 {
            let id = self.pick_node();
            let mode = [0o644, 0o755, 0o2755, 0o1777, 0o600][self.rng.usize(..5)];
            let ino = self.model.nodes[id].ino;
            let set = SetAttr {
                mode: Some(mode),
                ..Default::default()
            };
            (
                format!("chmod {ino} {mode:o}"),
                self.model.chmod(&ctx, id, mode),
                errno_of(meta.setattr(&ctx, ino, &set).await.map(|_| ()))?,
            )
        } else if op < 90 {
            let id = self.pick_node();
            let size = [0, 10, 4096, 1 << 20, 100 << 20, 200 << 20][self.rng.usize(..6)];
            let ino = self.model.nodes[id].ino;
            let set = SetAttr {
                size: Some(size),
                ..Default::default()
            };
            (
                format!("truncate {ino} {size}"),
                self.model.truncate(&ctx, id, size),
                errno_of(meta.setattr(&ctx, ino, &set).await.map(|_| ()))?,
            )
        } else if op < 96 {
            let id = self.pick_node();
            let name: &[u8] = [b"user.a".as_slice(), b"user.b"][self.rng.usize(..2)];
            let flags =
                [0u32, libc::XATTR_CREATE as u32, libc::XATTR_REPLACE as u32][self.rng.usize(..3)];
            let value = vec![self.rng.u8(..); self.rng.usize(..64)];
            let ino = self.model.nodes[id].ino;
            (
                format!("setxattr {ino} flags {flags}"),
                self.model.setxattr(&ctx, id, name, &value, flags),
                errno_of(meta.setxattr(&ctx, ino, name, &value, flags).await)?,
            )
        } else {
            let id = self.pick_node();
            let ino = self.model.nodes[id].ino;
            (
                format!("removexattr {ino}"),
                self.model.removexattr(&ctx, id, b"user.a"),
                errno_of(meta.removexattr(&ctx, ino, b"user.a").await)?,
            )
        };
        if want != got {
            return Err(format!(
                "op {} ({what}) as uid {}: model says {want:?}, jfs says {got:?}",
                self.ops, ctx.uid
            )
            .into());
        }
        Ok(())
    }
}

async fn sequential(o: Opened, seeds: u64, ops: usize) -> Result<(), Failed> {
    let meta = formatted(&o.db).await?;
    let ctx = Ctx::root();
    for seed in 0..seeds {
        // Each seed works in a fresh directory, owned by root, mode 0777.
        let (dir, _) = meta
            .mkdir(&ctx, ROOT_INO, format!("s{seed}").as_bytes(), 0o777)
            .await
            .map_err(|e| e.to_string())?;
        let mut driver = Driver {
            model: Model::new(dir, 0, 0o777),
            rng: fastrand::Rng::with_seed(seed),
            ops: 0,
        };
        for _ in 0..ops {
            driver
                .step(&meta)
                .await
                .map_err(|e| format!("seed {seed}: {}", e.message().unwrap_or_default()))?;
        }
        compare(&meta, &driver.model, dir)
            .await
            .map_err(|e| format!("seed {seed}: {}", e.message().unwrap_or_default()))?;
    }
    check_consistency(&meta, &o.clean).await
}

async fn compare(meta: &Meta, model: &Model, dir: Ino) -> Result<(), Failed> {
    let want = model.listing(0);
    let got = listing(meta, dir).await?;
    if want != got {
        let mut diff = String::new();
        for (path, w) in &want {
            match got.get(path) {
                Some(g) if g == w => {}
                Some(g) => diff.push_str(&format!("\n  {path}: model {w}\n  {path}: jfs   {g}")),
                None => diff.push_str(&format!("\n  {path}: missing in jfs ({w})")),
            }
        }
        for path in got.keys().filter(|p| !want.contains_key(*p)) {
            diff.push_str(&format!("\n  {path}: only in jfs ({})", got[path]));
        }
        return Err(format!("final trees differ:{diff}").into());
    }
    Ok(())
}

async fn subtrees(o: Opened, clients: u64, ops: usize) -> Result<(), Failed> {
    let meta = Arc::new(formatted(&o.db).await?);
    let mut handles = Vec::new();
    for c in 0..clients {
        // Each client is its own Meta over the same store, as separate hosts are.
        let client = Meta::load(o.db.clone()).await.map_err(|e| e.to_string())?;
        handles.push(tokio::spawn(async move {
            let (dir, _) = client
                .mkdir(&Ctx::root(), ROOT_INO, format!("c{c}").as_bytes(), 0o777)
                .await
                .map_err(|e| e.to_string())?;
            let mut driver = Driver {
                model: Model::new(dir, 0, 0o777),
                rng: fastrand::Rng::with_seed(100 + c),
                ops: 0,
            };
            for _ in 0..ops {
                driver
                    .step(&client)
                    .await
                    .map_err(|e| format!("client {c}: {}", e.message().unwrap_or_default()))?;
            }
            compare(&client, &driver.model, dir)
                .await
                .map_err(|e| format!("client {c}: {}", e.message().unwrap_or_default()))?;
            Ok::<_, Failed>(())
        }));
    }
    for h in handles {
        h.await.map_err(|e| e.to_string())??;
    }
    check_consistency(&meta, &o.clean).await
}

/// Clients racing on one small tree: creates, removals and renames of
/// directories across each other (A into B while B into A). Answers are not
/// predicted; the end state must be consistent.
async fn shared_tree(o: Opened, clients: u64, ops: usize) -> Result<(), Failed> {
    let meta = Arc::new(formatted(&o.db).await?);
    let ctx = Ctx::root();
    for d in [b"x".as_slice(), b"y", b"z"] {
        meta.mkdir(&ctx, ROOT_INO, d, 0o777)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut handles = Vec::new();
    for c in 0..clients {
        let client = Meta::load(o.db.clone()).await.map_err(|e| e.to_string())?;
        handles.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(200 + c);
            let ctx = Ctx::root();
            let mut known: Vec<Ino> = vec![ROOT_INO];
            for _ in 0..ops {
                let dir = known[rng.usize(..known.len())];
                let name = NAMES[rng.usize(..NAMES.len())];
                let op = rng.u8(..10);
                let result = match op {
                    0..=2 => client
                        .mkdir(&ctx, dir, name, 0o777)
                        .await
                        .map(|(ino, _)| known.push(ino)),
                    3 => client
                        .mknod(&ctx, dir, name, FileKind::File, 0o644, 0)
                        .await
                        .map(|_| ()),
                    4 => client.rmdir(&ctx, dir, name).await,
                    5 => client.unlink(&ctx, dir, name).await.map(|_| ()),
                    _ => {
                        let other = known[rng.usize(..known.len())];
                        let flags = if rng.bool() { 0 } else { RENAME_EXCHANGE };
                        client
                            .rename(
                                &ctx,
                                dir,
                                name,
                                other,
                                NAMES[rng.usize(..NAMES.len())],
                                flags,
                            )
                            .await
                            .map(|_| ())
                    }
                };
                if let Err(MetaError::Kv(e)) = result {
                    let what = ["mkdir", "mkdir", "mkdir", "mknod", "rmdir", "unlink"]
                        .get(op as usize)
                        .unwrap_or(&"rename");
                    return Err(Failed::from(format!("client {c}: {what} in {dir}: {e}")));
                }
            }
            Ok(())
        }));
    }
    let mut first_error = None;
    for h in handles {
        if let Err(e) = h.await.map_err(|e| e.to_string())? {
            first_error.get_or_insert(e);
        }
    }
    let consistent = check_consistency(&meta, &o.clean).await;
    match (first_error, consistent) {
        (None, consistent) => consistent,
        (Some(e), Ok(())) => Err(e),
        (Some(e), Err(c)) => Err(format!(
            "{}; and then: {}",
            e.message().unwrap_or_default(),
            c.message().unwrap_or_default()
        )
        .into()),
    }
}

/// The whole store agrees with itself: every inode with keys is reachable
/// from the root by exactly its link count of entries, directories have one
/// parent and no loops, subdirectory counts and usage counters are exact.
async fn check_consistency(meta: &Meta, db: &Db) -> Result<(), Failed> {
    let ctx = Ctx::root();
    let mut links: HashMap<Ino, u32> = HashMap::new();
    let mut parents: HashMap<Ino, Ino> = HashMap::new();
    let mut dir_usage: HashMap<Ino, (u64, u64)> = HashMap::new();
    let mut stack = vec![ROOT_INO];
    let mut visited = 0usize;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > 1_000_000 {
            return Err("directory walk does not end: a loop".into());
        }
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = meta
                .readdir(&ctx, dir, after.as_deref(), 100, true)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.clone());
            for e in page {
                let attr = e.attr.ok_or_else(|| {
                    format!(
                        "entry {:?} in {dir} points to missing inode {}",
                        String::from_utf8_lossy(&e.name),
                        e.ino
                    )
                })?;
                if attr.kind != e.kind {
                    return Err(format!(
                        "entry kind {:?} but inode {} is {:?}",
                        e.kind, e.ino, attr.kind
                    )
                    .into());
                }
                *links.entry(e.ino).or_default() += 1;
                let usage = dir_usage.entry(dir).or_default();
                usage.0 += jfs::meta::entry_space(&attr);
                usage.1 += 1;
                if attr.kind == FileKind::Directory {
                    if let Some(p) = parents.insert(e.ino, dir) {
                        return Err(format!("directory {} is in both {p} and {dir}", e.ino).into());
                    }
                    if attr.parent != dir {
                        return Err(format!(
                            "directory {} says parent {} but is in {dir}",
                            e.ino, attr.parent
                        )
                        .into());
                    }
                    stack.push(e.ino);
                }
            }
        }
    }
    let mut space = 4096u64;
    for (&ino, &count) in &links {
        let attr = meta.getattr(ino).await.map_err(|e| e.to_string())?;
        if attr.kind == FileKind::Directory {
            let subdirs = parents.values().filter(|&&p| p == ino).count() as u32;
            if attr.nlink != 2 + subdirs {
                return Err(format!(
                    "directory {ino}: nlink {} but {subdirs} subdirectories",
                    attr.nlink
                )
                .into());
            }
            space += 4096;
        } else {
            if attr.nlink != count {
                return Err(
                    format!("inode {ino}: nlink {} but {count} entries", attr.nlink).into(),
                );
            }
            space += attr.length.div_ceil(4096).max(1) * 4096;
        }
    }
    // Per-directory usage, exact now that the clients are quiet.
    for dir in std::iter::once(ROOT_INO).chain(parents.keys().copied()) {
        let want = dir_usage.get(&dir).copied().unwrap_or_default();
        let got = meta.dir_usage(dir).await.map_err(|e| e.to_string())?;
        if got != want {
            return Err(format!(
                "directory {dir}: usage says (space, entries) {got:?}, entries add up to {want:?}"
            )
            .into());
        }
    }
    // No keys of inodes that are gone.
    let tx = db.begin().await.map_err(|e| e.to_string())?;
    // Deleted files wait in the queue with their slice records, for the
    // background reclaim; nothing else of theirs may remain.
    let queued: std::collections::HashSet<Ino> = tx
        .scan_all(&KeyRange::prefix(b"R"), 10_000, true)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(key, _)| u64::from_be_bytes(key[1..9].try_into().unwrap_or_default()))
        .collect();
    let all = tx
        .scan_all(&KeyRange::prefix(b"A"), 10_000, true)
        .await
        .map_err(|e| e.to_string())?;
    for (key, _) in all {
        let ino = u64::from_be_bytes(key[1..9].try_into().map_err(|_| "short key")?);
        let reclaimable = queued.contains(&ino) && key[9] == b'C';
        if ino != ROOT_INO && !links.contains_key(&ino) && !reclaimable {
            return Err(format!(
                "inode {ino} has keys ({:?}) but no entry",
                String::from_utf8_lossy(&key[9..])
            )
            .into());
        }
    }
    let stat = meta.statfs().await.map_err(|e| e.to_string())?;
    let inodes = links.len() as u64 + 1;
    if stat.used_inodes != inodes || stat.used_bytes != space {
        return Err(format!(
            "usage counters say {} inodes, {} bytes; tree has {inodes} inodes, {space} bytes",
            stat.used_inodes, stat.used_bytes
        )
        .into());
    }
    Ok(())
}
