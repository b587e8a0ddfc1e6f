//! Integers in the seed's JSON read the way JSON means them.
//!
//! JSON has one number type: `7`, `7.0` and `7e0` are the same number, and JSON Schema's
//! `integer` (what the seed's OpenAPI description says these fields are) is any number without
//! a fractional part. serde_json's own `u64` takes only the first spelling and refuses the others
//! with a 400, which a client whose language has one number type (JavaScript, or a Python float)
//! cannot avoid. These helpers take any spelling of an integer in the field's range, and still
//! refuse `7.5`, `-1` for an unsigned field, and values out of range. They go through
//! `deserialize_u64`/`deserialize_i64`, so a non-self-describing format reads them as before.

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error, Visitor};

/// `2^64` and `2^63` as floats: the first integers out of range of `u64` and `i64`.
const U64_END: f64 = 18_446_744_073_709_551_616.0;
const I64_END: f64 = 9_223_372_036_854_775_808.0;

fn integral(v: f64) -> bool {
    v.is_finite() && v.fract() == 0.0
}

struct U64Visitor;

impl Visitor<'_> for U64Visitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer from 0 to 2^64 - 1")
    }
    fn visit_u64<E: Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }
    fn visit_i64<E: Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative; expected {}", Expecting(&self))))
    }
    fn visit_f64<E: Error>(self, v: f64) -> Result<u64, E> {
        if integral(v) && (0.0..U64_END).contains(&v) {
            Ok(v as u64)
        } else {
            Err(E::custom(format!("{v} is not {}", Expecting(&self))))
        }
    }
}

struct I64Visitor;

impl Visitor<'_> for I64Visitor {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer from -2^63 to 2^63 - 1")
    }
    fn visit_u64<E: Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("{v} is not {}", Expecting(&self))))
    }
    fn visit_i64<E: Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_f64<E: Error>(self, v: f64) -> Result<i64, E> {
        // -2^63 itself is refused as a float: an integer literal below i64's range (serde_json
        // reads those as floats) rounds to it, and -2^63 spelled as an integer still reads.
        if integral(v) && v > -I64_END && v < I64_END {
            Ok(v as i64)
        } else {
            Err(E::custom(format!("{v} is not {}", Expecting(&self))))
        }
    }
}

/// A visitor's `expecting`, for error messages.
struct Expecting<'a, V>(&'a V);

impl<'de, V: Visitor<'de>> fmt::Display for Expecting<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
}

/// A `u64` in any spelling of an integer; as an element of `Option` or `Vec` too.
struct U64(u64);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_u64(U64Visitor).map(U64)
    }
}

struct I64(i64);

impl<'de> Deserialize<'de> for I64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_i64(I64Visitor).map(I64)
    }
}

pub fn u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    U64::deserialize(d).map(|v| v.0)
}

pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    I64::deserialize(d).map(|v| v.0)
}

pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<U64>::deserialize(d).map(|v| v.map(|v| v.0))
}

pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<I64>::deserialize(d).map(|v| v.map(|v| v.0))
}

pub fn opt_usize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    match opt_u64(d)? {
        None => Ok(None),
        Some(v) => usize::try_from(v).map(Some).map_err(|_| D::Error::custom(format!("{v} is too large"))),
    }
}

pub fn vec_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    Vec::<U64>::deserialize(d).map(|v| v.into_iter().map(|v| v.0).collect())
}

pub fn shared_u64s<'de, D: Deserializer<'de>>(d: D) -> Result<std::sync::Arc<[u64]>, D::Error> {
    vec_u64(d).map(Into::into)
}

pub fn opt_vec_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u64>>, D::Error> {
    Option::<Vec<U64>>::deserialize(d).map(|v| v.map(|v| v.into_iter().map(|v| v.0).collect()))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Fields {
        #[serde(deserialize_with = "super::u64")]
        a: u64,
        #[serde(default, deserialize_with = "super::opt_i64")]
        b: Option<i64>,
        #[serde(default, deserialize_with = "super::opt_vec_u64")]
        c: Option<Vec<u64>>,
    }

    fn parse(json: &str) -> Result<Fields, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn any_spelling_of_an_integer_is_read_and_nothing_else() {
        let want = Fields { a: 2802, b: Some(-5), c: Some(vec![1, 67108863, u64::MAX]) };
        assert_eq!(parse(r#"{"a": 2802, "b": -5, "c": [1, 67108863, 18446744073709551615]}"#), Ok(want));
        let floats = parse(r#"{"a": 2802.0, "b": -5.0, "c": [1e0, 67108863.0, 18446744073709551615]}"#).unwrap();
        assert_eq!((floats.a, floats.b, floats.c.as_ref().map(|c| c[1])), (2802, Some(-5), Some(67108863)));
        // Read exactly (serde_json's float_roundtrip): without it these came back a fraction off.
        let exact = parse(r#"{"a": 1902016775530207.0, "c": [2251799813685247.0]}"#).unwrap();
        assert_eq!((exact.a, exact.c), (1902016775530207, Some(vec![2251799813685247])));
        assert_eq!(parse(r#"{"a": 1, "b": null, "c": null}"#), Ok(Fields { a: 1, b: None, c: None }));
        let min = parse(r#"{"a": 1, "b": -9223372036854775808}"#).map(|f| f.b);
        assert_eq!(min, Ok(Some(i64::MIN)), "the least i64, as an integer");
        assert_eq!(parse(r#"{"a": 1}"#), Ok(Fields { a: 1, b: None, c: None }));
        for bad in [
            r#"{"a": 1.5}"#,
            r#"{"a": -1}"#,
            r#"{"a": -1.0}"#,
            r#"{"a": 18446744073709551616}"#,
            r#"{"a": 1e20}"#,
            r#"{"a": "1"}"#,
            r#"{"a": 1, "b": 9223372036854775808}"#,
            r#"{"a": 1, "b": 1e19}"#,
            r#"{"a": 1, "b": -9223372036854775809}"#,
            r#"{"a": 1, "b": -1e19}"#,
            r#"{"a": 1, "c": [0.5]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
