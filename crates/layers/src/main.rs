//! `layers`: parse the command line and run it on a multi-threaded runtime.

use std::process::ExitCode;

use clap::Parser;

// mimalloc: markedly less CPU and resident memory than glibc malloc for the many short-lived
// allocations of a proxy under concurrency (measured with bench/run).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = layers::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(layers::run(cli))
}
