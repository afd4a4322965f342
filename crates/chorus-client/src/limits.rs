//! What a submission may weigh, and cutting an op down to it.
//!
//! The server refuses an op over `max_op_bytes` (`op_too_large`: the text it
//! carries in UTF-8 plus 8 bytes per component) and closes the connection on
//! a frame over `max_message_bytes`. A client that sent a large edit whole
//! would be refused, or cut off and, resending it after reconnecting, cut
//! off again and again. So a document hands the server only ops that fit the
//! limits it announced in `welcome`: a larger edit (a paste, or a lot of
//! typing while offline) is cut into pieces that each fit, sent one after the
//! other, and the text arrives whole.

use chorus_core::text::{Component, Delete, TextOp};
use chorus_protocol::{ClientMessage, Limits};

/// Bytes of a submit frame kept free besides its envelope and op.
const FRAME_SLACK: usize = 64;

/// The room for one op of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The server's op size: inserted (and deleted) text in UTF-8, plus 8 per component.
    pub op_bytes: usize,
    /// The op's JSON inside a submit frame.
    pub json_bytes: usize,
}

impl Budget {
    /// The budget for ops of document `doc` in `room` under `limits`.
    pub fn new(limits: &Limits, room: &str, doc: &str) -> Self {
        // The frame without its op, with the largest numbers it can carry.
        let envelope = ClientMessage::Submit {
            id: Some(u64::MAX),
            room: room.into(),
            doc: doc.into(),
            seq: u64::MAX,
            base: u64::MAX,
            op: serde_json::json!([]),
        };
        let envelope = serde_json::to_string(&envelope).expect("client messages serialize").len();
        Budget { op_bytes: limits.max_op_bytes, json_bytes: limits.max_message_bytes.saturating_sub(envelope + FRAME_SLACK) }
    }

    /// Whether `op` fits as it is.
    pub fn fits(&self, op: &TextOp) -> bool {
        let (op_bytes, json_bytes) = op.components().iter().map(cost).fold((0, 2), |(o, j), (a, b)| (o + a, j + b));
        op_bytes <= self.op_bytes && json_bytes <= self.json_bytes
    }
}

/// A component's weight: (server op bytes, JSON bytes with its comma).
fn cost(c: &Component) -> (usize, usize) {
    match c {
        Component::Retain(n) => (8, digits(*n) + 1),
        Component::Insert(s) => (8 + s.len(), json_string_bytes(s) + 3),
        Component::Delete(Delete::Len(n)) => (8, digits(*n) + 7),
        Component::Delete(Delete::Text(s)) => (8 + s.len(), json_string_bytes(s) + 9),
    }
}

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Bytes of one character inside a JSON string as serde_json writes it.
fn json_char_bytes(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn json_string_bytes(s: &str) -> usize {
    s.chars().map(json_char_bytes).sum()
}

/// Cuts `op` into a first part that fits `budget` and the rest, such that
/// applying the first and then the rest is applying `op`. The rest is `None`
/// when the whole op fits. Returns `None` when not even one code point fits
/// (no progress is possible).
pub fn split(op: &TextOp, budget: &Budget) -> Option<(TextOp, Option<TextOp>)> {
    let components = op.components();
    let (mut op_bytes, mut json_bytes) = (0usize, 2usize);
    // Code points of the document after the first part that it spans.
    let mut produced = 0usize;
    let mut first: Vec<Component> = Vec::new();
    for (i, c) in components.iter().enumerate() {
        let (o, j) = cost(c);
        if op_bytes + o <= budget.op_bytes && json_bytes + j <= budget.json_bytes {
            op_bytes += o;
            json_bytes += j;
            produced += match c {
                Component::Retain(n) => *n,
                Component::Insert(s) => s.chars().count(),
                Component::Delete(_) => 0,
            };
            first.push(c.clone());
            continue;
        }
        // The component does not fit whole: a long insert is cut at a code
        // point boundary, anything else starts the rest.
        let mut rest: Vec<Component> = components[i..].to_vec();
        if let Component::Insert(s) = c {
            let (mut o, mut j) = (op_bytes + 8, json_bytes + 3);
            let mut cut = 0;
            let mut count = 0;
            for ch in s.chars() {
                let (a, b) = (ch.len_utf8(), json_char_bytes(ch));
                if o + a > budget.op_bytes || j + b > budget.json_bytes {
                    break;
                }
                o += a;
                j += b;
                cut += ch.len_utf8();
                count += 1;
            }
            if cut > 0 {
                first.push(Component::Insert(s[..cut].to_owned()));
                produced += count;
                rest[0] = Component::Insert(s[cut..].to_owned());
            }
        }
        let first = TextOp::from_iter(first);
        if first.is_noop() {
            return None;
        }
        let rest = TextOp::from_iter(std::iter::once(Component::Retain(produced)).chain(rest));
        return Some((first, Some(rest)));
    }
    Some((op.clone(), None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chorus_core::text::apply_to_str;

    fn op(json: serde_json::Value) -> TextOp {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_large_insert_is_cut_into_pieces_that_fit_and_add_up_to_it() {
        let text = "naïve café 😀 \"quoted\"\n".repeat(40);
        let whole = op(serde_json::json!([3, text, {"d": 2}, "tail"]));
        let budget = Budget { op_bytes: 100, json_bytes: 120 };
        let mut pieces = Vec::new();
        let mut rest = Some(whole.clone());
        while let Some(r) = rest {
            let (first, more) = split(&r, &budget).expect("progress");
            assert!(budget.fits(&first), "{first:?}");
            pieces.push(first);
            rest = more;
        }
        assert!(pieces.len() > 10, "{} pieces", pieces.len());
        let base = "abcdef";
        let expected = apply_to_str(base, &whole).unwrap();
        let got = pieces.iter().fold(base.to_owned(), |t, p| apply_to_str(&t, p).unwrap());
        assert_eq!(got, expected);
    }

    #[test]
    fn an_op_that_fits_is_left_whole_and_nothing_that_cannot_fit_is_made_up() {
        let small = op(serde_json::json!([1, "x"]));
        assert_eq!(split(&small, &Budget { op_bytes: 100, json_bytes: 100 }), Some((small.clone(), None)));
        assert_eq!(split(&op(serde_json::json!(["😀"])), &Budget { op_bytes: 10, json_bytes: 100 }), None);
    }

    #[test]
    fn the_budget_leaves_room_for_the_frame() {
        let limits = Limits {
            max_message_bytes: 65_536,
            messages_per_second: 100,
            rooms_per_connection: 50,
            members_per_room: 1000,
            cursor_updates_per_second: 30,
            max_op_bytes: 32_768,
            max_document_bytes: 1 << 23,
            documents_per_connection: 50,
            max_value_bytes: 65_536,
            values_per_room: 100,
        };
        let b = Budget::new(&limits, "team-42/plan", "body");
        assert_eq!(b.op_bytes, 32_768);
        assert!(b.json_bytes < 65_536 - 100 && b.json_bytes > 65_000, "{b:?}");
    }
}
