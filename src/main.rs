//! The `queuegate` binary: everything lives in the library; see `cli.rs`.

/// mimalloc instead of glibc malloc: the request path allocates many small short-lived
/// buffers across threads, where glibc's arenas (malloc_consolidate, _int_free) showed up
/// as ~8% of the gateway's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    queuegate::cli::main()
}
