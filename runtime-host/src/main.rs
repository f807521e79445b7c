//! `runtime-host`: runs a Spin application on wasmtime with nothing else
//! installed. See `runtime-host up --help`.

mod capabilities;
mod engine;
mod http;
mod manifest;
mod runtime_config;
mod state;
mod up;
mod variables;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "runtime-host",
    version,
    about = "Run Spin applications locally on wasmtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the application described by a Spin manifest.
    Up(up::UpCommand),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUNTIME_HOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(cmd) => cmd.run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
