//! The `camrelay` command line: `run` (the default), `demo` and `check-config`.

// The command line talks to people: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::process::ExitCode;

use camrelay::app::Relay;
use camrelay::demo::{Demo, DemoOptions};
use camrelay::logging;
use camrelay_config::{Config, LogConfig, LogFormat};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration that does not parse or validate.
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "camrelay",
    version,
    about = "Relays Nest and RTSP cameras to a WebRTC SFU and to RTSP clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay, configured by CAMRELAY_* environment variables (the default).
    Run,
    /// Run against a simulated Nest API and cameras, with no configuration; prints what to open.
    Demo {
        /// Where the HTTP endpoints listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http_addr: SocketAddr,
        /// Where the RTSP server listens.
        #[arg(long, default_value = "127.0.0.1:8554")]
        rtsp_addr: SocketAddr,
    },
    /// Print the effective configuration (secrets redacted), or every error and exit 2.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => check_config(),
        Command::Run => match Config::from_env() {
            Ok(config) => with_runtime(&config.log.clone(), run(config)),
            Err(errors) => {
                eprintln!(
                    "camrelay: invalid configuration ({} problems):\n{errors}",
                    errors.len()
                );
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Demo {
            http_addr,
            rtsp_addr,
        } => {
            let log = LogConfig {
                filter: std::env::var("CAMRELAY_LOG").unwrap_or_else(|_| "info".to_owned()),
                format: LogFormat::Text,
            };
            with_runtime(
                &log,
                demo(DemoOptions {
                    http_addr,
                    rtsp_addr,
                }),
            )
        }
    }
}

fn check_config() -> ExitCode {
    match Config::from_env() {
        Ok(config) => {
            use std::io::Write as _;
            // A closed pipe (`check-config | head`) is the reader's choice, not an error.
            let _ = writeln!(std::io::stdout().lock(), "{config}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!(
                "camrelay: invalid configuration ({} problems):\n{errors}",
                errors.len()
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn with_runtime(
    log: &LogConfig,
    main: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    if let Err(e) = logging::init(log) {
        eprintln!("camrelay: {e:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("camrelay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "camrelay stopped");
            eprintln!("camrelay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let relay = Relay::start(config, shutdown.clone()).await?;
    let reloads = tokio::spawn(reload_on_sighup(std::sync::Arc::clone(&relay)));
    wait_for_signal().await;
    reloads.abort();
    shutdown.cancel();
    relay.stopped().await;
    Ok(())
}

/// Re-reads the configuration (the environment and `CAMRELAY_ENV_FILE`) on every SIGHUP and
/// applies what can change without a restart; a configuration with errors is logged and
/// ignored, the relay keeps running on the one it has.
async fn reload_on_sighup(relay: std::sync::Arc<Relay>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reloading is off");
            return;
        };
        while hangups.recv().await.is_some() {
            match Config::from_env() {
                Ok(config) => {
                    tracing::info!("SIGHUP: configuration re-read");
                    relay.reload(&config);
                }
                Err(errors) => {
                    tracing::error!(problems = errors.len(), errors = %errors, "SIGHUP: the new configuration is invalid; keeping the current one");
                }
            }
        }
    }
    #[cfg(not(unix))]
    drop(relay);
}

async fn demo(options: DemoOptions) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let demo = Demo::start(&options, shutdown.clone()).await?;
    println!("camrelay demo is running (Ctrl-C to stop). Open:");
    for (label, url) in demo.urls() {
        println!("  {label:<22} {url}");
    }
    wait_for_signal().await;
    shutdown.cancel();
    demo.relay.stopped().await;
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}
