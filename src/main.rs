//! The `folio` command: `folio [OPTIONS] --upstream URL` serves;
//! `folio check` validates the policies and exits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use folio::{PolicySet, Settings, TenantSource, parse_duration, parse_size};
use tracing_subscriber::EnvFilter;

/// A caching reverse proxy for read-heavy JSON APIs.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the policy files and exit (non-zero with `file:line: field: problem` lines).
    Check {
        #[arg(long, env = "FOLIO_POLICIES", default_value = "policies")]
        policies: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to serve on.
    #[arg(long, env = "FOLIO_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The API to put the cache in front of, e.g. http://127.0.0.1:8081.
    #[arg(long, env = "FOLIO_UPSTREAM")]
    upstream: Option<String>,
    /// Directory of endpoint policy files (*.yaml).
    #[arg(long, env = "FOLIO_POLICIES", default_value = "policies")]
    policies: PathBuf,
    /// Redis URL for the shared L2 tier (redis://host:port, redis+unix:///path). Off when absent.
    #[arg(long, env = "FOLIO_REDIS")]
    redis: Option<String>,
    /// L1 (in-process) budget: bytes or 256MB, 1GB; 0 turns L1 off.
    #[arg(long, env = "FOLIO_L1_CAPACITY", default_value = "256MB", value_parser = parse_size)]
    l1_capacity: u64,
    /// Where the tenant comes from: header:NAME, host or path:N.
    #[arg(long, env = "FOLIO_TENANT", default_value = "header:X-Tenant-ID")]
    tenant: TenantSource,
    /// Longest wait for the upstream's answer (then 504).
    #[arg(long, env = "FOLIO_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    upstream_timeout: Duration,
    /// Longest wait for one Redis command (then it counts as a miss).
    #[arg(long, env = "FOLIO_L2_TIMEOUT", default_value = "50ms", value_parser = parse_duration)]
    l2_timeout: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,folio::access=off")),
        )
        .init();
    let result = match cli.command {
        Some(Command::Check { policies }) => check(&policies),
        None => serve(cli.serve),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("folio: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    match PolicySet::load_dir(dir) {
        Ok(set) => {
            println!("{}: {} policies, all valid", dir.display(), set.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} problem(s) in {}", errors.0.len(), dir.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let upstream = args.upstream.context(
        "--upstream URL is required (or FOLIO_UPSTREAM), e.g. --upstream http://127.0.0.1:8081",
    )?;
    let upstream = upstream
        .parse()
        .with_context(|| format!("--upstream '{upstream}' is not a URL"))?;
    let policies = match PolicySet::load_dir(&args.policies) {
        Ok(policies) => policies,
        Err(errors) => {
            eprintln!("{errors}");
            anyhow::bail!(
                "refusing to start: {} problem(s) in the policies",
                errors.0.len()
            );
        }
    };
    let mut settings = Settings::new(upstream);
    settings.redis = args.redis;
    settings.l1_capacity = args.l1_capacity;
    settings.tenant = args.tenant;
    settings.upstream_timeout = args.upstream_timeout;
    settings.l2_timeout = args.l2_timeout;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        println!(
            "folio listening on http://{address} -> {} ({} policies from {})",
            settings.upstream,
            policies.len(),
            args.policies.display()
        );
        folio::run(listener, settings, policies, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
