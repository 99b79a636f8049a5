//! The `tugboat` binary: everything is in the library; see `tugboat --help`.

/// mimalloc rather than glibc's malloc: the delivery path allocates and frees a few KiB of
/// JSON per event (README's performance section has the measurement).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tugboat::cli::main()
}
