//! The `queuegate` binary: everything lives in the library; see `cli.rs`.
//!
//! Memory comes from mimalloc, not glibc's malloc. With one tokio worker (the default on a
//! small host, see `cli::default_workers`) a coalesced batch answers ~30 requests at once, and
//! each of them allocates the same few sizes in a burst: more than glibc's per-thread cache
//! holds (7 chunks a size), so most of them went to its slower shared paths (`_int_malloc`,
//! `malloc_consolidate`: ~9 % of a join's gateway samples in `perf`). mimalloc's per-page free
//! lists take bursts in stride: polls and joins got 0–14 % faster in same-run pairs, the event
//! streams' memory did not change (BENCHMARKS.md). Earlier trials, with two workers, showed no
//! gain: there the cost was memory crossing cores, which no allocator removes.

#![forbid(unsafe_code)]

#[global_allocator]
static MEMORY: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    queuegate::cli::main()
}
