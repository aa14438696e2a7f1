//! The `queuegate` binary: everything lives in the library; see `cli.rs`.
//!
//! The system allocator is kept on purpose: mimalloc measured no throughput gain here
//! (within noise) but cost ~10 KB more RSS per open event stream (BENCHMARKS.md).

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    queuegate::cli::main()
}
