//! Arbitrary bytes as (document, op JSON): decoding, checking, applying,
//! transforming, composing and moving positions must never panic or hang,
//! and a refused op must leave the document untouched.
#![no_main]

use chorus_core::text::{Author, Side, TextDoc, TextOp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line is the document, the rest the op, as a client would send it.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let doc_text = String::from_utf8_lossy(&data[..split]);
    let Some(json) = data.get(split + 1..) else { return };
    let Ok(op) = serde_json::from_slice::<TextOp>(json) else { return };

    let mut doc = TextDoc::from(doc_text.as_ref());
    let before = doc.clone();
    match doc.apply(&op) {
        Ok(()) => {
            let len = before.len_chars() as isize + op.len_delta();
            assert_eq!(doc.len_chars() as isize, len);
            if let Ok(full) = before.make_invertible(&op) {
                let mut undo = doc.clone();
                undo.apply(&full.invert().expect("made invertible")).expect("inverse applies");
                assert_eq!(undo, before);
            }
        }
        Err(_) => assert_eq!(doc, before),
    }
    // Garbage in may give garbage out here, but never a panic or a hang.
    let normal = op.clone().normalize();
    let _ = op.transform(&normal, Side::Left);
    let _ = normal.transform(&op, Side::Right);
    let _ = op.compose(&normal);
    let _ = op.transform_position(before.len_chars() / 2, Author::Own);
});
