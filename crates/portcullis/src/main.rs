//! The `portcullis` command: parses arguments and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = portcullis::cli::Cli::parse();
    let done = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(portcullis::cli::run(cli)));
    match done {
        Ok(code) => code,
        Err(e) => {
            // Printed here, once, with its causes: returning it from `main` would print it
            // with its backtrace whenever RUST_BACKTRACE is set, and a bad file or a failed
            // check is not a bug. Panics (bugs) still print theirs, as RUST_BACKTRACE says.
            eprintln!("{}", portcullis::cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}
