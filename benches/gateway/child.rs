//! The gateway alone in a child process, for the memory and CPU sections:
//! the sandbox and the load generator stay in the parent, so the child's
//! `/proc/<pid>/status` and `/proc/<pid>/stat` are the gateway's own. The
//! CPU section's floor, the bare proxy, runs the same way.
//!
//! The parent re-runs this benchmark binary with [`CHILD_ENV`] set to the
//! sandbox's base URL; the child prints `READY <grpc> <admin>` and serves
//! until its stdin closes.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::harness::{EchoHandle, GatewayHandle, bench_config};

/// Set (to the upstream base URL) in the child's environment.
pub const CHILD_ENV: &str = "DSG_BENCH_GATEWAY_CHILD";
/// The same, for a child serving the bare proxy instead of the gateway.
pub const PROXY_CHILD_ENV: &str = "DSG_BENCH_PROXY_CHILD";

/// The child's side: serve, report the addresses, stop when stdin closes.
pub fn serve(upstream: String) {
    runtime().block_on(async move {
        let gateway = GatewayHandle::start(&bench_config(&upstream)).await;
        ready(gateway.grpc_addr, gateway.admin_addr).await;
        gateway.stop().await;
    });
}

/// The child's side with the bare proxy (its admin address is its gRPC one).
pub fn serve_bare_proxy(upstream: String) {
    runtime().block_on(async move {
        let proxy = EchoHandle::bare_proxy(&upstream).await;
        ready(proxy.addr, proxy.addr).await;
        proxy.stop().await;
    });
}

/// The gateway's runtime: multi-threaded, one worker per core.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Prints `READY`, then waits for stdin to close.
async fn ready(grpc: SocketAddr, admin: SocketAddr) {
    println!("READY {grpc} {admin}");
    std::io::stdout().flush().expect("stdout");
    // Any read result (EOF or error) means the parent is done.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink)
    })
    .await;
}

/// The parent's handle on a gateway child.
pub struct GatewayChild {
    pub pid: String,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl GatewayChild {
    /// Starts a gateway child calling the sandbox at `upstream`.
    pub fn spawn(upstream: &str) -> Self {
        Self::spawn_with(CHILD_ENV, upstream)
    }

    /// Starts a bare proxy child calling the sandbox at `upstream`.
    pub fn spawn_bare_proxy(upstream: &str) -> Self {
        Self::spawn_with(PROXY_CHILD_ENV, upstream)
    }

    fn spawn_with(env: &str, upstream: &str) -> Self {
        let exe = std::env::current_exe().expect("benchmark executable");
        let mut child = Command::new(exe)
            .env(env, upstream)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the gateway child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("child READY line");
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("READY"), "child said {line:?}");
        let mut addr = || {
            parts
                .next()
                .and_then(|a| a.parse().ok())
                .expect("child address")
        };
        let (grpc_addr, admin_addr) = (addr(), addr());
        Self {
            pid: child.id().to_string(),
            grpc_addr,
            admin_addr,
            stdin: child.stdin.take(),
            child,
        }
    }

    /// Closes stdin (the child drains and exits) and waits for it.
    pub fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
