//! The `tugboat` binary: everything is in the library; see `tugboat --help`.

fn main() -> std::process::ExitCode {
    tugboat::cli::main()
}
