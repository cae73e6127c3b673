//! The `folio` command, one file: the one user of clap and anyhow.
//!
//! `folio [OPTIONS] --upstream URL` serves; `folio
//! check` validates the policies; `folio explain` says what folio would do
//! with a request; `folio warm` fetches the config's warm list through a
//! running folio.

use std::io::{IsTerminal as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use folio::config::Config;
use folio::{PolicySet, Settings, TenantSource, parse_duration, parse_size};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Say what folio would do with a request: policy, key, tags, TTL, events, cached or not and why.
    Explain {
        /// GET, HEAD, PUT, ...
        method: String,
        /// The request URL, e.g. 'http://host/api/v1/products/42?x=1' (or just the path).
        url: String,
        /// A request header, 'Name: value' (repeat).
        #[arg(short = 'H', long = "header", value_parser = header_arg)]
        headers: Vec<(String, String)>,
        #[arg(long, env = "FOLIO_POLICIES", default_value = "policies")]
        policies: PathBuf,
        #[arg(long, env = "FOLIO_TENANT", default_value = "header:X-Tenant-ID")]
        tenant: TenantSource,
    },
    /// Fetch the config file's warm list once, through a running folio, with a progress bar.
    Warm {
        #[arg(long, env = "FOLIO_CONFIG")]
        config: PathBuf,
        /// The running folio (https:// is verified against the system's roots plus --ca-file).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        target: String,
        #[arg(long, env = "FOLIO_TENANT", default_value = "header:X-Tenant-ID")]
        tenant: TenantSource,
        /// Extra certificate authorities (PEM) for an https:// target.
        #[arg(long, env = "FOLIO_CA_FILE")]
        ca_file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to serve on.
    #[arg(long, env = "FOLIO_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The API to put the cache in front of, e.g. http://127.0.0.1:8081.
    #[arg(long, env = "FOLIO_UPSTREAM")]
    upstream: Option<String>,
    /// Directory of endpoint policy files (*.yaml); reloaded on SIGHUP.
    #[arg(long, env = "FOLIO_POLICIES", default_value = "policies")]
    policies: PathBuf,
    /// Operator config file: health thresholds, warming (see docs/operations.md).
    #[arg(long, env = "FOLIO_CONFIG")]
    config: Option<PathBuf>,
    /// Redis URL for the shared L2 tier (redis://host:port, rediss://user:pass@host:port over TLS, redis+unix:///path). Off when absent.
    #[arg(
        long,
        env = "FOLIO_REDIS",
        conflicts_with = "redis_cluster",
        hide_env_values = true
    )]
    redis: Option<String>,
    /// Redis Cluster nodes for L2, comma-separated (redis://host:port,... or rediss://...).
    #[arg(
        long,
        env = "FOLIO_REDIS_CLUSTER",
        value_delimiter = ',',
        hide_env_values = true
    )]
    redis_cluster: Vec<String>,
    /// Extra certificate authorities (PEM), trusted beside the system's roots for an https:// upstream and rediss:// Redis.
    #[arg(long, env = "FOLIO_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Certificate chain (PEM) to serve clients over TLS (HTTP/2 and HTTP/1.1 by ALPN); needs --tls-key. Re-read on SIGHUP.
    #[arg(long, env = "FOLIO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "FOLIO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Key file sealing every entry written to Redis (AES-256-GCM): lines of KEY_ID BASE64_32_BYTES; the first key encrypts, all decrypt.
    #[arg(long, env = "FOLIO_ENCRYPTION_KEYS")]
    encryption_keys: Option<PathBuf>,
    /// L1 (in-process) budget: bytes or 256MB, 1GB; 0 turns L1 off.
    #[arg(long, env = "FOLIO_L1_CAPACITY", default_value = "256MB", value_parser = parse_size)]
    l1_capacity: u64,
    /// Where the tenant comes from: header:NAME, host or path:N.
    #[arg(long, env = "FOLIO_TENANT", default_value = "header:X-Tenant-ID")]
    tenant: TenantSource,
    /// Longest wait for the upstream's answer (then 504)
    #[arg(long, env = "FOLIO_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    upstream_timeout: Duration,
    /// Longest wait for each part of a body the upstream streams on, not stored (then the answer is cut short)
    #[arg(long, env = "FOLIO_UPSTREAM_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    upstream_read_timeout: Duration,
    /// Longest wait for one Redis command (then it counts as a miss).
    #[arg(long, env = "FOLIO_L2_TIMEOUT", default_value = "50ms", value_parser = parse_duration)]
    l2_timeout: Duration,
    /// Ignore CDN-Cache-Control from the upstream (by default folio is a CDN-class cache and obeys it over Cache-Control).
    #[arg(long, env = "FOLIO_IGNORE_CDN_CACHE_CONTROL")]
    ignore_cdn_cache_control: bool,
    /// Address of the admin API (dashboard, metrics, health, purge, events, reload); "off" to disable.
    #[arg(long, env = "FOLIO_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    admin_listen: String,
    /// Bearer token of operators: may purge for any tenant and reload. Without any token, the admin API accepts mutations from loopback only.
    #[arg(long, env = "FOLIO_ADMIN_TOKEN", value_parser = admin_token, hide_env_values = true)]
    admin_token: Option<String>,
    /// A tenant's own token, TENANT=TOKEN (repeat, or comma-separate in the variable): may purge that tenant only.
    #[arg(long, env = "FOLIO_TENANT_TOKENS", value_delimiter = ',', value_parser = tenant_token, hide_env_values = true)]
    tenant_token: Vec<(String, String)>,
    /// Proxies in front of folio whose X-Forwarded-For / Forwarded are believed (CIDR, comma-separated); from other peers those headers are replaced.
    #[arg(long, env = "FOLIO_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<folio::Cidr>,
    /// A client connection with no request in flight for this long is closed (HTTP/1.1 and HTTP/2; an HTTP/1.1 one, waiting for a request head, after at most 30s); one that takes no part of a response for this long (at most 30s, at least 10s) is dropped.
    #[arg(long, env = "FOLIO_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Metric label slots for tenants without a --tenant-token (those always have their own label); a slot idle for 10 minutes goes to a newcomer, the rest count as "other".
    #[arg(long, env = "FOLIO_METRICS_TENANTS", default_value = "20")]
    metrics_tenants: usize,
    /// Log format: human-readable lines or JSON objects.
    #[arg(long, env = "FOLIO_LOG_FORMAT", value_enum, default_value = "human")]
    log_format: LogFormat,
    /// One access line per request: on (stdout), off, or a file (appended; reopened on SIGHUP). Written off the request path; lines the output cannot keep up with are dropped and counted.
    #[arg(long, env = "FOLIO_ACCESS_LOG", default_value = "on")]
    access_log: folio::AccessTarget,
    /// Access-log bytes held while its output is behind (e.g. 8MB); past it, lines are dropped and counted.
    #[arg(long, env = "FOLIO_ACCESS_LOG_BUFFER", default_value = "8MB", value_parser = parse_size)]
    access_log_buffer: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stdout().is_terminal();
    match cli.serve.log_format {
        LogFormat::Human => tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }
    let result = match cli.command {
        Some(Command::Check { policies }) => check(&policies),
        Some(Command::Explain {
            method,
            url,
            headers,
            policies,
            tenant,
        }) => explain(&method, &url, &headers, &policies, &tenant),
        Some(Command::Warm {
            config,
            target,
            tenant,
            ca_file,
        }) => warm(&config, &target, &tenant, ca_file.as_deref()),
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

fn explain(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    dir: &std::path::Path,
    tenant: &TenantSource,
) -> anyhow::Result<ExitCode> {
    let policies = match PolicySet::load_dir(dir) {
        Ok(policies) => policies,
        Err(errors) => {
            eprintln!("{errors}");
            anyhow::bail!("{} problem(s) in the policies", errors.0.len());
        }
    };
    let text =
        folio::explain_text(&policies, tenant, method, url, headers).map_err(anyhow::Error::msg)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn warm(
    config: &std::path::Path,
    target: &str,
    tenant: &TenantSource,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config).map_err(anyhow::Error::msg)?;
    let tls = if target.starts_with("https://") {
        Some(folio::trusted_client_config(ca_file).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let plan = config
        .warm
        .context("the config file has no warm: section")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(folio::warm(
        target,
        &plan,
        tenant,
        tls,
        |done, total, failed| {
            let width = 30;
            let filled = (done * width).checked_div(total).unwrap_or(width);
            eprint!(
                "\rwarming [{}{}] {done}/{total} ({failed} failed)",
                "#".repeat(filled),
                " ".repeat(width - filled)
            );
            let _ = std::io::stderr().flush();
        },
    ));
    eprintln!();
    println!(
        "warmed {} of {} URLs ({} failed)",
        report.ok, report.total, report.failed
    );
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
    if let Some(path) = &args.config {
        settings.config =
            Config::load(path).map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    }
    settings.policies_dir = Some(args.policies.clone());
    settings.redis = args.redis;
    settings.redis_cluster = args.redis_cluster;
    settings.ca_file = args.ca_file;
    settings.tls_cert = args.tls_cert;
    settings.tls_key = args.tls_key;
    settings.encryption_keys = args.encryption_keys;
    let scheme = if settings.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    settings.admin.operator_token = args.admin_token;
    settings.admin.tenant_tokens = args.tenant_token;
    settings
        .admin
        .validate()
        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    settings.l1_capacity = args.l1_capacity;
    settings.tenant = args.tenant;
    settings.upstream_timeout = args.upstream_timeout;
    settings.upstream_read_timeout = args.upstream_read_timeout;
    settings.l2_timeout = args.l2_timeout;
    settings.cdn = !args.ignore_cdn_cache_control;
    settings.metrics_tenants = args.metrics_tenants;
    settings.trusted_proxies = args.trusted_proxies;
    settings.access_log = args.access_log;
    settings.access_log_buffer = usize::try_from(args.access_log_buffer).unwrap_or(usize::MAX);
    settings.log_format = match args.log_format {
        LogFormat::Human => folio::AccessFormat::Human,
        LogFormat::Json => folio::AccessFormat::Json,
    };
    settings.idle_timeout = args.idle_timeout;

    // Pinned to one CPU (as in the benchmarks), a single-threaded runtime does
    // the same work without the machinery of work stealing.
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let admin = match args.admin_listen.as_str() {
            "off" => None,
            addr => {
                let addr: SocketAddr = addr
                    .parse()
                    .with_context(|| format!("--admin-listen '{addr}' is not an address"))?;
                let admin = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                    format!("cannot listen on {addr} for the admin API (--admin-listen)")
                })?;
                println!(
                    "folio admin API on http://{} (dashboard at /_folio/)",
                    admin.local_addr()?
                );
                Some(admin)
            }
        };
        println!(
            "folio listening on {scheme}://{address} -> {} ({} policies from {})",
            folio::redact_url(&settings.upstream.to_string()),
            policies.len(),
            args.policies.display()
        );
        let listeners = folio::Listeners {
            proxy: listener,
            admin,
        };
        folio::run(listeners, settings, policies, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `Name: value`.
fn header_arg(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) => Ok((name.trim().to_owned(), value.trim().to_owned())),
        None => Err(format!("expected 'Name: value', got '{text}'")),
    }
}

/// The operator token: not empty, or `Authorization: Bearer ` with nothing
/// after it would be the operator. (Messages never repeat a secret.)
fn admin_token(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(
            "the operator token (--admin-token, FOLIO_ADMIN_TOKEN) is empty: give a secret, or leave it out"
                .to_owned(),
        );
    }
    Ok(text.trim().to_owned())
}

/// `TENANT=TOKEN`, neither empty.
fn tenant_token(text: &str) -> Result<(String, String), String> {
    let Some((tenant, token)) = text.split_once('=') else {
        return Err("expected TENANT=TOKEN (no '=' found)".to_owned());
    };
    let (tenant, token) = (tenant.trim(), token.trim());
    if tenant.is_empty() {
        return Err("expected TENANT=TOKEN: the tenant is empty".to_owned());
    }
    if token.is_empty() {
        return Err(format!(
            "the token of tenant '{tenant}' is empty (--tenant-token {tenant}=): give a secret"
        ));
    }
    Ok((tenant.to_owned(), token.to_owned()))
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
