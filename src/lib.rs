// The commands use the library by its public name, as the binaries do.
extern crate self as jfs;

pub mod cmd;
pub mod data;
pub mod dump;
pub mod fsck;
pub mod fuse;
pub mod kv;
pub mod meta;
pub mod metrics;
pub mod object;
pub mod vfs;

/// Keeps freed request buffers in the process (glibc's malloc): without
/// it every 1 MiB request buffer is a fresh mmap whose pages fault in and
/// are zeroed again, a fifth of the CPU time of a sequential read
/// (measured with perf on `examples/data_bench`; blocks are page buffers
/// of their own now, `data::PageBuf`). Allocations of 8 MiB and more are
/// still mappings: fuser's 16 MiB request buffer, one per FUSE thread,
/// taken from an arena was zeroed by calloc and resident whole, touched or
/// not (an idle mount 34 MiB resident, 18 with this; peak of `jfs bench
/// -p 1` 85 MiB, 69 with this, of `-p 4` 129 MiB, 100-118 with this).
/// Memory kept free is bounded: one arena per core (glibc's default of
/// eight per core kept freed buffers in each: peak RSS of `jfs bench -p 4`
/// on a `file` store 500-545 MiB, 221-226 with this) and the top of each
/// heap trimmed past 64 MiB (16 MiB saved another 25 MiB of peak but
/// brought the page faults back: 14% of a sequential write's CPU; tried
/// again at 8 MiB with blocks out of the heap: no lower peak).
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator thresholds; called before the
    // process starts its threads.
    unsafe {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_ARENA_MAX, cores.clamp(2, 64) as i32);
    }
}
