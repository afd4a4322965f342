//! Array frames over a real socket: a connection whose `hello` set `batch`
//! and one that did not watch the same document while a third commits many
//! ops. Flattened, both receive the same messages, byte for byte; only the
//! first ever receives an array.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::{start, TestServer};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const ROOM: &str = "arrays/room";
const CHUNK: usize = 16_000;
const ROUNDS: u64 = 200;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw connection that has joined the room and opened the document.
/// `small_buffer` shrinks its receive buffer so that a writer facing it is
/// held up soon once it stops reading.
async fn reader(server: &TestServer, user: &str, batch: bool, small_buffer: bool) -> Socket {
    let socket = TcpSocket::new_v4().unwrap();
    if small_buffer {
        socket.set_recv_buffer_size(4096).unwrap();
    }
    let tcp = socket.connect(server.addr).await.unwrap();
    let url = format!("{}?user={user}", server.ws_url());
    let (mut ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp)).await.unwrap();
    let mut hello = json!({"type": "hello", "protocol": 1});
    if batch {
        hello["batch"] = json!(true);
    }
    for msg in [hello, json!({"type": "join", "room": ROOM}), json!({"type": "open_doc", "id": 1, "room": ROOM, "doc": "d"})] {
        ws.send(Message::Text(msg.to_string().into())).await.unwrap();
    }
    next_where(&mut ws, |m| m["type"] == "opened").await;
    ws
}

/// Reads frames until one holds a message `pick` accepts (arrays flattened);
/// returns the frames read.
async fn next_where(ws: &mut Socket, mut pick: impl FnMut(&Value) -> bool) -> Vec<String> {
    let mut frames = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.expect("a frame within 20 s");
        let Some(Ok(Message::Text(text))) = frame else { panic!("socket ended: {frame:?}") };
        let value: Value = serde_json::from_str(&text).unwrap();
        let done = match &value {
            Value::Array(items) => items.iter().any(&mut pick),
            one => pick(one),
        };
        frames.push(text.to_string());
        if done {
            return frames;
        }
    }
}

/// The messages of `frames`, each as its own JSON text. An array's elements
/// are recovered from the single messages they must equal byte for byte:
/// `plain` holds those, in order.
fn flatten(frames: &[String], plain: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for frame in frames {
        match serde_json::from_str::<Value>(frame).unwrap() {
            Value::Array(items) => {
                assert!(items.len() >= 2, "an array holds at least two messages");
                assert!(frame.len() <= 64 * 1024, "an array frame is at most 64 KiB: {}", frame.len());
                let at = out.len();
                let alone = &plain[at..at + items.len()];
                assert_eq!(frame, &format!("[{}]", alone.join(",")), "the array is those messages, joined");
                out.extend(alone.iter().cloned());
            }
            _ => out.push(frame.clone()),
        }
    }
    out
}

#[tokio::test]
async fn a_connection_that_asked_gets_the_same_messages_in_array_frames() {
    let server = start(|c| {
        c.messages_per_second = 100_000;
        c.max_op_bytes = 20_000;
    })
    .await;
    let mut plain = reader(&server, "plain", false, false).await;
    let mut batched = reader(&server, "batched", true, true).await;
    // Both have seen each other arrive: from here on, the room's messages
    // are the same for both.
    next_where(&mut plain, |m| m["type"] == "member_joined").await;
    let mut writer = server.client("writer").await;
    writer.join(ROOM, None).await.unwrap();
    writer.open_doc(ROOM, "d").await.unwrap();
    // Big ops, inserted and deleted in turn, while the batched socket is not
    // read: its writer is held up and its outbox fills, so its batches grow.
    let chunk = "x".repeat(CHUNK);
    for _ in 0..ROUNDS {
        writer.insert(ROOM, "d", 0, &chunk).unwrap();
        writer.sync(ROOM, "d").await.unwrap();
        writer.delete(ROOM, "d", 0, CHUNK).unwrap();
        writer.sync(ROOM, "d").await.unwrap();
    }
    let last = ROUNDS * 2;
    let is_last = |m: &Value| m["type"] == "op" && m["version"] == last;
    let plain_frames = next_where(&mut plain, is_last).await;
    assert!(plain_frames.iter().all(|f| f.starts_with('{')), "a connection that did not ask never gets an array");
    let batched_frames = next_where(&mut batched, is_last).await;
    let arrays = batched_frames.iter().filter(|f| f.starts_with('[')).count();
    println!("{} messages; the batched connection got them in {} frames, {arrays} of them arrays", plain_frames.len(), batched_frames.len());
    assert_eq!(flatten(&batched_frames, &plain_frames), plain_frames);
    // Megabytes of ops against a socket that was not read: its writer was
    // held up, and what queued meanwhile went out together.
    assert!(arrays > 0, "the batched connection received arrays");
}
