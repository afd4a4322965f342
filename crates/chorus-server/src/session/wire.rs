//! The socket's side of a session: the writer that drains the outbox into
//! the WebSocket, refusals (an error, then a close code) and the clean end
//! of a connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chorus_protocol::{close, ErrorCode, ServerMessage};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tracing::debug;

use crate::node::Node;
use crate::outbox::Outbox;

use super::array_frame::{join, run_len, MAX_ARRAY_FRAME};

/// Sends an error, then closes with `code`.
pub(super) fn refuse(outbox: &Outbox, error: ErrorCode, code: u16, message: String) {
    metrics::counter!("chorus_errors_total", "code" => error.as_str()).increment(1);
    outbox.push(ServerMessage::error(None, None, error, message.clone()).to_json().into());
    outbox.close(code, truncate_reason(message));
}

/// Tells the client why a frame could not be read, with the documented
/// error and close code. The WebSocket layer enforces the hard frame size
/// cap, UTF-8 and the framing rules (reserved bits, masking, opcodes).
pub(super) fn refuse_read_error(outbox: &Outbox, error: &str, limit: usize, conn: &str) {
    if error.contains("too long") || error.contains("Space limit") {
        refuse(outbox, ErrorCode::MessageTooLarge, close::MESSAGE_TOO_BIG, format!("message far over the {limit}-byte limit"));
    } else if error.contains("UTF-8") {
        refuse(outbox, ErrorCode::BadMessage, 1007, "text frame is not valid UTF-8".into());
    } else if error.contains("protocol error") {
        refuse(outbox, ErrorCode::BadMessage, 1002, format!("not a valid WebSocket frame: {error}"));
    } else {
        debug!(%conn, "read error: {error}");
    }
}

/// Close reasons must fit in a control frame (123 bytes).
fn truncate_reason(mut s: String) -> String {
    if s.len() > 120 {
        let mut cut = 120;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// Ends a connection cleanly: lets the writer deliver the last words and
/// the close frame, then reads (and drops) whatever the client still sends
/// until it closes too. Dropping a socket with unread input makes the kernel
/// reset it, and the client would lose the close code telling it why.
pub(super) async fn finish(writer: tokio::task::JoinHandle<()>, stream: &mut SplitStream<WebSocket>, node: &Node) {
    let grace = Duration::from_millis(node.config.shutdown_grace_ms.min(2_000));
    if !writer.is_finished() {
        let abort = writer.abort_handle();
        if tokio::time::timeout(grace, writer).await.is_err() {
            // A peer that stopped reading: the socket goes with the task.
            abort.abort();
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(frame)) = stream.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    metrics::gauge!("chorus_connections").decrement(1.0);
}

/// The most messages a writer's batch vector keeps room for between batches.
const KEPT_BATCH_CAPACITY: usize = 256;

/// Writes the outbox's messages until it closes. When `batching` is set (the
/// client's `hello` asked for it), the messages of one batch go out as few
/// array frames as [`MAX_ARRAY_FRAME`] allows.
pub(super) async fn write_loop(mut sink: SplitSink<WebSocket, Message>, outbox: Arc<Outbox>, batching: Arc<AtomicBool>) {
    // Looked up once: a batch is written for every op a reader receives.
    let frames_written = metrics::counter!("chorus_frames_written_total");
    let messages_written = metrics::counter!("chorus_messages_written_total");
    let mut messages = Vec::new();
    // Bytes of the batch before, flushed to the socket: taken off the
    // outbox's count in the same lock hold that takes the next batch (one
    // lock per batch, not two; a stuck send or flush keeps them counted).
    let mut handed = 0;
    loop {
        let closing = outbox.next_batch_after(handed, &mut messages).await;
        let batching = batching.load(Ordering::Relaxed);
        handed = 0;
        let mut frames = 0;
        let mut rest = &messages[..];
        while !rest.is_empty() {
            let (run, tail) = rest.split_at(if batching { run_len(rest, MAX_ARRAY_FRAME) } else { 1 });
            rest = tail;
            if sink.feed(Message::Text(join(run))).await.is_err() {
                return;
            }
            // The outbox counts its messages' bytes, not the frame's.
            handed += run.iter().map(|m| m.len()).sum::<usize>();
            frames += 1;
        }
        frames_written.increment(frames);
        messages_written.increment(messages.len() as u64);
        messages.clear();
        // A burst's vector is not kept for the connection's life.
        if messages.capacity() > KEPT_BATCH_CAPACITY {
            messages = Vec::new();
        }
        if let Some(closing) = closing {
            let frame = CloseFrame { code: closing.code, reason: Utf8Bytes::from(closing.reason) };
            let _ = sink.send(Message::Close(Some(frame))).await;
            let _ = sink.close().await;
            return;
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

