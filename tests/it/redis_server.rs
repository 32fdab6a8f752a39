//! A real Redis for the tests that need one: `redis-server`, started on a
//! free port of 127.0.0.1 with its own temporary directory, and killed when
//! dropped.
//!
//! ```ignore
//! let Some(redis) = RedisServer::start() else { return };
//! // ... point the crawl at redis.url() ...
//! assert_eq!(redis.cmd(&["HLEN", "key"]), "3");
//! ```
//!
//! The binary is `$SPINNERET_REDIS_SERVER` when set, else `redis-server` on
//! `PATH` (`.ci/run` installs it). When it is missing or does not start, the
//! test is skipped loudly, or fails under CI (`CI` set), as the proxy and
//! Flask tests do.
//!
//! The server persists every write to its append-only file before
//! answering (`--appendonly yes --appendfsync always`), and does no RDB
//! snapshots, so [`RedisServer::kill`] (SIGKILL) then
//! [`RedisServer::restart`] (same port, same directory) brings back
//! everything it had acknowledged.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a started server has to answer `PING` with `+PONG`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between two readiness polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Read and write timeout of [`RedisServer::cmd`].
const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` process of the test's own.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    binary: PathBuf,
}

impl RedisServer {
    /// Starts a server, or says loudly why not and returns `None` (the test
    /// is then skipped); under CI (`CI` set) that is a panic instead.
    pub fn start() -> Option<RedisServer> {
        match Self::try_start() {
            Ok(server) => Some(server),
            Err(why) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "redis-server is not available under CI ({why}): .ci/run installs it"
                );
                eprintln!(
                    "\n!!! SKIPPED: redis-server not available ({why}): \
                     install it with apt-get install redis-server !!!\n"
                );
                None
            }
        }
    }

    fn try_start() -> Result<RedisServer, String> {
        let binary = find_binary()?;
        // Another process may take the free port before the server binds
        // it: try a few ports.
        let mut last_error = String::new();
        for _ in 0..3 {
            let mut server = RedisServer {
                port: free_port().map_err(|e| format!("no free port: {e}"))?,
                dir: tempfile::Builder::new()
                    .prefix("spinneret-redis-")
                    .tempdir()
                    .map_err(|e| format!("cannot create a temporary directory: {e}"))?,
                child: None,
                binary: binary.clone(),
            };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL and waits for it to end. Does nothing
    /// when it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`...) to the server process: `STOP`
    /// stalls it with its connections open, as a hung Redis does.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{signal} {pid} failed");
    }

    /// Starts the server again on the same port and directory, so that it
    /// reloads its append-only file, and waits until it has loaded it and
    /// answers `PING`. Kills it first when it is still running. Panics when
    /// it does not come back.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn_and_wait() {
            self.kill();
            panic!("redis-server did not restart on port {}: {e}", self.port);
        }
    }

    /// Sends one command and returns its reply, in the manner of
    /// `redis-cli --raw`: a status or bulk string as its text, an integer
    /// as its digits, an error as `(error) MESSAGE`, a nil as `(nil)`, and
    /// an array as its elements' replies joined by `\n`. Panics when the
    /// server cannot be reached.
    pub fn cmd(&self, args: &[&str]) -> String {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let stream = TcpStream::connect_timeout(&addr, CMD_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to redis at {addr}: {e}"));
        stream.set_read_timeout(Some(CMD_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(CMD_TIMEOUT)).unwrap();
        (&stream)
            .write_all(&encode(args))
            .unwrap_or_else(|e| panic!("cannot send {args:?} to redis: {e}"));
        read_reply(&mut BufReader::new(&stream))
            .unwrap_or_else(|e| panic!("no reply from redis to {args:?}: {e}"))
    }

    /// Spawns the server on `self.port` and `self.dir` and waits until it
    /// answers `PING` with `+PONG`.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let out = std::fs::File::create(dir.join("redis.out"))
            .map_err(|e| format!("cannot create redis.out: {e}"))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot duplicate redis.out: {e}"))?;
        let child = Command::new(&self.binary)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir)
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "always"])
            .args(["--save", ""])
            .args(["--protected-mode", "no"])
            .args(["--daemonize", "no"])
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "{} exited with {status} on port {}; {}",
                        self.binary.display(),
                        self.port,
                        logs(dir)
                    ));
                }
            }
            if ping(self.port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not answer PING with +PONG on port {} within {START_TIMEOUT:?}; {}",
                    self.binary.display(),
                    self.port,
                    logs(dir)
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `$SPINNERET_REDIS_SERVER`, else `redis-server` on `PATH`.
fn find_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("SPINNERET_REDIS_SERVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "SPINNERET_REDIS_SERVER={} is not a file",
                path.display()
            ))
        };
    }
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| "no redis-server on PATH".to_string())
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Whether a server on `port` answers `PING` with `+PONG` (not, say,
/// `-LOADING` while it reloads its append-only file).
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    if (&stream).write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).is_ok() && line.starts_with("+PONG")
}

/// The server's log and output, for an error message.
fn logs(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    format!(
        "redis.log: {:?}; output: {:?}",
        read("redis.log").trim(),
        read("redis.out").trim()
    )
}

/// A command as RESP: an array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one RESP2 reply; see [`RedisServer::cmd`] for its rendering.
fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| bad(format!("unterminated line {line:?}")))?;
    let (kind, rest) = line.split_at_checked(1).unwrap_or(("", ""));
    let len = || {
        rest.parse::<i64>()
            .map_err(|_| bad(format!("bad length in {line:?}")))
    };
    match kind {
        "+" | ":" => Ok(rest.to_string()),
        "-" => Ok(format!("(error) {rest}")),
        "$" => {
            let Ok(n) = usize::try_from(len()?) else {
                return Ok("(nil)".to_string());
            };
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err(bad(format!("bulk string of {n} bytes not ended by CRLF")));
            }
            data.truncate(n);
            String::from_utf8(data).map_err(|e| bad(format!("bulk string not UTF-8: {e}")))
        }
        "*" => {
            let Ok(n) = usize::try_from(len()?) else {
                return Ok("(nil)".to_string());
            };
            let items = (0..n)
                .map(|_| read_reply(r))
                .collect::<std::io::Result<Vec<_>>>()?;
            Ok(items.join("\n"))
        }
        _ => Err(bad(format!("unknown reply {line:?}"))),
    }
}

#[test]
fn resp_replies_are_rendered() {
    let parse = |wire: &str| read_reply(&mut wire.as_bytes()).unwrap();
    assert_eq!(
        encode(&["SET", "k", ""]),
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
    );
    assert_eq!(parse("+OK\r\n"), "OK");
    assert_eq!(parse(":42\r\n"), "42");
    assert_eq!(parse("-ERR no\r\n"), "(error) ERR no");
    assert_eq!(parse("$5\r\na\r\nbc\r\n"), "a\r\nbc");
    assert_eq!(parse("$-1\r\n"), "(nil)");
    assert_eq!(parse("*3\r\n$1\r\na\r\n:2\r\n*1\r\n+c\r\n"), "a\n2\nc");
    assert_eq!(parse("*0\r\n"), "");
    assert!(read_reply(&mut "?x\r\n".as_bytes()).is_err());
    assert!(read_reply(&mut "$3\r\nab".as_bytes()).is_err());
}

#[test]
fn redis_server_answers_and_keeps_its_data_across_a_kill() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    assert_eq!(redis.cmd(&["SET", "greeting", "hello world"]), "OK");
    assert_eq!(redis.cmd(&["GET", "greeting"]), "hello world");
    assert_eq!(redis.cmd(&["GET", "absent"]), "(nil)");
    assert_eq!(redis.cmd(&["HSET", "h", "a", "1", "b", "2"]), "2");
    assert_eq!(redis.cmd(&["HLEN", "h"]), "2");
    assert_eq!(redis.cmd(&["HGET", "h", "b"]), "2");
    assert_eq!(redis.cmd(&["ZADD", "z", "1", "x", "2", "y"]), "2");
    assert_eq!(redis.cmd(&["ZRANGE", "z", "0", "-1"]), "x\ny");
    assert!(redis.cmd(&["NOSUCHCOMMAND"]).starts_with("(error) ERR"));

    // Every acknowledged write is in the append-only file: a SIGKILL loses
    // none of them.
    let port = redis.port();
    redis.kill();
    assert!(!ping(port), "the killed server still answers");
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.cmd(&["GET", "greeting"]), "hello world");
    assert_eq!(redis.cmd(&["HLEN", "h"]), "2");
    assert_eq!(redis.cmd(&["ZCARD", "z"]), "2");
}
