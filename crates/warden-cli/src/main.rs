//! `warden`: the server (`serve`), the store-side admin commands (`clients`), and the HTTP
//! client for jobs, queues and the audit log. Exit codes: 0 ok, 1 failure (the message
//! names the server's reason code), 2 usage error (clap's own).
#![forbid(unsafe_code)]

mod args;
mod client;
mod commands;
mod ledger;
mod serve;
mod worker;

use std::process::ExitCode;

use clap::Parser;

/// jemalloc, not glibc's malloc: see decision 0013 (its options are compiled in by
/// `.cargo/config.toml`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`warden audit list | head`) is not a failure worth a message.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            if let Some(usage) = e.downcast_ref::<args::UsageError>() {
                eprintln!("error: {usage}\n\nFor more information, try '--help'.");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
