//! Redis glob patterns over key bytes, for `SCAN ... MATCH`, `KEYS` and `GET /scan?match=`.
//!
//! The syntax is Redis's (`stringmatchlen` in its `util.c`), byte for byte: `*` any run of bytes,
//! `?` one byte, `[abc]` one of a set, `[^a]` anything but, `[a-z]` a range (either way round),
//! and `\` to take the next byte literally, inside a set too. An unclosed `[` runs to the end of
//! the pattern, as in Redis. Matching is case-sensitive.
//!
//! Every token but `*` matches exactly one byte, so the pattern is compiled once into tokens and
//! matched with the classic two-pointer walk that goes back only to the last `*`: time is at
//! most the product of the two lengths, so a pattern like `*a*a*a*…b` cannot make a node spin
//! (Redis needed a nesting guard for its recursive matcher).

/// The longest pattern taken, in characters (a byte that is not UTF-8 counts as one): matching
/// costs up to the key's length times the pattern's, so a pattern of megabytes could keep a node
/// busy for a long time on each key.
pub const MAX_PATTERN_CHARS: usize = 1024;

/// Whether `pattern` is within [`MAX_PATTERN_CHARS`].
pub fn pattern_fits(pattern: &[u8]) -> bool {
    pattern.len() <= MAX_PATTERN_CHARS || String::from_utf8_lossy(pattern).chars().count() <= MAX_PATTERN_CHARS
}

/// One compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// Any run of bytes, the empty one included.
    Star,
    /// Any one byte.
    Any,
    Byte(u8),
    /// One byte in (or, negated, not in) any of the inclusive ranges.
    Set {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
}

impl Token {
    fn matches(&self, b: u8) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Byte(x) => *x == b,
            Token::Set { negated, ranges } => ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated,
        }
    }
}

impl Glob {
    pub fn new(pattern: &[u8]) -> Glob {
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            let token = match pattern[i] {
                b'*' => {
                    if tokens.last() == Some(&Token::Star) {
                        i += 1;
                        continue;
                    }
                    Token::Star
                }
                b'?' => Token::Any,
                b'[' => {
                    let (set, next) = set(pattern, i + 1);
                    i = next;
                    tokens.push(set);
                    continue;
                }
                b'\\' if i + 1 < pattern.len() => {
                    i += 1;
                    Token::Byte(pattern[i])
                }
                b => Token::Byte(b),
            };
            tokens.push(token);
            i += 1;
        }
        Glob { tokens }
    }

    /// Whether the pattern matches everything (`*`), so a scan can skip matching.
    pub fn is_everything(&self) -> bool {
        self.tokens == [Token::Star]
    }

    pub fn matches(&self, s: &[u8]) -> bool {
        self.matches_counting(s, &mut 0)
    }

    /// [`matches`](Self::matches), adding the steps it took to `steps`: up to the key's length
    /// times the pattern's, which a caller matching many keys bounds (see `scan.rs`).
    pub fn matches_counting(&self, s: &[u8], steps: &mut u64) -> bool {
        let (mut p, mut i) = (0, 0);
        // The last `*` seen and where in `s` it began to match: what to go back to on a mismatch.
        let mut star: Option<(usize, usize)> = None;
        while i < s.len() {
            *steps += 1;
            match self.tokens.get(p) {
                Some(Token::Star) => {
                    star = Some((p, i));
                    p += 1;
                }
                Some(t) if t.matches(s[i]) => {
                    p += 1;
                    i += 1;
                }
                _ => match star {
                    // Let the last `*` take one more byte and try again from there.
                    Some((sp, si)) => {
                        star = Some((sp, si + 1));
                        p = sp + 1;
                        i = si + 1;
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|t| *t == Token::Star)
    }
}

/// The set that starts at `pattern[i]` (just after its `[`): the token, and where the pattern
/// goes on after its `]` (or at its end, for a set never closed).
fn set(pattern: &[u8], mut i: usize) -> (Token, usize) {
    let negated = pattern.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => {
                ranges.push((pattern[i + 1], pattern[i + 1]));
                i += 2;
            }
            b']' => return (Token::Set { negated, ranges }, i + 1),
            a if i + 2 < pattern.len() && pattern[i + 1] == b'-' => {
                let b = pattern[i + 2];
                ranges.push((a.min(b), a.max(b)));
                i += 3;
            }
            a => {
                ranges.push((a, a));
                i += 1;
            }
        }
    }
    (Token::Set { negated, ranges }, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, s: &str) -> bool {
        Glob::new(pattern.as_bytes()).matches(s.as_bytes())
    }

    #[test]
    fn stars_and_question_marks() {
        assert!(m("*", "anything") && m("*", "x"));
        assert!(m("user:*", "user:1") && m("user:*", "user:") && !m("user:*", "use"));
        assert!(m("*:1", "user:1") && !m("*:1", "user:12"));
        assert!(m("a*b*c", "aXXbYYc") && m("a*b*c", "abc") && !m("a*b*c", "acb"));
        assert!(m("h?llo", "hello") && m("h?llo", "hallo") && !m("h?llo", "hllo"));
        assert!(m("a**b", "ab") && m("a*", "a") && !m("a?", "a"));
        assert!(m("exact", "exact") && !m("exact", "exactly") && !m("exactly", "exact"));
    }

    #[test]
    fn sets_ranges_negation_and_escapes() {
        assert!(m("h[ae]llo", "hello") && m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
        assert!(m("[z-a]", "m"), "a reversed range, as Redis takes it");
        assert!(m("k[0-9][0-9]", "k42") && !m("k[0-9][0-9]", "k4x"));
        assert!(m(r"a\*b", "a*b") && !m(r"a\*b", "axb"));
        assert!(m(r"a\?", "a?") && !m(r"a\?", "ab"));
        assert!(m(r"[\]]", "]") && m(r"[\-a]", "-"));
        assert!(m(r"a\", r"a\"), "a trailing backslash is itself");
        assert!(m("[abc", "b") && !m("[abc", "d"), "an unclosed set runs to the end");
        assert!(!m("[]", "a") && m("[^]", "a"), "an empty set matches nothing");
    }

    #[test]
    fn bytes_that_are_not_utf8() {
        let g = Glob::new(b"\xff*");
        assert!(g.matches(b"\xff\x00\xfe") && !g.matches(b"\xfe"));
        assert!(Glob::new(b"[\x80-\xff]").matches(b"\x90"));
    }

    #[test]
    fn patterns_are_bounded_in_characters() {
        assert!(pattern_fits(&[b'a'; MAX_PATTERN_CHARS]));
        assert!(!pattern_fits(&[b'a'; MAX_PATTERN_CHARS + 1]));
        assert!(pattern_fits("é".repeat(MAX_PATTERN_CHARS).as_bytes()), "characters, not bytes");
        assert!(!pattern_fits(&[0xff; MAX_PATTERN_CHARS + 1]), "a stray byte counts as one");
    }

    #[test]
    fn a_pathological_pattern_is_fast() {
        let pattern = format!("{}b", "*a".repeat(30));
        let s = "a".repeat(5000);
        let started = std::time::Instant::now();
        assert!(!m(&pattern, &s));
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
        assert!(
            Glob::new(b"*").is_everything() && Glob::new(b"**").is_everything() && !Glob::new(b"a*").is_everything()
        );
    }
}
