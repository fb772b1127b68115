//! A real `redis-server` for tests: a free loopback port, a temporary
//! directory, no persistence unless asked, killed on drop.
//!
//! Without `redis-server` on PATH a test is skipped with one line on
//! stderr, unless `CI` is set: then it fails.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// TLS only (`--port 0 --tls-port PORT` and these files): (cert, key, CA).
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl RedisServer {
    /// A connection of its own to this (plain, not TLS) server.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Writes an RDB snapshot (`SAVE`) and reads it back: what a backup or
    /// a stolen disk would hold.
    pub async fn dump(&self) -> Vec<u8> {
        let mut conn = self.connection().await;
        redis::cmd("SAVE")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        std::fs::read(self.dir().join("dump.rdb")).unwrap()
    }

    /// Starts a server, or returns `None` (after saying so once) when
    /// `redis-server` is not installed and `CI` is unset.
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// Starts a TLS-only server with `cert`, `key` (PEM) and `ca` (PEM, for
    /// client certificates, which are not required).
    pub fn start_tls(cert: PathBuf, key: PathBuf, ca: PathBuf) -> Option<Self> {
        Self::start_with(Some((cert, key, ca)))
    }

    fn start_with(tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Option<Self> {
        if !installed() {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server not on PATH, and CI is set: install Debian's redis-server"
            );
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                // Written to the process's stderr directly: the test harness
                // captures print macros, not this.
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: redis-server not on PATH (install Debian's redis-server)"
                );
            });
            return None;
        }
        // A port that was free a moment ago can be taken meanwhile: retry.
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self {
                child: None,
                port,
                dir: tempfile::tempdir().expect("temp dir"),
                tls: tls.clone(),
            };
            if server.launch() {
                return Some(server);
            }
        }
        panic!("redis-server did not start on a free port in 5 tries");
    }

    /// `redis://127.0.0.1:PORT/`, or `rediss://localhost:PORT/` with TLS.
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}/", self.port),
            Some(_) => format!("rediss://localhost:{}/", self.port),
        }
    }

    /// The directory `SAVE` writes `dump.rdb` to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.launch(), "redis-server did not restart on its port");
    }

    /// Spawns the server and waits (at most 10 s) until it answers PING.
    fn launch(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some((cert, key, ca)) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(cert)
                .arg("--tls-key-file")
                .arg(key)
                .arg("--tls-ca-cert-file")
                .arg(ca)
                .args(["--tls-auth-clients", "no"]),
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let give_up = Instant::now() + Duration::from_secs(10);
        while Instant::now() < give_up {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                // Exited: most likely the port was taken.
                self.child = None;
                return false;
            }
            let ready = match self.tls {
                None => ping(self.port),
                // Listening is all a plain socket can tell of a TLS server.
                Some(_) => TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
            };
            if ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn installed() -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir: PathBuf| dir.join("redis-server").is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// True when `haystack` (a dump, a stored value) holds `needle` as is.
pub fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
