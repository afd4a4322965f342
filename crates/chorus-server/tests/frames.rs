//! Frames the WebSocket layer refuses, written byte by byte on a raw socket:
//! each gets the documented error and close code, before `hello` as after it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::start;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Raw {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// A WebSocket connection after the upgrade, nothing sent yet.
    async fn open(addr: SocketAddr) -> Raw {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Raw { tcp, buf: Vec::new() };
        while !raw.buf.windows(4).any(|w| w == b"\r\n\r\n") {
            raw.fill().await;
        }
        let end = raw.buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(raw.buf.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&raw.buf));
        raw.buf.drain(..end);
        raw
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(20), self.tcp.read(&mut chunk)).await.expect("the server answers").unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// Sends a masked frame whose first byte is `first` (FIN, RSV, opcode),
    /// announcing `len` bytes of which `payload` is sent.
    async fn send(&mut self, first: u8, len: usize, payload: &[u8]) {
        let mut frame = vec![first];
        match len {
            0..=125 => frame.push(0x80 | len as u8),
            126..=65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as is
        frame.extend_from_slice(payload);
        let _ = self.tcp.write_all(&frame).await;
    }

    /// The next frame from the server: (opcode, payload).
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (opcode, short) = (self.buf[0] & 0x0f, (self.buf[1] & 0x7f) as usize);
                let (len, head) = match short {
                    126 if self.buf.len() >= 4 => (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4),
                    127 if self.buf.len() >= 10 => (u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize, 10),
                    126 | 127 => (usize::MAX, 0),
                    n => (n, 2),
                };
                if len != usize::MAX && self.buf.len() >= head + len {
                    let payload = self.buf[head..head + len].to_vec();
                    self.buf.drain(..head + len);
                    return Some((opcode, payload));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Text frames until the close frame: (texts, close code).
    async fn until_close(&mut self) -> (Vec<String>, Option<u16>) {
        let mut texts = Vec::new();
        while let Some((opcode, payload)) = self.frame().await {
            match opcode {
                0x1 => texts.push(String::from_utf8(payload).unwrap()),
                0x8 => return (texts, payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))),
                _ => {}
            }
        }
        (texts, None)
    }
}

const HELLO: &[u8] = br#"{"type":"hello","protocol":1}"#;

#[tokio::test]
async fn a_frame_with_a_reserved_bit_closes_with_1002() {
    let s = start(|_| {}).await;
    for before_hello in [false, true] {
        let mut c = Raw::open(s.addr).await;
        if !before_hello {
            c.send(0x81, HELLO.len(), HELLO).await;
            let (_, welcome) = c.frame().await.unwrap();
            assert!(String::from_utf8(welcome).unwrap().contains("welcome"));
        }
        c.send(0x81 | 0x40, HELLO.len(), HELLO).await; // RSV1 without an extension
        let (texts, code) = c.until_close().await;
        assert_eq!(code, Some(1002), "before hello: {before_hello}; {texts:?}");
        assert!(texts.iter().any(|t| t.contains("bad_message")), "{texts:?}");
    }
}

#[tokio::test]
async fn invalid_utf8_before_hello_gets_an_error_and_1007() {
    let s = start(|_| {}).await;
    let mut c = Raw::open(s.addr).await;
    c.send(0x81, 4, &[b'{', 0xff, 0xfe, b'}']).await;
    let (texts, code) = c.until_close().await;
    assert_eq!(code, Some(1007), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("bad_message") && t.contains("UTF-8")), "{texts:?}");
}

#[tokio::test]
async fn an_oversized_frame_before_hello_gets_an_error_and_1009() {
    let s = start(|_| {}).await;
    let mut c = Raw::open(s.addr).await;
    // Announces 2 MiB, over the hard cap of max(4 x 64 KiB, 1 MiB).
    c.send(0x81, 2 << 20, &[b' '; 1024]).await;
    let (texts, code) = c.until_close().await;
    assert_eq!(code, Some(1009), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("message_too_large")), "{texts:?}");
}
