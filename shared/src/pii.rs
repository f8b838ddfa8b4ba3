//! Personal data in a single value: what the validator looks for in every column, and `apply` in
//! declared categories. Each kind is recognised by its shape and, where it has one, its check
//! digits, so that ordinary values are rarely taken for personal data:
//! - e-mail addresses (`local@domain.tld`);
//! - phone numbers: a leading `+` and 8 to 15 digits, or 10 to 15 digits in three groups or more
//!   of at least two, split by spaces, dashes or parentheses (or a trunk `0` and the number); a
//!   bare run of digits is a number, one dot makes a decimal, and dots split a phone number only
//!   as 3-3-4;
//! - IBANs, by their ISO 13616 mod-97 check;
//! - payment card numbers: 13 to 19 digits starting with 2 to 6, by the Luhn check;
//! - IPv4 and IPv6 addresses;
//! - national ids, by the patterns a spec names (`validation.personal_data.national_ids`).
//!
//! A value is classed whole, once trimmed: free text that mentions an address in passing is not.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The kinds every detector knows, by the names reports use; a detector's national ids follow.
pub const BUILT_IN: [&str; 5] = ["email", "phone", "iban", "payment_card", "ip_address"];

const EMAIL: usize = 0;
const PHONE: usize = 1;
const IBAN: usize = 2;
const CARD: usize = 3;
const IP: usize = 4;

/// Classes values as personal data of a kind, numbered as [`Detector::name`] names them. The
/// default one knows the built-in kinds alone.
#[derive(Debug, Clone, Default)]
pub struct Detector {
    national_ids: Vec<(String, regex::Regex)>,
}

impl Detector {
    /// A detector of the built-in kinds and of `national_ids` (a name and a pattern a whole value
    /// matches); a pattern that does not compile is named.
    pub fn new(national_ids: &BTreeMap<String, String>) -> Result<Self, String> {
        let national_ids = national_ids
            .iter()
            .map(|(name, pattern)| {
                let re = crate::spec::full_match(pattern).map_err(|e| format!("national id `{name}`: {e}"))?;
                Ok((name.clone(), re))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { national_ids })
    }

    /// How many kinds this detector tells apart.
    pub fn kinds(&self) -> usize {
        BUILT_IN.len() + self.national_ids.len()
    }

    /// The name of kind `kind`: a built-in one, or `national_id:<name>`.
    pub fn name(&self, kind: usize) -> String {
        match BUILT_IN.get(kind) {
            Some(name) => (*name).to_owned(),
            None => format!("national_id:{}", self.national_ids[kind - BUILT_IN.len()].0),
        }
    }

    /// The kind of personal data `value` is, if any. A spec's own patterns come first: they are
    /// the more specific (a national id may also have a phone number's shape).
    pub fn classify(&self, value: &str) -> Option<usize> {
        let v = value.trim();
        self.national_id(v).or_else(|| built_in(v))
    }

    fn national_id(&self, v: &str) -> Option<usize> {
        if self.national_ids.is_empty() || v.is_empty() {
            return None;
        }
        self.national_ids.iter().position(|(_, re)| re.is_match(v)).map(|i| BUILT_IN.len() + i)
    }

    /// The kind of personal data an integer is, if any: only a payment card number can be one
    /// (a phone number is never a bare number here), and a national id written as digits.
    pub fn classify_integer(&self, v: i128) -> Option<usize> {
        // Most integers are too short for a card number: not even formatted.
        if self.national_ids.is_empty() && !(1_000_000_000_000..10_000_000_000_000_000_000).contains(&v) {
            return None;
        }
        let digits = v.unsigned_abs().to_string();
        self.national_id(&digits).or_else(|| (v >= 0 && is_card(digits.as_bytes(), digits.len())).then_some(CARD))
    }
}

/// The shortest `MLOPS_PII_KEY` accepted, in bytes: the size of the hash itself.
pub const MIN_KEY_BYTES: usize = 32;

/// Keyed hashes of values (HMAC-SHA256, in hex): what `pii: pseudonymise` makes of a column's
/// values before anything is stored. A value always gets the same pseudonym under one key, so
/// joins and counts still hold; without the key none can be recomputed.
pub struct Pseudonymiser {
    key: ring::hmac::Key,
}

impl Pseudonymiser {
    /// A pseudonymiser with `key`, refused when shorter than [`MIN_KEY_BYTES`] (never quoting it).
    pub fn new(key: &[u8]) -> Result<Self, String> {
        if key.len() < MIN_KEY_BYTES {
            return Err(format!("MLOPS_PII_KEY has {} bytes; a key needs at least {MIN_KEY_BYTES}", key.len()));
        }
        Ok(Self { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key) })
    }

    /// The pseudonym of `value`, trimmed as every check trims it.
    pub fn pseudonym(&self, value: &str) -> String {
        hex::encode(ring::hmac::sign(&self.key, value.trim().as_bytes()))
    }

    /// Whether `cell` holds the value whose pseudonym is `hash` (an erasure's subject): the stored
    /// pseudonym itself (a `pii: pseudonymise` column) or a value that hashes to it, trimmed. In a
    /// `numeric` column a cell is compared by its number ([`subject_value`]: `1042.0` is `1042`).
    pub fn matches(&self, cell: &str, hash: &str, numeric: bool) -> bool {
        let cell = cell.trim();
        if cell.is_empty() {
            return false;
        }
        if numeric {
            return cell.parse::<f64>().is_ok_and(|v| self.pseudonym(&crate::table::number_text(v)) == hash);
        }
        cell == hash || self.pseudonym(cell) == hash
    }
}

/// An erasure's value as it is hashed: trimmed, and in a `numeric` column the number's text
/// (`1042.0` and ` 1042` are `1042`). An error, which never quotes the value, when a numeric
/// column's value is not a number.
pub fn subject_value(value: &str, numeric: bool) -> Result<String, String> {
    let value = value.trim();
    if !numeric {
        return Ok(value.to_owned());
    }
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(crate::table::number_text(v)),
        _ => Err("the column is numeric and the value given is not a number".into()),
    }
}

/// A feature view's key as an erasure compares it: trimmed, and a decimal integer written with a
/// `+` or a fraction of zeros (`+1007`, `1007.0`) as that integer (`1007`). Anything else is kept
/// as it is (`007` stays `007`): keys compare as text, never as floating-point numbers, which
/// would make long ids collide.
pub fn key_text(s: &str) -> std::borrow::Cow<'_, str> {
    let t = s.trim();
    let (minus, unsigned) = match t.as_bytes().first() {
        Some(b'+') => (false, &t[1..]),
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    let (int, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let integer = !int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()) && fraction.bytes().all(|b| b == b'0');
    if !integer || (int.len() == t.len()) {
        return std::borrow::Cow::Borrowed(t);
    }
    std::borrow::Cow::Owned(if minus { format!("-{int}") } else { int.to_owned() })
}

/// The built-in kind of a trimmed value. The cheap tests come first: most values of most columns
/// have neither an `@` nor a digit.
fn built_in(v: &str) -> Option<usize> {
    let b = v.as_bytes();
    if !(6..=254).contains(&b.len()) {
        return None;
    }
    if b.contains(&b'@') {
        return is_email(v).then_some(EMAIL);
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        None
    } else if is_card(b, digits) {
        Some(CARD)
    } else if is_iban(b) {
        Some(IBAN)
    } else if is_ip(v) {
        Some(IP)
    } else if is_phone(b, digits) {
        Some(PHONE)
    } else {
        None
    }
}

fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else { return false };
    let local_ok = (1..=64).contains(&local.len())
        && local.bytes().all(|c| c.is_ascii_alphanumeric() || b"._%+-'".contains(&c))
        && !local.starts_with('.')
        && !local.ends_with('.');
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let tld_ok = labels.last().is_some_and(|t| t.len() >= 2 && t.bytes().all(|c| c.is_ascii_alphabetic()));
    local_ok && labels.len() >= 2 && labels.iter().all(label_ok) && tld_ok
}

/// 13 to 19 digits, perhaps split by spaces or dashes, starting with 2 to 6 (the card networks'
/// ranges), whose Luhn check holds.
fn is_card(b: &[u8], digits: usize) -> bool {
    if !(13..=19).contains(&digits)
        || !(b'2'..=b'6').contains(&b[0])
        || !b.iter().all(|c| c.is_ascii_digit() || *c == b' ' || *c == b'-')
    {
        return false;
    }
    let sum: u32 = b
        .iter()
        .rev()
        .filter(|c| c.is_ascii_digit())
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A country code, two check digits and 11 to 30 letters or digits (spaces allowed between),
/// whose ISO 13616 mod-97 check holds.
fn is_iban(b: &[u8]) -> bool {
    let chars: Vec<u8> = b.iter().filter(|c| **c != b' ').map(u8::to_ascii_uppercase).collect();
    if !(15..=34).contains(&chars.len())
        || !chars[..2].iter().all(u8::is_ascii_uppercase)
        || !chars[2..4].iter().all(u8::is_ascii_digit)
        || !chars.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let remainder = chars[4..].iter().chain(&chars[..4]).fold(0u32, |r, &c| {
        if c.is_ascii_digit() { (r * 10 + u32::from(c - b'0')) % 97 } else { (r * 100 + u32::from(c - b'A' + 10)) % 97 }
    });
    remainder == 1
}

fn is_ip(v: &str) -> bool {
    let b = v.as_bytes();
    if b.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        return v.parse::<Ipv4Addr>().is_ok();
    }
    b.iter().filter(|c| **c == b':').count() >= 2
        && b.iter().all(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.')
        && v.parse::<Ipv6Addr>().is_ok()
}

fn is_phone(b: &[u8], digits: usize) -> bool {
    let (plus, body) = match b.split_first() {
        Some((b'+', body)) => (true, body),
        _ => (false, b),
    };
    if !body.iter().all(|c| c.is_ascii_digit() || b" -.()".contains(c)) {
        return false;
    }
    let groups: Vec<usize> = body.split(|c| !c.is_ascii_digit()).filter(|g| !g.is_empty()).map(<[u8]>::len).collect();
    let dots = body.iter().filter(|c| **c == b'.').count();
    // One dot is a decimal point (a coordinate, an amount); dots between groups are a phone number
    // only in the North American 3-3-4 shape, not a date or a build number.
    if dots == 1 || (dots > 1 && groups != [3, 3, 4]) {
        return false;
    }
    if plus {
        return (8..=15).contains(&digits);
    }
    // Three groups or more (`(555) 123-4567`, `020 7946 0958`), or a trunk prefix and the number
    // (`030 1234567`): not a code in two parts (`12345-6789`, `2024-000123`).
    let trunk = groups.len() == 2 && body.first() == Some(&b'0') && groups[0] <= 5;
    (10..=15).contains(&digits) && groups.iter().all(|g| *g >= 2) && (groups.len() >= 3 || trunk)
}

#[cfg(test)]
mod tests {
    #[test]
    fn view_keys_compare_as_text_with_integers_written_one_way() {
        for (written, key) in [
            ("1007", "1007"),
            (" 1007.0 ", "1007"),
            ("+1007", "1007"),
            ("-12.00", "-12"),
            ("1007.", "1007"),
            ("007", "007"),
            ("1007.5", "1007.5"),
            ("12345678901234567891", "12345678901234567891"),
            ("c1", "c1"),
            ("1e3", "1e3"),
            ("-", "-"),
            (".0", ".0"),
        ] {
            assert_eq!(key_text(written), key, "{written:?}");
        }
    }

    use super::*;

    fn kind(d: &Detector, v: &str) -> Option<String> {
        d.classify(v).map(|k| d.name(k))
    }

    #[test]
    fn each_kind_is_recognised_and_ordinary_values_are_not() {
        let d = Detector::new(&BTreeMap::from([("us_ssn".into(), r"\d{3}-\d{2}-\d{4}".into())])).unwrap();
        let personal = [
            ("ada.lovelace@example.org", "email"),
            (" j+tag@mail.co.uk ", "email"),
            ("+44 20 7946 0958", "phone"),
            ("+4915112345678", "phone"),
            ("(555) 123-4567", "phone"),
            ("020 7946 0958", "phone"),
            ("555.123.4567", "phone"),
            ("GB82 WEST 1234 5698 7654 32", "iban"),
            ("DE89370400440532013000", "iban"),
            ("4111 1111 1111 1111", "payment_card"),
            ("5500-0000-0000-0004", "payment_card"),
            ("378282246310005", "payment_card"),
            ("192.168.10.254", "ip_address"),
            ("2001:db8::8a2e:370:7334", "ip_address"),
            ("123-45-6789", "national_id:us_ssn"),
        ];
        for (v, expected) in personal {
            assert_eq!(kind(&d, v).as_deref(), Some(expected), "{v:?}");
        }
        let ordinary = [
            "monthly",
            "cat_3",
            "2024-01-15",
            "15-01-2024",
            "12:30:45",
            "0.123456789012",
            "-1234567890",
            "1234567890123",
            "4111 1111 1111 1112",
            "1111 1111 1111 1117",
            "GB82 WEST 1234 5698 7654 33",
            "999.1.1.1",
            "not@an address",
            "user@localhost",
            "v1.2.3",
            "1e10",
            "-122.4194155",
            "+12.345678",
            "(1234567.89)",
            "12 345 678.90",
            "12345-6789",
            "2024-000123",
            "20240115-123045",
            "2024.01.15.12",
            "550e8400-e29b-41d4-a716-446655440000",
            "2024-01-15T10:00:00Z",
            "",
        ];
        for v in ordinary {
            assert_eq!(kind(&d, v), None, "{v:?}");
        }
    }

    #[test]
    fn integers_are_card_numbers_only_when_the_luhn_check_holds() {
        let d = Detector::new(&BTreeMap::new()).unwrap();
        assert_eq!(d.classify_integer(4_111_111_111_111_111).map(|k| d.name(k)).as_deref(), Some("payment_card"));
        assert_eq!(d.classify_integer(4_111_111_111_111_112), None);
        assert_eq!(d.classify_integer(-4_111_111_111_111_111), None);
        assert_eq!(d.classify_integer(42), None);
    }

    #[test]
    fn pseudonyms_are_hmac_sha256_and_a_short_key_is_refused() {
        // RFC 4231, test case 6: a 131-byte key of 0xaa.
        let p = Pseudonymiser::new(&[0xaa; 131]).unwrap();
        assert_eq!(
            p.pseudonym("Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(p.pseudonym(" a@b.org "), p.pseudonym("a@b.org"));
        let short = Pseudonymiser::new(b"secret-but-short").err().unwrap();
        assert_eq!(short, "MLOPS_PII_KEY has 16 bytes; a key needs at least 32");
    }

    #[test]
    fn a_subject_is_matched_by_its_pseudonym_its_value_or_its_number() {
        let p = Pseudonymiser::new(&[7; 32]).unwrap();
        let email = p.pseudonym(&subject_value(" ada@example.org ", false).unwrap());
        assert!(p.matches("ada@example.org ", &email, false) && p.matches(&email, &email, false));
        assert!(!p.matches("bob@example.org", &email, false) && !p.matches(" ", &email, false));
        let id = p.pseudonym(&subject_value("1042.0", true).unwrap());
        assert!(p.matches("1042", &id, true) && p.matches(" 1042.00 ", &id, true) && !p.matches("01043", &id, true));
        assert!(!p.matches("n/a", &id, true));
        assert_eq!(subject_value("x", true).unwrap_err(), "the column is numeric and the value given is not a number");
    }

    #[test]
    fn a_national_id_pattern_that_does_not_compile_is_named() {
        let e = Detector::new(&BTreeMap::from([("fr_insee".into(), "[0-9".into())])).unwrap_err();
        assert!(e.starts_with("national id `fr_insee`:"), "{e}");
    }
}
