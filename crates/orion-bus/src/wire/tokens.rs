//! A forgiving tokenizer of JSON text, which also knows Python's bare
//! words: it finds the numbers of valid JSON and Python's quirks in
//! invalid JSON.

/// What a lexical token of a JSON text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token {
    /// A string, quotes included.
    String,
    /// A number (`-`, digits, `.`, exponent).
    Number,
    /// A bare word: `true`, `false`, `null`, or Python's `NaN`,
    /// `Infinity`, `-Infinity`.
    Word,
    /// Anything else, one byte: `{`, `:`, garbage.
    Other,
}

/// A forgiving tokenizer of JSON text: it never fails, and knows Python's
/// bare words, so it can find numbers in valid JSON and the quirks of
/// Python's `json` in invalid JSON.
#[derive(Debug)]
pub(super) struct Tokens<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Tokens<'a> {
    pub(super) fn new(text: &'a [u8]) -> Self {
        Self { text, at: 0 }
    }
}

impl<'a> Iterator for Tokens<'a> {
    type Item = (Token, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.text;
        let mut i = self.at;
        while t
            .get(i)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            i += 1;
        }
        let start = i;
        let first = *t.get(i)?;
        let alphabetic = |i: usize| t.get(i).is_some_and(u8::is_ascii_alphabetic);
        let kind = match first {
            b'"' => {
                i += 1;
                while let Some(&b) = t.get(i) {
                    i += if b == b'\\' { 2 } else { 1 };
                    if b == b'"' {
                        break;
                    }
                }
                Token::String
            }
            b'-' if alphabetic(i + 1) => {
                i += 1;
                while alphabetic(i) {
                    i += 1;
                }
                Token::Word
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while t
                    .get(i)
                    .is_some_and(|b| matches!(b, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    i += 1;
                }
                Token::Number
            }
            b if b.is_ascii_alphabetic() => {
                while alphabetic(i) {
                    i += 1;
                }
                Token::Word
            }
            _ => {
                i += 1;
                Token::Other
            }
        };
        let end = i.min(t.len());
        self.at = end;
        Some((kind, &t[start..end]))
    }
}
