//! Decimal128 decoding and exact rescaling (`misql::mongo::decimal`).

use misql::mongo::decimal::{Decimal, RescaleError, decode, int_to_scaled};

use super::decimal;

fn parts(text: &str) -> Decimal {
    decode(decimal(text).bytes())
}

fn finite(negative: bool, coefficient: u128, exponent: i32) -> Decimal {
    Decimal::Finite { negative, coefficient, exponent }
}

#[test]
fn decodes_sign_coefficient_and_exponent() {
    assert_eq!(parts("1.23"), finite(false, 123, -2));
    assert_eq!(parts("-12.340"), finite(true, 12340, -3));
    assert_eq!(parts("0"), finite(false, 0, 0));
    assert_eq!(parts("-0"), finite(true, 0, 0));
    assert_eq!(parts("1E+3"), finite(false, 1, 3));
    assert_eq!(parts("1E-6176"), finite(false, 1, -6176));
    assert_eq!(
        parts("9.999999999999999999999999999999999E+6144"),
        finite(false, 9_999_999_999_999_999_999_999_999_999_999_999, 6111)
    );
}

#[test]
fn decodes_infinities_and_nans() {
    assert_eq!(parts("Infinity"), Decimal::Infinity { negative: false });
    assert_eq!(parts("-Infinity"), Decimal::Infinity { negative: true });
    assert_eq!(parts("NaN"), Decimal::NaN);
    assert_eq!(parts("-NaN"), Decimal::NaN);
    assert_eq!(parts("sNaN"), Decimal::NaN);
}

#[test]
fn non_canonical_coefficients_decode_as_zero_like_bson_does() {
    // "11" combination form: sign 0, `11`, exponent 6176 (biased, i.e. 0), 111 coefficient bits.
    let bits: u128 = (0b11 << 125) | (6176u128 << 111) | 12345;
    let bytes = bits.to_le_bytes();
    assert_eq!(decode(bytes), finite(false, 0, 0));
    assert_eq!(bson::Decimal128::from_bytes(bytes).to_string(), "0");
    // Normal form with a coefficient above 10^34 - 1.
    let bits: u128 = (6176u128 << 113) | ((1u128 << 113) - 1);
    assert_eq!(decode(bits.to_le_bytes()), finite(false, 0, 0));
}

#[test]
fn decoding_agrees_with_the_bson_crate() {
    for text in [
        "3.14159",
        "-1.05E+3",
        "0.000001",
        "1E-7",
        "123456789012345678901234567890.1234",
        "-0E-20",
        "5E+6000",
    ] {
        let Decimal::Finite { negative, coefficient, exponent } = parts(text) else {
            panic!("{text}")
        };
        let sign = if negative { "-" } else { "" };
        let rebuilt = decimal(&format!("{sign}{coefficient}E{exponent}"));
        assert_eq!(rebuilt.to_string(), decimal(text).to_string(), "{text}");
        assert_eq!(rebuilt.bytes(), decimal(text).bytes(), "{text}");
    }
}

#[test]
fn scale_and_integer_digits_come_from_the_exponent() {
    let cases = [
        ("123.45", 2, 3),
        ("0.001", 3, 0),
        ("1E+5", 0, 6),
        ("42", 0, 2),
        ("0.00", 2, 0),
        ("-7.5", 1, 1),
    ];
    for (text, scale, digits) in cases {
        assert_eq!(parts(text).scale(), Some(scale), "{text}");
        assert_eq!(parts(text).integer_digits(), Some(digits), "{text}");
    }
    assert_eq!(parts("NaN").scale(), None);
}

#[test]
fn rescaling_is_exact_or_an_error() {
    assert_eq!(parts("1.5").to_scaled(38, 2), Ok(150));
    assert_eq!(parts("1.50").to_scaled(38, 1), Ok(15));
    assert_eq!(parts("-1E+2").to_scaled(38, 0), Ok(-100));
    assert_eq!(parts("0E-50").to_scaled(10, 2), Ok(0));
    assert_eq!(parts("1.25").to_scaled(38, 1), Err(RescaleError::Scale { needed: 2 }));
    assert_eq!(parts("1E-40").to_scaled(38, 38), Err(RescaleError::Scale { needed: 40 }));
    assert_eq!(parts("999.99").to_scaled(5, 2), Ok(99_999));
    assert_eq!(parts("1000").to_scaled(5, 2), Err(RescaleError::Precision));
    assert_eq!(parts("1E+6000").to_scaled(38, 0), Err(RescaleError::Precision));
    assert_eq!(
        parts("9.999999999999999999999999999999999E+37").to_scaled(38, 0).map(|_| ()),
        Ok(())
    );
    assert_eq!(parts("1E+38").to_scaled(38, 0), Err(RescaleError::Precision));
    assert_eq!(parts("Infinity").to_scaled(38, 0), Err(RescaleError::NotFinite));
    assert_eq!(parts("1200").to_scaled(38, -2), Ok(12));
}

#[test]
fn integers_rescale_exactly() {
    assert_eq!(int_to_scaled(12, 38, 2), Ok(1200));
    assert_eq!(int_to_scaled(i64::MIN, 38, 18), Ok(i128::from(i64::MIN) * 10i128.pow(18)));
    assert_eq!(int_to_scaled(i64::MAX, 38, 20), Err(RescaleError::Precision));
    assert_eq!(int_to_scaled(100_000, 7, 2), Err(RescaleError::Precision));
    assert_eq!(int_to_scaled(1200, 38, -2), Ok(12));
    assert_eq!(int_to_scaled(1201, 38, -2), Err(RescaleError::Precision));
}
