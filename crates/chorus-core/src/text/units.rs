//! Conversions between the wire's unit (code points) and the UTF-16 code
//! units of browser editors, for SDKs and servers that meet both.
//!
//! A UTF-16 offset inside a surrogate pair names no position in the text; it
//! is refused rather than rounded, because rounding silently moves an edit.

use super::error::UnitError;

/// UTF-16 offset of code point `cp` in `text`.
pub fn utf16_from_code_point(text: &str, cp: usize) -> Result<usize, UnitError> {
    let mut units = 0;
    let mut chars = text.chars();
    for seen in 0..cp {
        match chars.next() {
            Some(c) => units += c.len_utf16(),
            None => return Err(UnitError::OutOfRange { offset: cp, len: seen }),
        }
    }
    Ok(units)
}

/// Code point offset of UTF-16 offset `u` in `text`.
pub fn code_point_from_utf16(text: &str, u: usize) -> Result<usize, UnitError> {
    let mut units = 0;
    let mut cps = 0;
    let mut chars = text.chars();
    while units < u {
        match chars.next() {
            Some(c) => {
                units += c.len_utf16();
                cps += 1;
            }
            None => return Err(UnitError::OutOfRange { offset: u, len: units }),
        }
    }
    if units != u {
        return Err(UnitError::SplitsSurrogatePair { offset: u });
    }
    Ok(cps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_astral_and_combining_text() {
        let text = "e\u{301}😭🏳️‍🌈\r\nz";
        let mut u = 0;
        for (cp, c) in text.chars().enumerate() {
            assert_eq!(utf16_from_code_point(text, cp), Ok(u));
            assert_eq!(code_point_from_utf16(text, u), Ok(cp));
            if c.len_utf16() == 2 {
                assert_eq!(
                    code_point_from_utf16(text, u + 1),
                    Err(UnitError::SplitsSurrogatePair { offset: u + 1 })
                );
            }
            u += c.len_utf16();
        }
        assert_eq!(utf16_from_code_point(text, text.chars().count()), Ok(u));
        assert!(matches!(utf16_from_code_point(text, 99), Err(UnitError::OutOfRange { .. })));
        assert!(matches!(code_point_from_utf16(text, 99), Err(UnitError::OutOfRange { .. })));
    }
}
