//! Concurrency of the metadata engine: clients racing on the same entries,
//! on every engine of `common::engines()` (strict limits). Reads and commits
//! yield to other tasks so that transactions really overlap.

mod common;

use std::sync::Arc;

use common::{engines, runtime, EngineUnderTest};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use jfs::kv::{
    CommitRequest, Db, DbOptions, Engine, EngineTxn, FaultConfig, KeyRange, KvError, KvResult,
    Limits, Value,
};
use jfs::meta::{Ctx, FileKind, Meta, MetaError, SliceRecord, Volume, ROOT_INO};
use libtest_mimic::{Arguments, Failed, Trial};

type Check = fn(Arc<EngineUnderTest>) -> Result<(), Failed>;

fn main() {
    let args = Arguments::from_args();
    let checks: Vec<(&str, Check)> = vec![
        ("many_clients_create_in_one_directory", |e| {
            runtime().block_on(many_creates(e))
        }),
        ("cross_directory_renames_never_loop_or_orphan", |e| {
            runtime().block_on(cross_renames(e))
        }),
        ("rmdir_racing_create_leaves_no_orphan", |e| {
            runtime().block_on(rmdir_vs_create(e))
        }),
        ("two_clients_appending_slices_keep_every_slice", |e| {
            runtime().block_on(appends(e))
        }),
        ("a_create_whose_reply_was_lost_is_applied_once", |e| {
            runtime().block_on(lost_create_reply(e))
        }),
    ];
    let mut trials = Vec::new();
    for engine in engines().into_iter().filter(|e| e.strict) {
        let engine = Arc::new(engine);
        for (name, check) in &checks {
            let (e, check) = (engine.clone(), *check);
            trials.push(
                Trial::test(
                    format!("meta_concurrency::{}::{name}", engine.label),
                    move || check(e),
                )
                .with_ignored_flag(engine.skip.is_some()),
            );
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn volume() -> Volume {
    common::volume("race")
}

/// A formatted volume and `n` clients on it, each with its own Meta (as
/// separate hosts), over an engine whose I/O yields.
async fn setup(
    engine: &EngineUnderTest,
    n: usize,
) -> Result<(common::Opened, Vec<Arc<Meta>>), Failed> {
    let opened = engine.open();
    let faults = FaultConfig {
        yield_on_io: true,
        ..engine.faults.unwrap_or_default()
    };
    let db = Db::new(
        opened.engine(),
        DbOptions {
            strict_limits: true,
            faults: Some(faults),
            ..Default::default()
        },
    );
    Meta::format(&db, &volume(), false)
        .await
        .map_err(|e| e.to_string())?;
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(Arc::new(
            Meta::load(db.clone()).await.map_err(|e| e.to_string())?,
        ));
    }
    Ok((opened, clients))
}

fn posix<T>(r: Result<T, MetaError>) -> Result<Result<T, i32>, Failed> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(MetaError::Errno(e)) => Ok(Err(e)),
        Err(e) => Err(e.to_string().into()),
    }
}

async fn many_creates(engine: Arc<EngineUnderTest>) -> Result<(), Failed> {
    const CLIENTS: usize = 8;
    const EACH: usize = 60;
    let (_o, clients) = setup(&engine, CLIENTS).await?;
    let ctx = Ctx::root();
    let (dir, _) = clients[0]
        .mkdir(&ctx, ROOT_INO, b"shared", 0o777)
        .await
        .map_err(|e| e.to_string())?;
    let mut handles = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..EACH {
                let name = format!("f{c}-{i}");
                if i % 10 == 0 {
                    client
                        .mkdir(&Ctx::root(), dir, name.as_bytes(), 0o755)
                        .await?;
                } else {
                    client
                        .mknod(&Ctx::root(), dir, name.as_bytes(), FileKind::File, 0o644, 0)
                        .await?;
                }
            }
            Ok::<_, MetaError>(())
        }));
    }
    for h in handles {
        h.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let mut names = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = clients[0]
            .readdir(&ctx, dir, after.as_deref(), 50, false)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        names.extend(page.into_iter().map(|e| e.name));
    }
    let want = CLIENTS * EACH;
    if names.len() != want {
        return Err(format!("{} entries, want {want}", names.len()).into());
    }
    let attr = clients[0].getattr(dir).await.map_err(|e| e.to_string())?;
    let subdirs = CLIENTS * EACH.div_ceil(10);
    if attr.nlink as usize != 2 + subdirs {
        return Err(format!("nlink {} with {subdirs} subdirectories", attr.nlink).into());
    }
    let stat = clients[0].statfs().await.map_err(|e| e.to_string())?;
    if stat.used_inodes as usize != want + 2 {
        return Err(format!("inode counter {} want {}", stat.used_inodes, want + 2).into());
    }
    Ok(())
}

async fn cross_renames(engine: Arc<EngineUnderTest>) -> Result<(), Failed> {
    let (_o, clients) = setup(&engine, 2).await?;
    let ctx = Ctx::root();
    for round in 0..60 {
        let top = format!("r{round}");
        let (t, _) = clients[0]
            .mkdir(&ctx, ROOT_INO, top.as_bytes(), 0o777)
            .await
            .map_err(|e| e.to_string())?;
        let (a, _) = clients[0]
            .mkdir(&ctx, t, b"A", 0o777)
            .await
            .map_err(|e| e.to_string())?;
        let (b, _) = clients[0]
            .mkdir(&ctx, t, b"B", 0o777)
            .await
            .map_err(|e| e.to_string())?;
        // On odd rounds A goes two levels down (into B/C), so that B is only
        // an ancestor of the destination, not the destination itself.
        let into = if round % 2 == 1 {
            clients[0]
                .mkdir(&ctx, b, b"C", 0o777)
                .await
                .map_err(|e| e.to_string())?
                .0
        } else {
            b
        };
        // A into B while B into A.
        let (c0, c1) = (clients[0].clone(), clients[1].clone());
        let h0 = tokio::spawn(async move { c0.rename(&Ctx::root(), t, b"A", into, b"A", 0).await });
        let h1 = tokio::spawn(async move { c1.rename(&Ctx::root(), t, b"B", a, b"B", 0).await });
        let r0 = posix(h0.await.map_err(|e| e.to_string())?)?;
        let r1 = posix(h1.await.map_err(|e| e.to_string())?)?;
        let oks = [r0, r1].iter().filter(|r| r.is_ok()).count();
        if oks != 1 {
            return Err(format!("round {round}: both renames answered {r0:?}, {r1:?}").into());
        }
        // Whatever won, both directories are reachable from the top and
        // each has exactly one parent.
        let pa = clients[0]
            .getattr(a)
            .await
            .map_err(|e| e.to_string())?
            .parent;
        let pb = clients[0]
            .getattr(b)
            .await
            .map_err(|e| e.to_string())?
            .parent;
        let ok = (pa == t && pb == a) || (pb == t && pa == into);
        if !ok {
            return Err(format!(
                "round {round}: parents A->{pa} B->{pb}, top {t}: a loop or an orphan"
            )
            .into());
        }
    }
    Ok(())
}

async fn rmdir_vs_create(engine: Arc<EngineUnderTest>) -> Result<(), Failed> {
    let (o, clients) = setup(&engine, 2).await?;
    let ctx = Ctx::root();
    for round in 0..80 {
        let name = format!("d{round}");
        let (d, _) = clients[0]
            .mkdir(&ctx, ROOT_INO, name.as_bytes(), 0o777)
            .await
            .map_err(|e| e.to_string())?;
        let (c0, c1) = (clients[0].clone(), clients[1].clone());
        let rm =
            tokio::spawn(async move { c0.rmdir(&Ctx::root(), ROOT_INO, name.as_bytes()).await });
        let mk = tokio::spawn(async move {
            c1.mknod(&Ctx::root(), d, b"child", FileKind::File, 0o644, 0)
                .await
        });
        let rm = posix(rm.await.map_err(|e| e.to_string())?)?;
        let mk = posix(mk.await.map_err(|e| e.to_string())?)?;
        match (&rm, &mk) {
            (Ok(()), Err(libc::ENOENT)) | (Err(libc::ENOTEMPTY), Ok(_)) => {}
            _ => {
                return Err(
                    format!("round {round}: rmdir {rm:?}, create {:?}", mk.map(|_| ())).into(),
                )
            }
        }
    }
    // No entry anywhere points into a removed directory.
    let tx = o.clean_db().begin().await.map_err(|e| e.to_string())?;
    let keys = tx
        .scan_all(&KeyRange::prefix(b"A"), 10_000, true)
        .await
        .map_err(|e| e.to_string())?;
    for (key, _) in keys {
        let ino = u64::from_be_bytes(key[1..9].try_into().map_err(|_| "key")?);
        if key[9] == b'D' && clients[0].getattr(ino).await.is_err() {
            return Err(format!("entry in removed directory {ino}").into());
        }
    }
    Ok(())
}

async fn appends(engine: Arc<EngineUnderTest>) -> Result<(), Failed> {
    const EACH: u64 = 50;
    let (_o, clients) = setup(&engine, 2).await?;
    let (ino, _) = clients[0]
        .mknod(&Ctx::root(), ROOT_INO, b"log", FileKind::File, 0o644, 0)
        .await
        .map_err(|e| e.to_string())?;
    let mut handles = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..EACH {
                let id = client.new_slice_id().await?;
                let pos = ((c as u64 * EACH + i) * 4096) as u32;
                client
                    .write_slice(
                        ino,
                        0,
                        SliceRecord {
                            pos,
                            id,
                            size: 4096,
                            offset: 0,
                            len: 4096,
                        },
                    )
                    .await?;
            }
            Ok::<_, MetaError>(())
        }));
    }
    for h in handles {
        h.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let slices = clients[0]
        .read_chunk(ino, 0)
        .await
        .map_err(|e| e.to_string())?;
    let mut ids: Vec<u64> = slices.iter().map(|s| s.id).collect();
    ids.sort();
    ids.dedup();
    if ids.len() as u64 != 2 * EACH || slices.len() as u64 != 2 * EACH {
        return Err(format!(
            "{} records, {} distinct slices; want {}",
            slices.len(),
            ids.len(),
            2 * EACH
        )
        .into());
    }
    let attr = clients[0].getattr(ino).await.map_err(|e| e.to_string())?;
    if attr.length != 2 * EACH * 4096 {
        return Err(format!("length {}", attr.length).into());
    }
    Ok(())
}

/// What runs between a commit and its lost reply.
type Between = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// An engine whose next commit, once armed, is applied, then `Between`
/// runs (another client acting), then the reply is lost: the caller gets
/// `MaybeCommitted` and must retry without applying its change twice.
struct ReplyLost {
    inner: Arc<dyn Engine>,
    armed: Arc<Mutex<Option<Between>>>,
}

struct ReplyLostTxn {
    inner: Box<dyn EngineTxn>,
    armed: Arc<Mutex<Option<Between>>>,
}

#[async_trait::async_trait]
impl Engine for ReplyLost {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn begin(&self) -> KvResult<Box<dyn EngineTxn>> {
        Ok(Box::new(ReplyLostTxn {
            inner: self.inner.begin().await?,
            armed: self.armed.clone(),
        }))
    }

    async fn sync(&self) -> KvResult<()> {
        self.inner.sync().await
    }
}

#[async_trait::async_trait]
impl EngineTxn for ReplyLostTxn {
    async fn get(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        self.inner.get(key).await
    }

    async fn batch_get(&mut self, keys: &[Vec<u8>]) -> KvResult<Vec<Option<Value>>> {
        self.inner.batch_get(keys).await
    }

    async fn get_tracked(&mut self, key: &[u8]) -> KvResult<Option<Value>> {
        self.inner.get_tracked(key).await
    }

    async fn batch_get_tracked(&mut self, keys: &[Vec<u8>]) -> KvResult<Vec<Option<Value>>> {
        self.inner.batch_get_tracked(keys).await
    }

    async fn finish(self: Box<Self>) -> KvResult<()> {
        self.inner.finish().await
    }

    async fn scan(
        &mut self,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> KvResult<Vec<(Vec<u8>, Value)>> {
        self.inner.scan(range, limit, reverse).await
    }

    async fn commit(self: Box<Self>, request: CommitRequest) -> KvResult<()> {
        let between = if request.mutations.is_empty() {
            None
        } else {
            self.armed.lock().unwrap().take()
        };
        self.inner.commit(request).await?;
        match between {
            Some(between) => {
                between().await;
                Err(KvError::MaybeCommitted("test: reply lost".into()))
            }
            None => Ok(()),
        }
    }
}

/// mkdir and mknod whose commit is applied but whose reply is lost, while
/// another client renames the new entry away before the retry: the retry
/// must recognise its inode, not create it again under the old name (which
/// would give one directory two parents, or a file two entries and one
/// link).
async fn lost_create_reply(engine: Arc<EngineUnderTest>) -> Result<(), Failed> {
    let opened = engine.open();
    let armed: Arc<Mutex<Option<Between>>> = Arc::default();
    let options = DbOptions {
        strict_limits: true,
        ..Default::default()
    };
    let lossy = Db::new(
        Arc::new(ReplyLost {
            inner: opened.engine(),
            armed: armed.clone(),
        }),
        options,
    );
    let clean = Db::new(opened.engine(), options);
    Meta::format(&clean, &volume(), false)
        .await
        .map_err(|e| e.to_string())?;
    let writer = Meta::load(lossy).await.map_err(|e| e.to_string())?;
    let other = Arc::new(Meta::load(clean).await.map_err(|e| e.to_string())?);
    let ctx = Ctx::root();
    let (away, _) = other
        .mkdir(&ctx, ROOT_INO, b"away", 0o777)
        .await
        .map_err(|e| e.to_string())?;
    // Takes the writer's first batch of inode ids, so that the next
    // commits are the creates themselves.
    writer
        .mkdir(&ctx, ROOT_INO, b"warm", 0o777)
        .await
        .map_err(|e| e.to_string())?;
    for (name, kind) in [("dir", FileKind::Directory), ("file", FileKind::File)] {
        let o = other.clone();
        *armed.lock().unwrap() = Some(Box::new(move || {
            Box::pin(async move {
                o.rename(
                    &Ctx::root(),
                    ROOT_INO,
                    name.as_bytes(),
                    away,
                    name.as_bytes(),
                    0,
                )
                .await
                .expect("the other client's rename");
            })
        }));
        let (ino, _) = match kind {
            FileKind::Directory => writer.mkdir(&ctx, ROOT_INO, name.as_bytes(), 0o777).await,
            _ => {
                writer
                    .mknod(&ctx, ROOT_INO, name.as_bytes(), kind, 0o644, 0)
                    .await
            }
        }
        .map_err(|e| format!("{name}: {e}"))?;
        if armed.lock().unwrap().is_some() {
            return Err(format!("{name}: the create's reply was not lost").into());
        }
        if let Ok((again, _)) = other.lookup(&ctx, ROOT_INO, name.as_bytes()).await {
            return Err(format!(
                "{name} (inode {ino}) was created again under its first name (inode {again}) \
                 after it had been renamed away"
            )
            .into());
        }
        let (moved, _) = other
            .lookup(&ctx, away, name.as_bytes())
            .await
            .map_err(|e| format!("{name} renamed away: {e}"))?;
        let attr = other.getattr(ino).await.map_err(|e| e.to_string())?;
        let links = if kind == FileKind::Directory { 2 } else { 1 };
        if moved != ino || attr.parent != away || attr.nlink != links {
            return Err(format!(
                "{name}: entry {moved}, inode {ino} parent {} nlink {}",
                attr.parent, attr.nlink
            )
            .into());
        }
    }
    Ok(())
}
