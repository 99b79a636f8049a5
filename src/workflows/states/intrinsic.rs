//! The intrinsic functions (`"field.$": "States.Format('{}-{}', $.a, $.b)"`): parsed when the
//! definition loads (an unknown function, a bad argument list, more than ten nested calls are
//! refused there), evaluated against the state's input and the context object.
//!
//! `States.UUID` and `States.MathRandom` draw from the [`Draw`] the caller gives: the engine
//! gives one seeded by the instance and the transition, so that a state repeated after a crash
//! computes the same values it journaled (a random draw must not change on replay).

use base64::Engine as _;
use serde_json::{Value, json};

use super::path::Path;

/// The most calls one field may nest (Step Functions' limit).
pub const MAX_NESTING: usize = 10;

/// An argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Literal(Value),
    Path(Path),
    Call(Call),
}

/// A parsed intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub function: Function,
    pub args: Vec<Arg>,
}

macro_rules! functions {
    ($($variant:ident = $name:literal ($min:expr, $max:expr)),* $(,)?) => {
        /// The functions, with how many arguments each takes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Function { $($variant),* }

        impl Function {
            pub const ALL: &'static [Function] = &[$(Function::$variant),*];
            pub fn name(self) -> &'static str {
                match self { $(Function::$variant => $name),* }
            }
            fn arity(self) -> (usize, usize) {
                match self { $(Function::$variant => ($min, $max)),* }
            }
        }
    };
}

functions! {
    Format = "States.Format" (1, usize::MAX),
    StringToJson = "States.StringToJson" (1, 1),
    JsonToString = "States.JsonToString" (1, 1),
    Array = "States.Array" (0, usize::MAX),
    ArrayPartition = "States.ArrayPartition" (2, 2),
    ArrayContains = "States.ArrayContains" (2, 2),
    ArrayRange = "States.ArrayRange" (3, 3),
    ArrayGetItem = "States.ArrayGetItem" (2, 2),
    ArrayLength = "States.ArrayLength" (1, 1),
    ArrayUnique = "States.ArrayUnique" (1, 1),
    Base64Encode = "States.Base64Encode" (1, 1),
    Base64Decode = "States.Base64Decode" (1, 1),
    Hash = "States.Hash" (2, 2),
    JsonMerge = "States.JsonMerge" (3, 3),
    MathRandom = "States.MathRandom" (2, 3),
    MathAdd = "States.MathAdd" (2, 2),
    StringSplit = "States.StringSplit" (2, 2),
    Uuid = "States.UUID" (0, 0),
}

/// Random numbers for `States.UUID` and `States.MathRandom`.
pub type Draw<'a> = &'a mut dyn FnMut() -> u64;

/// Whether a `.$` field's text is an intrinsic call (rather than a path).
pub fn is_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

impl Call {
    /// Parses one call, the whole of `text`.
    pub fn parse(text: &str) -> Result<Call, String> {
        let mut p = Parser { text, at: 0, depth: 0 };
        let call = p.call().map_err(|e| format!("{text:?}: {e}"))?;
        p.space();
        if p.at != text.len() {
            return Err(format!("{text:?}: unexpected {:?} after the call", &text[p.at..]));
        }
        Ok(call)
    }

    /// Evaluates the call; an error is the message of a `States.IntrinsicFailure` (or of a
    /// `States.Runtime` for a path that names nothing, said in the message).
    pub fn eval(&self, input: &Value, context: &Value, draw: Draw<'_>) -> Result<Value, String> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(match a {
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => p
                    .select(input, context)
                    .ok_or_else(|| format!("{}: the path {} names nothing in the input", self.function.name(), p.text))?,
                Arg::Call(c) => c.eval(input, context, draw)?,
            });
        }
        apply(self.function, &args, draw).map_err(|e| format!("{}: {e}", self.function.name()))
    }
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    fn space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.at = self.text.len() - trimmed.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.space();
        if self.rest().starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn call(&mut self) -> Result<Call, String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("more than {MAX_NESTING} nested intrinsic functions"));
        }
        self.space();
        let name_len = self.rest().find(|c: char| !(c.is_ascii_alphanumeric() || c == '.')).unwrap_or(self.rest().len());
        let name = &self.rest()[..name_len];
        let function = Function::ALL
            .iter()
            .copied()
            .find(|f| f.name() == name)
            .ok_or_else(|| format!("{name:?} is not an intrinsic function"))?;
        self.at += name_len;
        if !self.eat('(') {
            return Err(format!("{name} must be followed by '('"));
        }
        let mut args = Vec::new();
        if !self.eat(')') {
            loop {
                args.push(self.arg()?);
                if self.eat(')') {
                    break;
                }
                if !self.eat(',') {
                    return Err(format!("expected ',' or ')' in {name}'s arguments at {:?}", self.rest()));
                }
            }
        }
        let (min, max) = function.arity();
        if args.len() < min || args.len() > max {
            let want = match (min, max) {
                (a, b) if a == b => format!("{a}"),
                (a, usize::MAX) => format!("at least {a}"),
                (a, b) => format!("{a} to {b}"),
            };
            return Err(format!("{name} takes {want} argument(s), not {}", args.len()));
        }
        // A literal template's placeholders must match the arguments, known already.
        if function == Function::Format
            && let Some(Arg::Literal(Value::String(template))) = args.first()
        {
            let holes = placeholders(template);
            if holes != args.len() - 1 {
                return Err(format!("States.Format's template has {holes} {{}} for {} argument(s)", args.len() - 1));
            }
        }
        self.depth -= 1;
        Ok(Call { function, args })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.space();
        let rest = self.rest();
        if rest.starts_with('\'') {
            return self.string().map(|s| Arg::Literal(Value::String(s)));
        }
        if rest.starts_with("States.") {
            return self.call().map(Arg::Call);
        }
        let end = self.token_end();
        let token = &rest[..end];
        if token.starts_with('$') {
            self.at += end;
            return Path::parse(token).map(Arg::Path);
        }
        let value = match token {
            "true" => json!(true),
            "false" => json!(false),
            "null" => Value::Null,
            t => match serde_json::from_str::<serde_json::Number>(t) {
                Ok(n) => Value::Number(n),
                Err(_) => return Err(format!("{t:?} is not an argument (a 'string', a number, true, false, null, a path or a call)")),
            },
        };
        self.at += end;
        Ok(Arg::Literal(value))
    }

    /// Where an unquoted argument ends: at the `,` or `)` outside brackets and quotes.
    fn token_end(&self) -> usize {
        let mut depth = 0i32;
        let mut quote = None;
        for (i, c) in self.rest().char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[') => depth += 1,
                (None, ']') => depth -= 1,
                (None, ',' | ')') if depth == 0 => return i,
                _ => {}
            }
        }
        self.rest().len()
    }

    /// A `'…'` literal: `\'`, `\\`, `\{` and `\}` are escapes (the braces stay escaped for
    /// `States.Format`, which reads them).
    fn string(&mut self) -> Result<String, String> {
        let body = &self.rest()[1..];
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, '\'')) => out.push('\''),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, b @ ('{' | '}'))) => {
                        out.push('\\');
                        out.push(b);
                    }
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                '\'' => {
                    self.at += 1 + i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err("an unclosed string".into())
    }
}

/// The `{}` of a `States.Format` template that are not escaped (`\{`).
fn placeholders(template: &str) -> usize {
    let mut n = 0;
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                n += 1;
            }
            _ => {}
        }
    }
    n
}

fn int(v: &Value, what: &str) -> Result<i64, String> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64))
        .ok_or_else(|| format!("{what} must be an integer, got {v}"))
}

fn text<'a>(v: &'a Value, what: &str) -> Result<&'a str, String> {
    v.as_str().ok_or_else(|| format!("{what} must be a string, got {v}"))
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("{what} must be an array, got {v}"))
}

/// Strings of at most this many characters may be encoded or hashed (Step Functions' limit).
const MAX_ENCODED: usize = 10_000;

fn apply(f: Function, args: &[Value], draw: Draw<'_>) -> Result<Value, String> {
    Ok(match f {
        Function::Format => {
            let template = text(&args[0], "the template")?;
            let mut out = String::new();
            let mut next = 1;
            let mut chars = template.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if matches!(chars.peek(), Some('{' | '}' | '\\' | '\'')) => out.push(chars.next().unwrap_or_default()),
                    '{' if chars.peek() == Some(&'}') => {
                        chars.next();
                        let v = args.get(next).ok_or("more {} in the template than arguments")?;
                        // Step Functions interpolates strings, numbers, booleans and null;
                        // an array or object is an error (as aws-local-stepfunctions has it).
                        match v {
                            Value::String(s) => out.push_str(s),
                            Value::Array(_) | Value::Object(_) => {
                                return Err(format!("argument {} is {v}: States.Format interpolates strings, numbers, booleans and null", next + 1));
                            }
                            other => out.push_str(&other.to_string()),
                        }
                        next += 1;
                    }
                    c => out.push(c),
                }
            }
            if next != args.len() {
                return Err(format!("{} argument(s) for {} {{}} in the template", args.len() - 1, next - 1));
            }
            Value::String(out)
        }
        Function::StringToJson => serde_json::from_str(text(&args[0], "the argument")?).map_err(|e| format!("not JSON: {e}"))?,
        Function::JsonToString => Value::String(args[0].to_string()),
        Function::Array => Value::Array(args.to_vec()),
        Function::ArrayPartition => {
            let a = array(&args[0], "the first argument")?;
            let size = int(&args[1], "the chunk size")?;
            if size < 1 {
                return Err(format!("the chunk size must be positive, got {size}"));
            }
            Value::Array(a.chunks(size as usize).map(|c| Value::Array(c.to_vec())).collect())
        }
        Function::ArrayContains => Value::Bool(array(&args[0], "the first argument")?.contains(&args[1])),
        Function::ArrayRange => {
            let (start, end, step) = (int(&args[0], "start")?, int(&args[1], "end")?, int(&args[2], "step")?);
            if step == 0 {
                return Err("the step must not be 0".into());
            }
            let mut out = Vec::new();
            let mut i = start;
            while (step > 0 && i <= end) || (step < 0 && i >= end) {
                if out.len() == 1000 {
                    return Err("more than 1000 items".into());
                }
                out.push(json!(i));
                i += step;
            }
            Value::Array(out)
        }
        Function::ArrayGetItem => {
            let a = array(&args[0], "the first argument")?;
            let i = int(&args[1], "the index")?;
            usize::try_from(i).ok().and_then(|i| a.get(i)).cloned().ok_or_else(|| format!("index {i} is outside the array of {}", a.len()))?
        }
        Function::ArrayLength => json!(array(&args[0], "the argument")?.len()),
        Function::ArrayUnique => {
            let mut out: Vec<Value> = Vec::new();
            for v in array(&args[0], "the argument")? {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Value::Array(out)
        }
        Function::Base64Encode => {
            let s = text(&args[0], "the argument")?;
            if s.chars().count() > MAX_ENCODED {
                return Err(format!("more than {MAX_ENCODED} characters"));
            }
            Value::String(base64::engine::general_purpose::STANDARD.encode(s))
        }
        Function::Base64Decode => {
            let s = text(&args[0], "the argument")?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(s).map_err(|e| format!("not base64: {e}"))?;
            Value::String(String::from_utf8(bytes).map_err(|_| "the decoded bytes are not UTF-8 text".to_string())?)
        }
        Function::Hash => {
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if data.chars().count() > MAX_ENCODED {
                return Err(format!("more than {MAX_ENCODED} characters"));
            }
            Value::String(hash(text(&args[1], "the algorithm")?, data.as_bytes())?)
        }
        Function::JsonMerge => {
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return Err("both arguments must be objects".into());
            };
            if args[2] != Value::Bool(false) {
                return Err("only a shallow merge (false) is supported, as in Step Functions".into());
            }
            let mut merged = a.clone();
            for (k, v) in b {
                merged.insert(k.clone(), v.clone());
            }
            Value::Object(merged)
        }
        Function::MathRandom => {
            let (start, end) = (int(&args[0], "start")?, int(&args[1], "end")?);
            if end <= start {
                return Err(format!("end ({end}) must be greater than start ({start})"));
            }
            // A seed argument is accepted; the draw is the instance's own either way.
            let span = (end - start) as u64;
            json!(start + (draw() % span) as i64)
        }
        Function::MathAdd => {
            let (a, b) = (int(&args[0], "the first argument")?, int(&args[1], "the second argument")?);
            json!(a.checked_add(b).ok_or("the sum overflows")?)
        }
        Function::StringSplit => {
            let s = text(&args[0], "the first argument")?;
            let splitters: Vec<char> = text(&args[1], "the splitter")?.chars().collect();
            Value::Array(s.split(|c| splitters.contains(&c)).filter(|p| !p.is_empty()).map(|p| json!(p)).collect())
        }
        Function::Uuid => {
            let (hi, lo) = (draw(), draw());
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&hi.to_be_bytes());
            b[8..].copy_from_slice(&lo.to_be_bytes());
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            Value::String(uuid::Uuid::from_bytes(b).hyphenated().to_string())
        }
    })
}

fn hash(algorithm: &str, data: &[u8]) -> Result<String, String> {
    use sha2::Digest;
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok(match algorithm {
        "MD5" => hex(&md5::Md5::digest(data)),
        "SHA-1" => hex(&sha1::Sha1::digest(data)),
        "SHA-256" => hex(&sha2::Sha256::digest(data)),
        "SHA-384" => hex(&sha2::Sha384::digest(data)),
        "SHA-512" => hex(&sha2::Sha512::digest(data)),
        other => return Err(format!("{other:?} is not an algorithm: MD5, SHA-1, SHA-256, SHA-384 or SHA-512")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(call: &str, input: Value) -> Result<Value, String> {
        let mut n = 0u64;
        let mut draw = move || {
            n += 1;
            n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        };
        Call::parse(call)?.eval(&input, &json!({}), &mut draw)
    }

    #[test]
    fn calls_parse_with_nesting_literals_and_paths_and_bad_ones_say_why() {
        let c = Call::parse("States.Format('{} is {}', $.a['b c'], States.ArrayLength($.l))").unwrap();
        assert_eq!(c.function, Function::Format);
        assert_eq!(c.args.len(), 3);
        assert!(matches!(&c.args[2], Arg::Call(Call { function: Function::ArrayLength, .. })));
        for (bad, says) in [
            ("States.Nope(1)", "not an intrinsic function"),
            ("States.ArrayLength", "followed by '('"),
            ("States.ArrayLength($.a, $.b)", "takes 1 argument"),
            ("States.UUID(1)", "takes 0 argument"),
            ("States.Array(1 2)", "not an argument"),
            ("States.Array('x)", "unclosed string"),
            ("States.Array(1) trailing", "after the call"),
            ("States.Array(a)", "not an argument"),
            ("States.Format('{} and {}', $.a)", "has 2 {} for 1 argument"),
            ("States.Format('\\{}', $.a)", "has 0 {} for 1 argument"),
        ] {
            let e = Call::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let deep = format!("{}1{}", "States.Array(".repeat(11), ")".repeat(11));
        assert!(Call::parse(&deep).unwrap_err().contains("more than 10 nested"));
        let ten = format!("{}1{}", "States.Array(".repeat(10), ")".repeat(10));
        assert!(Call::parse(&ten).is_ok());
    }

    #[test]
    fn runtime_failures_name_the_function() {
        for (call, input, says) in [
            ("States.Format($.t, $.a)", json!({"a": 1, "t": "{} {}"}), "more {} in the template than arguments"),
            ("States.Format($.t, $.a, $.a)", json!({"a": 1, "t": "{}"}), "2 argument(s) for 1"),
            ("States.Format('{} {}', $.a, $.l)", json!({"a": 1, "l": [true]}), "argument 3 is [true]: States.Format interpolates"),
            ("States.ArrayGetItem($.l, 5)", json!({"l": [1]}), "outside the array"),
            ("States.ArrayPartition($.l, 0)", json!({"l": [1]}), "must be positive"),
            ("States.ArrayRange(1, 5000, 1)", json!({}), "more than 1000"),
            ("States.StringToJson($.s)", json!({"s": "{"}), "not JSON"),
            ("States.Hash($.s, 'CRC32')", json!({"s": "x"}), "not an algorithm"),
            ("States.JsonMerge($.a, $.a, true)", json!({"a": {}}), "shallow"),
            ("States.MathAdd($.s, 1)", json!({"s": "x"}), "must be an integer"),
            ("States.ArrayLength($.missing)", json!({}), "names nothing"),
            ("States.Base64Decode($.s)", json!({"s": "***"}), "not base64"),
        ] {
            let e = eval(call, input).unwrap_err();
            assert!(e.contains(says), "{call}: {e}");
        }
    }

    #[test]
    fn random_draws_come_from_the_callers_draw() {
        let uuid = eval("States.UUID()", json!({})).unwrap();
        let u = uuid::Uuid::parse_str(uuid.as_str().unwrap()).unwrap();
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(eval("States.UUID()", json!({})).unwrap(), uuid, "the same draws, the same UUID");
        let r = eval("States.MathRandom(10, 20)", json!({})).unwrap().as_i64().unwrap();
        assert!((10..20).contains(&r), "{r}");
    }
}
