//! RFC 8785 JSON Canonicalization Scheme.
//!
//! JCS gives every JSON value exactly one byte representation, so a value can be
//! hashed or signed and later re-serialized by any conforming implementation
//! without changing the digest.
//!
//! # Numbers
//!
//! JCS models every JSON number as an IEEE 754 double, serialized the way
//! ECMAScript's `Number.prototype.toString` does. Integers that `serde_json`
//! holds as `i64`/`u64` are therefore converted to the nearest `f64` first: an
//! integer with magnitude above 2^53 may be rounded (for example
//! `9007199254740993` canonicalizes as `9007199254740992`, and `u64::MAX` as
//! `18446744073709552000`). Callers that need exact large integers must carry
//! them as strings.
//!
//! The result is only as exact as the `f64` that `serde_json` parsed; this crate
//! does not enable `serde_json`'s `arbitrary_precision`, so every number in a
//! [`serde_json::Value`] is already an `i64`, `u64` or finite `f64`.

use serde_json::{Map, Number, Value};

/// Errors canonicalizing JSON.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CanonicalError {
    /// The value contains NaN or an infinity, which JSON (and so JCS) cannot express.
    #[error("JSON number is not finite and has no canonical form")]
    NonFiniteNumber,
    /// A number could not be represented as an IEEE 754 double at all.
    #[error("JSON number {0} cannot be represented as an IEEE 754 double")]
    UnrepresentableNumber(String),
}

/// Append the RFC 8785 canonical form of `value` to `out`.
///
/// On error `out` may hold a partial prefix of the output; callers that reuse
/// the buffer should truncate it.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(number_as_f64(n)?, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out)?,
    }
    Ok(())
}

/// The RFC 8785 canonical bytes of `value`.
pub fn to_canonical_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

/// Canonical form as a String (always valid UTF-8).
pub fn to_canonical_string(value: &Value) -> Result<String, CanonicalError> {
    let bytes = to_canonical_vec(value)?;
    // Every byte written is either ASCII or copied whole from a `str`, so this
    // cannot fail; going through the checked conversion keeps the crate free of
    // `unsafe` at a cost that is negligible next to the serialization itself.
    Ok(String::from_utf8(bytes).expect("canonical JSON is always valid UTF-8"))
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    // `serde_json`'s map iterates in UTF-8 byte (= code point) order, which
    // differs from the UTF-16 code-unit order RFC 8785 §3.2.3 requires once
    // keys mix supplementary-plane characters with U+E000..U+FFFF. Keys are
    // unique, so an unstable sort is deterministic.
    members.sort_unstable_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push(b'{');
    for (i, (key, member)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        write_canonical(member, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0a => b'n',
            0x0c => b'f',
            0x0d => b'r',
            0x00..=0x1f => 0,
            // Everything else, including DEL, non-ASCII and U+2028/U+2029, is
            // emitted literally (RFC 8785 §3.2.2.2).
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        if short == 0 {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        } else {
            out.push(b'\\');
            out.push(short);
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn number_as_f64(n: &Number) -> Result<f64, CanonicalError> {
    // Without `arbitrary_precision` this is always `Some`: i64/u64 convert with
    // round-to-nearest-even, exactly as ECMAScript would read the literal.
    n.as_f64()
        .ok_or_else(|| CanonicalError::UnrepresentableNumber(n.to_string()))
}

/// Serialize `x` as ECMAScript `Number.prototype.toString` (ES2015 §7.1.12.1) does.
fn write_number(x: f64, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    if !x.is_finite() {
        return Err(CanonicalError::NonFiniteNumber);
    }
    // Covers -0 as well, which ECMAScript prints as "0".
    if x == 0.0 {
        out.push(b'0');
        return Ok(());
    }
    if x < 0.0 {
        out.push(b'-');
    }
    let (digits, exp) = shortest_digits(x.abs());
    let k = i32::try_from(digits.len()).expect("at most 17 significant digits");
    // ECMAScript's n: the value is 0.d1d2...dk × 10^n.
    let n = exp + 1;

    if k <= n && n <= 21 {
        out.extend_from_slice(&digits);
        out.extend(std::iter::repeat_n(b'0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-n) as usize));
        out.extend_from_slice(&digits);
    } else {
        out.push(digits[0]);
        if k > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if n - 1 < 0 { b'-' } else { b'+' });
        out.extend_from_slice((n - 1).unsigned_abs().to_string().as_bytes());
    }
    Ok(())
}

/// ECMAScript's `s` and exponent for finite positive `x`: the fewest decimal
/// digits that round-trip, closest to `x`, ties to even (ES2015 §7.1.12.1 note 2
/// and RFC 8785 §3.2.2.3). Returns the digits and the power of ten of the first.
fn shortest_digits(x: f64) -> (Vec<u8>, i32) {
    // Rust's `{:e}` yields the shortest round-tripping digits closest to `x`,
    // but when two candidates are exactly equidistant it rounds the tie up
    // (0x43143ff3c1cb0959 = 1424953923781206.25 gives ...206.3, ECMAScript
    // wants ...206.2), so ties are detected and redirected to the even one.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci
        .split_once('e')
        .expect("`{:e}` output always contains an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is a decimal integer");
    let mut digits: Vec<u8> = mantissa.bytes().filter(|&b| b != b'.').collect();

    let s: u64 = mantissa
        .replace('.', "")
        .parse()
        .expect("at most 17 digits");
    let last_exp = exp - (digits.len() as i32 - 1);
    if let Some(alt) = even_tie_partner(x, s, last_exp) {
        let alt_digits = alt.to_string().into_bytes();
        let round_trips = format!("{alt}e{last_exp}").parse::<f64>() == Ok(x);
        // A partner with a different digit count would change `k`, and a
        // shorter one would contradict `{:e}` having been the shortest.
        if alt_digits.len() == digits.len() && round_trips {
            digits = alt_digits;
        }
    }
    (digits, exp)
}

/// If `s` is odd and `x` lies exactly halfway between `s`·10^`e` and a
/// neighbour (`s`±1)·10^`e`, that (even) neighbour.
fn even_tie_partner(x: f64, s: u64, e: i32) -> Option<u64> {
    if s & 1 == 0 {
        return None;
    }
    // x = m·2^q with m odd. Halfway means 2x = t·10^e for odd t = 2s±1, i.e.
    // m·2^(q+1) = t·5^e·2^e; with m and t odd that needs q + 1 = e and
    // m = t·5^e (e ≥ 0) or m·5^(-e) = t (e < 0). All exact in u128, or no tie.
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mut m, mut q) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    let zeros = m.trailing_zeros();
    m >>= zeros;
    q += zeros as i32;
    if q + 1 != e {
        return None;
    }
    let five_pow = 5_u128.checked_pow(e.unsigned_abs())?;
    let m = u128::from(m);
    let t = if e >= 0 {
        if m % five_pow != 0 {
            return None;
        }
        m / five_pow
    } else {
        m.checked_mul(five_pow)?
    };
    let s = u128::from(s);
    let partner = if t == 2 * s + 1 {
        s + 1
    } else if t + 1 == 2 * s {
        s - 1
    } else {
        return None;
    };
    u64::try_from(partner).ok()
}

/// The largest integer every JSON reader holds exactly as an IEEE 754 double (2^53).
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// How deep [`canonical_members`] follows nested arrays and objects before giving up.
const MAX_CHECKED_DEPTH: usize = 64;

/// The top-level members of `text` — raw key bytes (between the quotes, escapes as written)
/// and raw value text — if `text` is an object already in the RFC 8785 canonical form,
/// byte for byte: `to_canonical_vec` of its parsed value would give back `text` itself.
///
/// Checked in one pass without building the value, so a reader of canonical text (the
/// offline verifier) can hash the bytes it has. Conservative: `None` also for canonical
/// text it does not prove canonical — numbers other than integers of magnitude ≤ 2^53, and
/// nesting deeper than 64 — and the caller then parses and re-serializes.
pub fn canonical_members(text: &str) -> Option<Vec<(&[u8], &[u8])>> {
    let b = text.as_bytes();
    let mut scan = Scan { b, i: 0 };
    let mut members = Vec::with_capacity(24);
    if scan.next()? != b'{' {
        return None;
    }
    if scan.peek()? == b'}' {
        scan.i += 1;
    } else {
        let mut previous: Option<&[u8]> = None;
        loop {
            let key = scan.string()?;
            if let Some(p) = previous
                && !key_order_ok(p, key)?
            {
                return None;
            }
            previous = Some(key);
            if scan.next()? != b':' {
                return None;
            }
            let start = scan.i;
            scan.value(1)?;
            members.push((key, &b[start..scan.i]));
            match scan.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
    }
    (scan.i == b.len()).then_some(members)
}

/// Whether `text` is a JSON value already in canonical form (see [`canonical_members`]:
/// the same rules, the same conservatism).
pub fn is_canonical(text: &str) -> bool {
    let mut scan = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    scan.value(0).is_some() && scan.i == text.len()
}

/// Keys in strictly increasing UTF-16 code-unit order (strictly: no key twice).
fn key_order_ok(previous: &[u8], key: &[u8]) -> Option<bool> {
    // Without escapes the raw bytes are the key's UTF-8. UTF-8 byte order is code point
    // order, which is UTF-16 order unless a supplementary-plane character meets one in
    // U+E000..U+FFFF: decode when either key has an escape or a lead byte of 4.
    let plain = |k: &[u8]| k.iter().all(|&c| c != b'\\' && c < 0xf0);
    if plain(previous) && plain(key) {
        return Some(previous < key);
    }
    let (a, b) = (unescape(previous)?, unescape(key)?);
    Some(a.encode_utf16().lt(b.encode_utf16()))
}

/// The text of a canonical string's raw bytes (escapes as [`Scan::string`] allows them).
fn unescape(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let c = match raw[i + 1] {
            b'"' => b'"',
            b'\\' => b'\\',
            b'b' => 0x08,
            b't' => 0x09,
            b'n' => 0x0a,
            b'f' => 0x0c,
            b'r' => 0x0d,
            b'u' => {
                let hex = std::str::from_utf8(&raw[i + 4..i + 6]).ok()?;
                i += 4;
                u8::from_str_radix(hex, 16).ok()?
            }
            _ => return None,
        };
        out.push(c);
        i += 2;
    }
    String::from_utf8(out).ok()
}

/// A cursor over text being checked for canonical form. Every method returns `None` as
/// soon as the text is not canonical (or not provably so).
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_CHECKED_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.integer(),
            b'[' => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.i += 1;
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                let mut previous: Option<&[u8]> = None;
                loop {
                    let key = self.string()?;
                    if let Some(p) = previous
                        && !key_order_ok(p, key)?
                    {
                        return None;
                    }
                    previous = Some(key);
                    if self.next()? != b':' {
                        return None;
                    }
                    self.value(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }

    /// `0`, or an optional `-` and digits without a leading zero, of magnitude ≤ 2^53:
    /// exactly how JCS writes such an integer.
    fn integer(&mut self) -> Option<()> {
        let negative = self.peek()? == b'-';
        if negative {
            self.i += 1;
        }
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) || digits.is_empty() || digits.len() > 16
        {
            return None;
        }
        if digits[0] == b'0' {
            // `0` alone; never `-0` (JCS writes 0) or a leading zero.
            return (digits.len() == 1 && !negative).then_some(());
        }
        let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        (n <= MAX_EXACT_INTEGER).then_some(())
    }

    /// A string as JCS writes it; returns its raw bytes between the quotes.
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.next()? != b'"' {
            return None;
        }
        let start = self.i;
        loop {
            // Skip the bytes JCS writes as they are (the bulk of any string) in one sweep.
            let rest = self.b.get(self.i..)?;
            self.i += rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            match self.next()? {
                b'"' => return Some(&self.b[start..self.i - 1]),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => {}
                    b'u' => {
                        // Only a control character without a short form, in lower-case hex.
                        let hex = self.b.get(self.i..self.i + 4)?;
                        self.i += 4;
                        let value = match hex {
                            [b'0', b'0', h, l] if h.is_ascii_digit() => {
                                let low = match l {
                                    b'0'..=b'9' => l - b'0',
                                    b'a'..=b'f' => l - b'a' + 10,
                                    _ => return None,
                                };
                                (h - b'0') * 16 + low
                            }
                            _ => return None,
                        };
                        if value >= 0x20 || matches!(value, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                            return None;
                        }
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn num(x: f64) -> String {
        let mut out = Vec::new();
        write_number(x, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn es6_number_formatting() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (4.5, "4.5"),
            (0.002, "0.002"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (-1e21, "-1e+21"),
            (1e30, "1e+30"),
            (1.5e300, "1.5e+300"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (-1.5e-7, "-1.5e-7"),
            (1e-27, "1e-27"),
            (0.000001, "0.000001"),
            (0.0000012345, "0.0000012345"),
            (123456789012345680000.0, "123456789012345680000"),
            (5e-324, "5e-324"),
            (-5e-324, "-5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::MIN, "-1.7976931348623157e+308"),
            (333333333.3333333, "333333333.3333333"),
            (9007199254740992.0, "9007199254740992"),
            (9007199254740994.0, "9007199254740994"),
            (0.1, "0.1"),
            (0.30000000000000004, "0.30000000000000004"),
            (295147905179352830000.0, "295147905179352830000"),
            // Values from the RFC 8785 §B / es6testfile samples.
            (f64::from_bits(0x444b_1ae4_d6e2_ef50), "1e+21"),
            (
                f64::from_bits(0x444b_1ae4_d6e2_ef4f),
                "999999999999999900000",
            ),
            (f64::from_bits(0x3eb0_c6f7_a0b5_ed8d), "0.000001"),
            (
                f64::from_bits(0x3eb0_c6f7_a0b5_ed8c),
                "9.999999999999997e-7",
            ),
            (f64::from_bits(0x4340_0000_0000_0001), "9007199254740994"),
            (f64::from_bits(0x4340_0000_0000_0002), "9007199254740996"),
            (
                f64::from_bits(0x000f_ffff_ffff_ffff),
                "2.225073858507201e-308",
            ),
            (
                f64::from_bits(0x0010_0000_0000_0000),
                "2.2250738585072014e-308",
            ),
            (
                f64::from_bits(0x4430_0000_0000_0000),
                "295147905179352830000",
            ),
            (
                f64::from_bits(0x44b5_2d02_c7e1_4af5),
                "9.999999999999997e+22",
            ),
            (f64::from_bits(0x44b5_2d02_c7e1_4af6), "1e+23"),
            (
                f64::from_bits(0x44b5_2d02_c7e1_4af7),
                "1.0000000000000001e+23",
            ),
            (f64::from_bits(0x41b3_de43_5555_5555), "333333333.3333333"),
            (f64::from_bits(0x41b3_de43_5555_5556), "333333333.3333334"),
            (
                f64::from_bits(0xbecb_f647_612f_3696),
                "-0.0000033333333333333333",
            ),
            (f64::from_bits(0x4314_3ff3_c1cb_0959), "1424953923781206.2"),
        ];
        for &(x, want) in cases {
            assert_eq!(
                num(x),
                want,
                "formatting {x:?} (bits {:#018x})",
                x.to_bits()
            );
        }
    }

    #[test]
    fn non_finite_numbers_are_rejected() {
        for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                write_number(x, &mut Vec::new()),
                Err(CanonicalError::NonFiniteNumber)
            );
        }
    }

    #[test]
    fn integers_take_double_semantics() {
        let cases = [
            (json!(0), "0"),
            (json!(-7), "-7"),
            (json!(9007199254740993_u64), "9007199254740992"),
            (json!(u64::MAX), "18446744073709552000"),
            (json!(i64::MIN), "-9223372036854776000"),
            (json!(1_000_000_000_000_000_000_u64), "1000000000000000000"),
        ];
        for (v, want) in cases {
            assert_eq!(to_canonical_string(&v).unwrap(), want);
        }
    }

    #[test]
    fn string_escapes() {
        let v = json!("\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f} \"\\/\u{7f}\u{80}é\u{2028}\u{2029}😂");
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \\\"\\\\/\u{7f}\u{80}é\u{2028}\u{2029}😂\""
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+FB33 sorts after U+1F602 in UTF-8/code-point order but before it in
        // UTF-16, where the emoji is the surrogate pair D83D DE02.
        let v = json!({"\u{fb33}": 1, "\u{1f602}": 2, "a": 3, "": 4, "A": 5, "aa": 6});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            "{\"\":4,\"A\":5,\"a\":3,\"aa\":6,\"\u{1f602}\":2,\"\u{fb33}\":1}"
        );
    }

    #[test]
    fn nested_structures_have_no_whitespace() {
        let v = json!({"b": [1, {"z": null, "y": [true, false]}, []], "a": {}});
        assert_eq!(
            to_canonical_string(&v).unwrap(),
            r#"{"a":{},"b":[1,{"y":[true,false],"z":null},[]]}"#
        );
    }

    #[test]
    fn write_canonical_appends() {
        let mut out = b"prefix:".to_vec();
        write_canonical(&json!([1]), &mut out).unwrap();
        assert_eq!(out, b"prefix:[1]");
    }
}
