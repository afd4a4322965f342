//! TLS end to end, on the real binary: `--tls-cert`/`--tls-key` serve
//! `https://` (health checks) and `wss://` (a session with the Rust client)
//! with a certificate the test makes; SIGHUP swaps the certificate for new
//! connections, a bad file on reload keeps the old one, and a bad file at
//! start stops the start with a message naming it. And `rediss://`: nodes
//! reach a TLS-only `redis-server` with a certificate of the test's own CA
//! (`--redis-ca`), and a document written through one is read through the
//! other, on a standalone Redis and on a Cluster whose nodes also speak TLS
//! to each other.

mod certs;
mod process;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certs::TestCa;
use chorus_redis::testing::{RedisCluster, RedisServer, TlsFiles};
use chorus_client::{Client, ConnectOptions};
use process::Listening;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `chorus serve --dev --listen 127.0.0.1:0 <args>`, with no CHORUS_*
/// variable from the tests' environment.
fn chorus(args: &[&OsStr]) -> Command {
    let mut cmd = process::clean_command(env!("CARGO_BIN_EXE_chorus"));
    cmd.args(["serve", "--dev", "--listen", "127.0.0.1:0"]).args(args);
    cmd
}

fn tls_args<'a>(cert: &'a Path, key: &'a Path) -> Vec<&'a OsStr> {
    vec![OsStr::new("--memory"), OsStr::new("--tls-cert"), cert.as_os_str(), OsStr::new("--tls-key"), key.as_os_str()]
}

/// [`chorus`] started, once it listens.
fn serve(args: &[&OsStr]) -> Listening {
    Listening::spawn(chorus(args))
}

/// GET `path` over https trusting only `ca_pem`: (status, body, the
/// certificate the server showed), or why the handshake failed.
async fn https_get(port: u16, path: &str, ca_pem: &str) -> Result<(u16, String, Vec<u8>), String> {
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let shown = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // The server may end without a TLS close_notify after Connection: close.
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
    Ok((status, body.to_owned(), shown))
}

#[tokio::test]
async fn health_checks_answer_over_https_and_plain_http_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("health CA");
    let (cert, key) = ca.server_cert().write(dir.path());
    let server = serve(&tls_args(&cert, &key));
    let (status, body, _) = https_get(server.port(), "/healthz", &ca.cert_pem).await.expect("an https answer");
    assert_eq!(status, 200, "{body}");
    // A client that does not trust the CA is refused by its own check.
    let other = TestCa::new("someone else");
    let err = https_get(server.port(), "/healthz", &other.cert_pem).await.unwrap_err();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Plain HTTP on the TLS port is not served.
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port())).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply)).await.expect("the connection is closed");
    assert!(!String::from_utf8_lossy(&reply).contains("200 OK"));
}

#[tokio::test]
async fn a_session_over_wss_edits_a_document_with_the_rust_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("wss CA");
    let (cert, key) = ca.server_cert().write(dir.path());
    let server = serve(&tls_args(&cert, &key));
    let url = format!("wss://localhost:{}/v1/ws", server.port());
    let mut ann = Client::connect(&url, ConnectOptions::dev("ann").with_ca_pem(ca.cert_pem.clone())).await.expect("ann connects over wss");
    ann.join("notes", None).await.unwrap();
    ann.open_doc("notes", "draft").await.unwrap();
    ann.insert("notes", "draft", 0, "over TLS").unwrap();
    ann.sync("notes", "draft").await.unwrap();

    let mut bob = Client::connect(&url, ConnectOptions::dev("bob").with_ca_pem(ca.cert_pem.clone())).await.expect("bob connects over wss");
    bob.join("notes", None).await.unwrap();
    let text = bob.open_doc("notes", "draft").await.unwrap().text().to_string();
    assert_eq!(text, "over TLS");

    // Without the CA, the client refuses the server's certificate.
    let err = Client::connect(&url, ConnectOptions::dev("eve")).await.err().expect("an untrusted certificate is refused");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn sighup_rotates_the_certificate_for_new_connections_and_a_bad_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let (old, new) = (old_ca.server_cert(), new_ca.server_cert());
    let (cert, key) = old.write(dir.path());
    let server = serve(&tls_args(&cert, &key));
    let (_, _, shown) = https_get(server.port(), "/healthz", &old_ca.cert_pem).await.unwrap();
    assert_eq!(shown, old.der);

    // A session opened before the rotation lives on.
    let url = format!("wss://localhost:{}/v1/ws", server.port());
    let mut early = Client::connect(&url, ConnectOptions::dev("early").with_ca_pem(old_ca.cert_pem.clone())).await.unwrap();

    new.write(dir.path());
    server.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match https_get(server.port(), "/healthz", &new_ca.cert_pem).await {
            Ok((200, _, shown)) => {
                assert_eq!(shown, new.der);
                break;
            }
            other => assert!(Instant::now() < deadline, "the new certificate is not served after SIGHUP: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(https_get(server.port(), "/healthz", &old_ca.cert_pem).await.is_err(), "the old certificate is gone for new connections");
    early.join("after-rotation", None).await.expect("a session opened before the rotation goes on");

    // A half-written certificate on the next reload: the current one stays.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    server.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, shown) = https_get(server.port(), "/healthz", &new_ca.cert_pem).await.expect("still served");
    assert_eq!((status, shown), (200, new.der.clone()));
    let logs = server.stop();
    assert!(logs.contains("reloaded the TLS certificate"), "{logs}");
    assert!(logs.contains("kept the TLS certificate in use"), "{logs}");
}

#[test]
fn a_certificate_that_cannot_be_used_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("start CA");
    let (cert, key) = ca.server_cert().write(dir.path());
    // A key that is not the certificate's.
    let wrong_key = dir.path().join("wrong.pem");
    std::fs::write(&wrong_key, ca.server_cert().key_pem).unwrap();
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for (cert, key, expected) in [
        (&missing, &key, "missing.pem".to_owned()),
        (&empty, &key, "empty.pem holds no PEM certificate".to_owned()),
        (&cert, &empty, "empty.pem holds no PEM private key".to_owned()),
        (&cert, &wrong_key, "cannot be used together".to_owned()),
    ] {
        let out = chorus(&tls_args(cert, key)).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--tls-cert") && err.contains(&expected), "expected {expected:?} in:\n{err}");
    }
    // One without the other is refused by the command line itself.
    let out = process::clean_command(env!("CARGO_BIN_EXE_chorus")).args(["serve", "--dev", "--memory", "--tls-cert"]).arg(&cert).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

#[tokio::test]
async fn nodes_share_documents_through_a_redis_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("redis CA");
    let (cert, key) = ca.server_cert().write(dir.path());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let redis = RedisServer::start_tls(TlsFiles { cert, key, ca: ca_file.clone() });
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");

    let args = [OsStr::new("--redis"), OsStr::new(&url), OsStr::new("--redis-ca"), ca_file.as_os_str()];
    let (one, two) = (serve(&args), serve(&args));
    let ws = |port: u16| format!("ws://127.0.0.1:{port}/v1/ws");
    let mut ann = Client::connect(&ws(one.port()), ConnectOptions::dev("ann")).await.unwrap();
    ann.join("shared", None).await.unwrap();
    ann.open_doc("shared", "notes").await.unwrap();
    ann.insert("shared", "notes", 0, "kept in a Redis reached over TLS").unwrap();
    ann.sync("shared", "notes").await.unwrap();
    let mut bob = Client::connect(&ws(two.port()), ConnectOptions::dev("bob")).await.unwrap();
    bob.join("shared", None).await.unwrap();
    let text = bob.open_doc("shared", "notes").await.unwrap().text().to_string();
    assert_eq!(text, "kept in a Redis reached over TLS");
    // Redis holds the document (read back over TLS with redis-cli).
    assert_ne!(redis.cli(&["DBSIZE"]), "0");

    // Without the CA, the node does not trust Redis's certificate and says so.
    let out = chorus(&[OsStr::new("--redis"), OsStr::new(&url)]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--redis") && err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn a_node_works_on_a_redis_cluster_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster CA");
    let (cert, key) = ca.server_cert().write(dir.path());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let cluster = RedisCluster::start_tls(3, TlsFiles { cert, key, ca: ca_file.clone() });
    let seeds = cluster.urls().join(",");
    assert!(seeds.starts_with("rediss://"), "{seeds}");

    let args = [OsStr::new("--redis"), OsStr::new(&seeds), OsStr::new("--redis-ca"), ca_file.as_os_str()];
    let (one, two) = (serve(&args), serve(&args));
    let ws = |port: u16| format!("ws://127.0.0.1:{port}/v1/ws");
    // Rooms whose keys land on different masters: every one is reached.
    for room in ["north", "south", "east", "west"] {
        let mut ann = Client::connect(&ws(one.port()), ConnectOptions::dev("ann")).await.unwrap();
        ann.join(room, None).await.unwrap();
        ann.open_doc(room, "notes").await.unwrap();
        ann.insert(room, "notes", 0, room).unwrap();
        ann.sync(room, "notes").await.unwrap();
        let mut bob = Client::connect(&ws(two.port()), ConnectOptions::dev("bob")).await.unwrap();
        bob.join(room, None).await.unwrap();
        assert_eq!(bob.open_doc(room, "notes").await.unwrap().text().to_string(), room);
    }
}
