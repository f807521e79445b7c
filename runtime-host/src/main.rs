//! `runtime-host`: runs a Spin application on wasmtime with nothing else
//! installed. See `runtime-host up --help`.

mod capabilities;
mod engine;
mod faults;
mod files;
#[cfg(test)]
mod fuzz_tests;
mod http;
mod manifest;
mod messaging;
mod platform;
mod runtime_config;
mod schedule;
mod sources;
mod state;
mod stores;
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
    Up(Box<up::UpCommand>),
    /// List messages that failed every delivery attempt (JSON, one per line).
    DeadLetters {
        /// The state directory the host ran with.
        #[arg(long, default_value = ".spin")]
        state_dir: std::path::PathBuf,
    },
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
        Command::DeadLetters { state_dir } => print_dead_letters(&state_dir),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn print_dead_letters(state_dir: &std::path::Path) -> anyhow::Result<()> {
    let path = state_dir.join("messages.db");
    if !path.is_file() {
        anyhow::bail!(
            "{} does not exist: no messages were ever queued in this state directory",
            path.display()
        );
    }
    for letter in messaging::broker::read_dead_letters(&path)? {
        println!("{}", serde_json::to_string(&letter)?);
    }
    Ok(())
}
