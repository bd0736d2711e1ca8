//! The `portcullis` command: parses arguments and hands over to the library.

use clap::Parser;

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = portcullis::cli::Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(portcullis::cli::run(cli))
}
