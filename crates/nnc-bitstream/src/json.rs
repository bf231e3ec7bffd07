//! Helpers for the `hls.json` view (the reference decoder's unit dictionaries as the
//! conformance generator serialised them).

use serde_json::{Number, Value};

/// A float32 as the generator wrote it: the exact value as a JSON number, or Python's
/// `repr` (`nan`, `inf`, `-inf`) for non-finite values.
pub(crate) fn f32_value(f: f32) -> Value {
    match Number::from_f64(f64::from(f)) {
        Some(n) if f.is_finite() => Value::Number(n),
        _ if f.is_nan() => Value::from("nan"),
        _ if f > 0.0 => Value::from("inf"),
        _ => Value::from("-inf"),
    }
}

/// A JSON array of unsigned integers.
pub(crate) fn u64_values(it: impl Iterator<Item = u64>) -> Value {
    Value::Array(it.map(Value::from).collect())
}

/// Lower-case hexadecimal of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_and_hex() {
        assert_eq!(f32_value(0.5), Value::from(0.5f64));
        assert_eq!(f32_value(f32::NAN), Value::from("nan"));
        assert_eq!(f32_value(f32::NEG_INFINITY), Value::from("-inf"));
        assert_eq!(f32_value(f32::INFINITY), Value::from("inf"));
        assert_eq!(hex(&[0, 0xab]), "00ab");
    }
}
