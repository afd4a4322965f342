//! `chorus` as a child process: [`Chorus`] on a free port with its log in a
//! file, for tests that kill and restart it on the same data folder, and
//! [`Listening`] on the port it picks itself, known by the line it prints,
//! for tests of the binary's own behaviour (flags, signals, memory).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `bin` with no CHORUS_* (or NO_COLOR) variable from the tests' environment,
/// so a developer's settings never change what a test sees.
pub fn clean_command(bin: &str) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CHORUS_") || key == "NO_COLOR" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A running `chorus serve` started with `--listen 127.0.0.1:0`, known by the
/// address its first line on stdout names. Its stderr is read by a thread as
/// it comes, so a chatty server never blocks on a full pipe.
pub struct Listening {
    child: Child,
    addr: String,
    stderr: Option<JoinHandle<String>>,
}

impl Listening {
    /// Spawns `cmd` and waits for its listening line (a server that exits
    /// first fails the test with what it wrote on stderr).
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the chorus binary starts");
        let mut err = child.stderr.take().expect("stderr is piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        let mut out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.wait();
            panic!("chorus exited before listening:\n{}", stderr.join().unwrap_or_default());
        }
        let url = line.split("listening on ").nth(1).unwrap_or_else(|| panic!("not the listening line: {line}")).trim();
        let addr = url.trim_start_matches("https://").trim_start_matches("http://").to_owned();
        // The rest of stdout is of no interest; drained so it never fills.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        Listening { child, addr, stderr: Some(stderr) }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn socket_addr(&self) -> std::net::SocketAddr {
        self.addr.parse().expect("an IP address and port")
    }

    pub fn port(&self) -> u16 {
        self.socket_addr().port()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the signal named as `kill` names it (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the server (SIGKILL) and returns everything it wrote on stderr.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default()
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Chorus {
    child: Child,
    port: u16,
    log: PathBuf,
    _scratch: tempfile::TempDir,
}

fn command(cwd: &Path, port: u16, args: &[&str], log: &Path) -> Command {
    let mut cmd = clean_command(env!("CARGO_BIN_EXE_chorus"));
    cmd.args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")]).args(args);
    let log = std::fs::File::create(log).expect("create the log file");
    cmd.current_dir(cwd).env("CHORUS_LOG", "info").env("NO_COLOR", "1").stdout(Stdio::null()).stderr(log);
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Chorus {
    /// `chorus serve --data DATA <args>`, waiting until it listens.
    pub async fn start(data: &Path, args: &[&str]) -> Self {
        let data = data.to_str().expect("a UTF-8 path");
        let mut all = vec!["--data", data];
        all.extend_from_slice(args);
        let scratch = tempfile::tempdir().unwrap();
        Self::launch(scratch, None, &all).await
    }

    /// `chorus serve <args>` started in `cwd`.
    pub async fn start_in(cwd: &Path, args: &[&str]) -> Self {
        Self::launch(tempfile::tempdir().unwrap(), Some(cwd), args).await
    }

    async fn launch(scratch: tempfile::TempDir, cwd: Option<&Path>, args: &[&str]) -> Self {
        let port = free_port();
        let log = scratch.path().join("chorus.log");
        let child = command(cwd.unwrap_or(scratch.path()), port, args, &log).spawn().expect("start chorus");
        let mut me = Self { child, port, log, _scratch: scratch };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("chorus exited ({status}) before listening:\n{}", me.log_text());
            }
            assert!(Instant::now() < deadline, "chorus did not start listening:\n{}", me.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        me
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/ws", self.port)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Chorus {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `chorus serve --data DATA <args>` expecting it to stop by itself:
/// (whether it exited with success, its log).
pub async fn run_to_exit(data: &Path, args: &[&str]) -> (bool, String) {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("chorus.log");
    let mut all = vec!["--data", data.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut child = command(scratch.path(), free_port(), &all, &log).spawn().expect("start chorus");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chorus kept running:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (status.success(), std::fs::read_to_string(&log).unwrap_or_default())
}

/// Runs `chorus <args>` to its end: (whether it succeeded, stdout and stderr).
pub fn run(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = clean_command(env!("CARGO_BIN_EXE_chorus")).args(args).output().expect("run chorus");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A plain HTTP/1.1 GET: (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("the server accepts connections");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_owned())
}
