//! `kube-harness`: runs the test Kubernetes API server until SIGTERM or SIGINT.
//!
//! ```text
//! kube-harness --listen 127.0.0.1:0 --kubeconfig /tmp/kc [--token SECRET]
//! ```
//! Once it serves, it writes the kubeconfig and prints the server URL as one line on stdout.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use e2e::apiserver::{ApiServer, Config};

/// A Kubernetes API server for tests.
#[derive(Parser, Debug)]
#[command(name = "kube-harness")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Where to write the kubeconfig.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Require this bearer token.
    #[arg(long)]
    token: Option<String>,
    /// Watch events kept for resuming; older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 10_000)]
    history_limit: usize,
    /// Milliseconds between watch bookmarks.
    #[arg(long, default_value_t = 1_000)]
    bookmark_interval_ms: u64,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber_init();
    let args = Args::parse();
    let server = ApiServer::start_with(Config {
        listen: args.listen,
        kubeconfig: Some(args.kubeconfig),
        token: args.token,
        history_limit: args.history_limit,
        bookmark_interval: Duration::from_millis(args.bookmark_interval_ms),
        ..Config::default()
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", server.url())?;
    out.flush()?;
    drop(out);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    server.shutdown();
    Ok(())
}

fn tracing_subscriber_init() {
    // Logs go to stderr so stdout carries only the URL line.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
