//! Several server messages in one text frame, for connections whose `hello`
//! said `batch`. Under load the writer takes a handful of queued messages at
//! a time; a client that reads them as one JSON array parses and dispatches
//! one frame instead of several, and its WebSocket layer's per-frame cost
//! (header, buffer, UTF-8 check, event) is paid once. The joining is pure so
//! its rules (order, the size bound) are tested without a socket.

use axum::extract::ws::Utf8Bytes;

/// The largest array frame the writer builds. A client's receive buffer is
/// not asked to grow much for a batch; a single message over this is sent
/// alone, as before.
pub(super) const MAX_ARRAY_FRAME: usize = 64 * 1024;

/// How many messages from the front of `messages` share the next frame:
/// at least one (a lone message goes unwrapped, whatever its size), and as
/// many more as keep the array `[m1,m2,...]` within `max_frame` bytes.
pub(super) fn run_len(messages: &[Utf8Bytes], max_frame: usize) -> usize {
    let Some(first) = messages.first() else { return 0 };
    // Brackets plus the first message; each next one adds a comma.
    let mut size = first.len() + 2;
    if size > max_frame {
        return 1;
    }
    let mut n = 1;
    for next in &messages[1..] {
        size += next.len() + 1;
        if size > max_frame {
            break;
        }
        n += 1;
    }
    n
}

/// The frame for a run of messages: the message itself when it is alone,
/// otherwise a JSON array of them in order, each byte for byte as it would
/// have been sent on its own (every message is one JSON value).
pub(super) fn join(run: &[Utf8Bytes]) -> Utf8Bytes {
    match run {
        [one] => one.clone(),
        _ => {
            let len = run.iter().map(|m| m.len() + 1).sum::<usize>() + 1;
            let mut frame = String::with_capacity(len);
            frame.push('[');
            for (i, m) in run.iter().enumerate() {
                if i > 0 {
                    frame.push(',');
                }
                frame.push_str(m.as_str());
            }
            frame.push(']');
            Utf8Bytes::from(frame)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(texts: &[&str]) -> Vec<Utf8Bytes> {
        texts.iter().map(|t| Utf8Bytes::from(t.to_string())).collect()
    }

    /// Splits a batch the way the writer does.
    fn frames(messages: &[Utf8Bytes], max: usize) -> Vec<String> {
        let mut rest = messages;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (run, tail) = rest.split_at(run_len(rest, max));
            out.push(join(run).as_str().to_owned());
            rest = tail;
        }
        out
    }

    #[test]
    fn messages_keep_their_order_and_bytes() {
        let m = msgs(&[r#"{"type":"op","version":1}"#, r#"{"type":"ack","version":2}"#, r#"{"type":"op","text":"😭 ,]"}"#]);
        let framed = frames(&m, MAX_ARRAY_FRAME);
        assert_eq!(framed, vec![r#"[{"type":"op","version":1},{"type":"ack","version":2},{"type":"op","text":"😭 ,]"}]"#.to_string()]);
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&framed[0]).unwrap();
        let alone: Vec<serde_json::Value> = m.iter().map(|t| serde_json::from_str(t.as_str()).unwrap()).collect();
        assert_eq!(parsed, alone);
    }

    #[test]
    fn a_single_message_is_sent_unchanged() {
        let m = msgs(&[r#"{"type":"welcome"}"#]);
        assert_eq!(frames(&m, MAX_ARRAY_FRAME), vec![r#"{"type":"welcome"}"#.to_string()]);
        assert_eq!(run_len(&[], MAX_ARRAY_FRAME), 0);
    }

    #[test]
    fn an_array_stays_within_the_bound() {
        // Each message is 10 bytes: "[" + 3 * 10 + 2 commas + "]" = 34.
        let m = msgs(&["{\"a\":\"12\"}"; 7]);
        assert_eq!(run_len(&m, 34), 3);
        assert_eq!(run_len(&m, 33), 2);
        let framed = frames(&m, 34);
        assert_eq!(framed.len(), 3);
        assert_eq!(framed.iter().map(|f| f.len()).collect::<Vec<_>>(), vec![34, 34, 10]);
        assert!(framed.iter().all(|f| f.len() <= 34));
        assert_eq!(framed[2], "{\"a\":\"12\"}", "the last one, alone, is not wrapped");
    }

    #[test]
    fn a_message_over_the_bound_goes_alone() {
        let big = format!("{{\"t\":\"{}\"}}", "x".repeat(100));
        let m = msgs(&["{\"a\":1}", &big, "{\"b\":2}", "{\"c\":3}"]);
        let framed = frames(&m, 64);
        assert_eq!(framed, vec!["{\"a\":1}".to_string(), big.clone(), "[{\"b\":2},{\"c\":3}]".to_string()]);
        // At the front of a batch too.
        assert_eq!(run_len(&m[1..], 64), 1);
    }
}
