//! Reading only what routing needs: when a message body is an EventBridge event, the fields
//! some route names are read into a pruned event (objects keep only those fields, arrays
//! keep every element, pruned alike; strings borrow the body's text unless escaped) and
//! everything else is skipped unbuilt, in one pass over the bytes. A pattern reads nothing
//! else, so it matches the pruned event exactly when it matches the whole one (arrays and
//! absences included); a message that matches no route is then settled without the full
//! parse.
//!
//! The pass checks the whole body as strictly as `serde_json` does (structure, escapes,
//! surrogate pairs, control characters, numbers out of range), so a body it takes is one
//! `decode` takes too. Anything `decode` would not take as a plain EventBridge event
//! (another envelope, a field of the wrong type, too big, too deep, not JSON) is left to
//! `decode`: then nothing is decided here.

use std::borrow::Cow;

use super::doc::{Doc, Leaf, Num};

/// The field paths to keep, as a tree of keys: those that tell `decode` which shape a body
/// has and whether an EventBridge event is well formed ([`Paths::new`]), and the routes'.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Few in practice, so searched in order (a length check rejects most at once).
    children: Vec<(Box<str>, Paths)>,
    /// Keep the whole value here.
    whole: bool,
}

impl Paths {
    /// Keeps `path` (from the event's top), whole.
    pub fn add(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.whole = true,
            Some((key, rest)) => self.child_or_default(key).add(rest),
        }
    }

    fn child_or_default(&mut self, key: &str) -> &mut Paths {
        let at = match self.children.iter().position(|(k, _)| &**k == key) {
            Some(at) => at,
            None => {
                self.children.push((key.into(), Paths::empty()));
                self.children.len() - 1
            }
        };
        &mut self.children[at].1
    }

    fn empty() -> Paths {
        Paths {
            children: Vec::new(),
            whole: false,
        }
    }

    fn child(&self, key: &str) -> Option<&Paths> {
        self.children
            .iter()
            .find(|(k, _)| same_key(k, key))
            .map(|(_, p)| p)
    }
}

impl Default for Paths {
    fn default() -> Paths {
        Paths::new()
    }
}

/// Top-level keys that make a body another shape than a plain EventBridge event (S3's test
/// event and records, SNS envelopes): such a body is `decode`'s.
const OTHER_SHAPES: [&str; 3] = ["Event", "Records", "Type"];

impl Paths {
    /// The paths that tell `decode` which shape a body has and whether an EventBridge event
    /// is well formed; the routes' are added to them.
    pub fn new() -> Paths {
        let mut p = Paths::empty();
        for key in ["source", "detail-type", "id"]
            .into_iter()
            .chain(OTHER_SHAPES)
        {
            p.add(&[key.to_owned()]);
        }
        // `detail` must be an object: its type is kept even if no route looks inside.
        p.child_or_default("detail");
        p
    }
}

/// A pruned JSON value: what [`peek`] keeps of a body.
#[derive(Debug, Clone, PartialEq)]
pub enum Peeked<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Str(Cow<'a, str>),
    Array(Vec<Peeked<'a>>),
    /// The kept fields, each once (a repeated key keeps its last value, as `serde_json`).
    Object(Vec<(Cow<'a, str>, Peeked<'a>)>),
}

impl From<&Peeked<'_>> for serde_json::Value {
    /// The pruned event as `serde_json` would hold it (for showing and comparing).
    fn from(p: &Peeked<'_>) -> serde_json::Value {
        use serde_json::Value;
        match p {
            Peeked::Null => Value::Null,
            Peeked::Bool(b) => Value::Bool(*b),
            Peeked::Num(Num::Pos(u)) => (*u).into(),
            Peeked::Num(Num::Neg(i)) => (*i).into(),
            Peeked::Num(Num::Float(f)) => (*f).into(),
            Peeked::Str(s) => Value::String(s.to_string()),
            Peeked::Array(items) => items.iter().map(Value::from).collect(),
            Peeked::Object(fields) => fields
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(v)))
                .collect(),
        }
    }
}

impl Doc for Peeked<'_> {
    fn leaf(&self) -> Option<Leaf<'_>> {
        Some(match self {
            Peeked::Null => Leaf::Null,
            Peeked::Bool(b) => Leaf::Bool(*b),
            Peeked::Num(n) => Leaf::Num(*n),
            Peeked::Str(s) => Leaf::Str(s),
            Peeked::Array(_) | Peeked::Object(_) => return None,
        })
    }

    fn items(&self) -> Option<&[Self]> {
        match self {
            Peeked::Array(items) => Some(items),
            _ => None,
        }
    }

    fn field(&self, key: &str) -> Option<&Self> {
        match self {
            Peeked::Object(fields) => fields
                .iter()
                .find(|(k, _)| same_key(k, key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// The pruned event of `body`, keeping `keep` (made with [`Paths::new`]), when `decode`
/// would take it as one EventBridge event as it is; `None` when only `decode` can say.
pub fn peek<'a>(body: &'a str, keep: &Paths) -> Option<Peeked<'a>> {
    if body.len() > super::MAX_BODY_BYTES {
        return None;
    }
    let mut scan = Scanner {
        text: body,
        s: body.as_bytes(),
        i: 0,
        depth: 0,
    };
    scan.ws();
    let event = scan.build(keep).ok()?;
    scan.ws();
    if scan.i != scan.s.len() {
        return None;
    }
    // Other shapes (PutEvents entries are an array) are `decode`'s.
    let Peeked::Object(_) = event else {
        return None;
    };
    if OTHER_SHAPES.iter().any(|k| event.field(k).is_some()) {
        return None;
    }
    let (source, detail_type) = (event.field("source"), event.field("detail-type"));
    if source.is_none() && detail_type.is_none() {
        return None;
    }
    // What `decode` checks of an EventBridge event; a failure is its to report.
    let is_str = |v: Option<&Peeked>| matches!(v, Some(Peeked::Str(_)));
    let well_formed = is_str(source)
        && is_str(detail_type)
        && event
            .field("detail")
            .is_none_or(|d| matches!(d, Peeked::Object(_)))
        && event
            .field("id")
            .is_none_or(|id| matches!(id, Peeked::Str(s) if !s.is_empty()));
    well_formed.then_some(event)
}

/// Why the scan stopped: the body is not JSON as `serde_json` takes it, or is too deep to
/// judge here. Either way `decode` decides.
struct Refused;

type Scanned<T> = Result<T, Refused>;

/// How deep arrays and objects may nest here; `serde_json` refuses a little deeper (128).
const MAX_DEPTH: u32 = 100;

struct Scanner<'a> {
    text: &'a str,
    s: &'a [u8],
    i: usize,
    depth: u32,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn byte(&self) -> Scanned<u8> {
        self.s.get(self.i).copied().ok_or(Refused)
    }

    fn expect(&mut self, b: u8) -> Scanned<()> {
        if self.byte()? != b {
            return Err(Refused);
        }
        self.i += 1;
        Ok(())
    }

    fn nest(&mut self) -> Scanned<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Refused);
        }
        self.i += 1;
        Ok(())
    }

    /// The value here, keeping what `keep` names.
    fn build(&mut self, keep: &Paths) -> Scanned<Peeked<'a>> {
        Ok(match self.byte()? {
            b'{' => {
                let mut fields: Vec<(Cow<'a, str>, Peeked<'a>)> =
                    Vec::with_capacity(if keep.whole { 4 } else { keep.children.len() });
                self.members(b'}', |scan| {
                    let key = scan.key()?;
                    let below = if keep.whole {
                        Some(keep)
                    } else {
                        keep.child(&key)
                    };
                    let Some(below) = below else {
                        return scan.skip();
                    };
                    let value = scan.build(below)?;
                    match fields.iter_mut().find(|(k, _)| same_key(k, &key)) {
                        Some(field) => field.1 = value,
                        None => fields.push((key, value)),
                    }
                    Ok(())
                })?;
                Peeked::Object(fields)
            }
            b'[' => {
                let mut items = Vec::new();
                self.members(b']', |scan| {
                    items.push(scan.build(keep)?);
                    Ok(())
                })?;
                Peeked::Array(items)
            }
            b'"' => {
                self.i += 1;
                Peeked::Str(self.string()?)
            }
            b'-' | b'0'..=b'9' => Peeked::Num(self.number(true)?.ok_or(Refused)?),
            _ => self.literal()?,
        })
    }

    /// Past the value here, checking it.
    fn skip(&mut self) -> Scanned<()> {
        match self.byte()? {
            b'{' => self.members(b'}', |scan| {
                scan.expect(b'"')?;
                scan.skip_string()?;
                scan.colon()?;
                scan.skip()
            }),
            b'[' => self.members(b']', Scanner::skip),
            b'"' => {
                self.i += 1;
                self.skip_string()
            }
            b'-' | b'0'..=b'9' => self.number(false).map(drop),
            _ => self.literal().map(drop),
        }
    }

    /// The members of the array or object opening here, each read by `member`, through its
    /// `close`.
    fn members(
        &mut self,
        close: u8,
        mut member: impl FnMut(&mut Self) -> Scanned<()>,
    ) -> Scanned<()> {
        self.nest()?;
        self.ws();
        if self.byte()? == close {
            self.i += 1;
        } else {
            loop {
                member(self)?;
                if self.after_member(close)? {
                    break;
                }
                self.ws();
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// An object member's key, unescaped, and the colon after it.
    fn key(&mut self) -> Scanned<Cow<'a, str>> {
        self.expect(b'"')?;
        let key = self.string()?;
        self.colon()?;
        Ok(key)
    }

    fn colon(&mut self) -> Scanned<()> {
        self.ws();
        self.expect(b':')?;
        self.ws();
        Ok(())
    }

    /// After a member of an array or object: `true` at its `close`, `false` after a comma.
    fn after_member(&mut self, close: u8) -> Scanned<bool> {
        self.ws();
        let b = self.byte()?;
        self.i += 1;
        if b == close {
            Ok(true)
        } else if b == b',' {
            Ok(false)
        } else {
            Err(Refused)
        }
    }

    fn literal(&mut self) -> Scanned<Peeked<'a>> {
        let rest = &self.s[self.i..];
        let (value, len) = if rest.starts_with(b"true") {
            (Peeked::Bool(true), 4)
        } else if rest.starts_with(b"false") {
            (Peeked::Bool(false), 5)
        } else if rest.starts_with(b"null") {
            (Peeked::Null, 4)
        } else {
            return Err(Refused);
        };
        self.i += len;
        Ok(value)
    }

    /// A number as JSON spells it; its value (as `serde_json` holds it) when `value`.
    /// Refused when out of `f64`'s range, as `serde_json` refuses it.
    fn number(&mut self, value: bool) -> Scanned<Option<Num>> {
        let start = self.i;
        let negative = self.s[self.i] == b'-';
        if negative {
            self.i += 1;
        }
        let digits = self.i;
        let mut magnitude: u64 = 0;
        let mut overflow = false;
        match self.byte()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while let Some(&d @ b'0'..=b'9') = self.s.get(self.i) {
                    match magnitude
                        .checked_mul(10)
                        .and_then(|m| m.checked_add(u64::from(d - b'0')))
                    {
                        Some(m) => magnitude = m,
                        None => overflow = true,
                    }
                    self.i += 1;
                }
            }
            _ => return Err(Refused),
        }
        let integer_digits = self.i - digits;
        let mut float = false;
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            self.digits()?;
            float = true;
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            self.digits()?;
            exponent = true;
        }
        if !(float || exponent || overflow) {
            // serde_json's integers: -0 and negatives below i64's range are floats.
            return Ok(value.then(|| {
                if !negative {
                    Num::Pos(magnitude)
                } else {
                    let n = (magnitude as i64).wrapping_neg();
                    if n < 0 {
                        Num::Neg(n)
                    } else {
                        Num::Float(-(magnitude as f64))
                    }
                }
            }));
        }
        // Only an exponent or a long integer part can leave f64's range.
        if value || exponent || integer_digits > 300 {
            let text = self.text(start, self.i)?;
            let f: f64 = text.parse().map_err(|_| Refused)?;
            if !f.is_finite() {
                return Err(Refused);
            }
            return Ok(Some(Num::Float(f)));
        }
        Ok(None)
    }

    fn digits(&mut self) -> Scanned<()> {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.s.get(self.i) {
            self.i += 1;
        }
        if self.i == start {
            return Err(Refused);
        }
        Ok(())
    }

    /// The string whose opening quote was just read, unescaped; borrowed when it has no
    /// escapes.
    fn string(&mut self) -> Scanned<Cow<'a, str>> {
        let start = self.i;
        let at = special(self.s, self.i);
        match self.s.get(at) {
            Some(b'"') => {
                self.i = at + 1;
                Ok(Cow::Borrowed(self.text(start, at)?))
            }
            Some(b'\\') => {
                let mut out = self.text(start, at)?.to_owned();
                self.i = at;
                loop {
                    match self.byte()? {
                        b'"' => {
                            self.i += 1;
                            return Ok(Cow::Owned(out));
                        }
                        b'\\' => {
                            self.i += 1;
                            out.push(self.escape()?);
                        }
                        _ => {
                            let to = special(self.s, self.i);
                            if !matches!(self.s.get(to), Some(b'"' | b'\\')) {
                                return Err(Refused);
                            }
                            out.push_str(self.text(self.i, to)?);
                            self.i = to;
                        }
                    }
                }
            }
            // A control character, or the end.
            _ => Err(Refused),
        }
    }

    fn skip_string(&mut self) -> Scanned<()> {
        loop {
            let at = special(self.s, self.i);
            match self.s.get(at) {
                Some(b'"') => {
                    self.i = at + 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i = at + 1;
                    self.escape()?;
                }
                _ => return Err(Refused),
            }
        }
    }

    fn text(&self, from: usize, to: usize) -> Scanned<&'a str> {
        // `from` and `to` are next to ASCII bytes (quotes, backslashes), so on characters'
        // boundaries: a slice of the body's text, not checked again.
        self.text.get(from..to).ok_or(Refused)
    }

    /// The character of the escape whose backslash was just read; a `\u` surrogate must
    /// be half of a pair, as `serde_json` requires of a string.
    fn escape(&mut self) -> Scanned<char> {
        let b = self.byte()?;
        self.i += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                match first {
                    0xD800..=0xDBFF => {
                        if !self.s[self.i..].starts_with(b"\\u") {
                            return Err(Refused);
                        }
                        self.i += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(Refused);
                        }
                        let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        char::from_u32(c).ok_or(Refused)?
                    }
                    0xDC00..=0xDFFF => return Err(Refused),
                    c => char::from_u32(c).ok_or(Refused)?,
                }
            }
            _ => return Err(Refused),
        })
    }

    fn hex4(&mut self) -> Scanned<u32> {
        let digits = self.s.get(self.i..self.i + 4).ok_or(Refused)?;
        let mut n = 0;
        for &d in digits {
            n = n * 16 + (d as char).to_digit(16).ok_or(Refused)?;
        }
        self.i += 4;
        Ok(n)
    }
}

/// Whether two keys are equal: keys are short and most differ in length or first byte,
/// which are compared before the bytes.
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.as_bytes().first() == b.as_bytes().first() && a == b
}

/// The index of the first byte at or after `i` that ends a plain run of string text: a
/// quote, a backslash or a control character (`s.len()` if none). Short runs eight bytes at
/// a time; past 32 bytes (a long text, an embedded document) `memchr`'s vector search for
/// the quote or backslash, then a vectorised check of the run for control characters.
fn special(s: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes where `w`'s byte is zero have their high bit set; the lowest such is exact.
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let start = i;
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let hits = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
        if i - start >= 32 {
            return special_long(s, i);
        }
    }
    while let Some(&b) = s.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

fn special_long(s: &[u8], i: usize) -> usize {
    let end = memchr::memchr2(b'"', b'\\', &s[i..]).map_or(s.len(), |at| i + at);
    let run = &s[i..end];
    // Whole blocks folded without branching (vectorised); the block with a control
    // character, if any, searched byte by byte.
    let mut at = 0;
    for block in run.chunks(64) {
        if block.iter().fold(0u8, |any, &b| any | u8::from(b < 0x20)) != 0 {
            return i + at + block.iter().position(|&b| b < 0x20).expect("found");
        }
        at += block.len();
    }
    end
}
