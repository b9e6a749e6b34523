//! Decoding BSON Decimal128 values (IEEE 754-2008 decimal128, binary integer decimal encoding)
//! into sign, coefficient and exponent, and rescaling them exactly into Arrow `Decimal128(p, s)`.
//!
//! Hand-written because bson 3.1 exposes a `Decimal128` only as its 16 raw bytes and as a
//! display string: parsing that string back for every value would be slow on the conversion hot
//! path, and the inference needs the exponent (the scale) of each value, which the string hides
//! behind scientific notation. The layout is small and fixed (see [`decode`]).

/// Powers of ten that fit an `i128` (10^0 ..= 10^38).
const POW10: [i128; 39] = {
    let mut table = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// The largest coefficient a canonical decimal128 can hold: 10^34 - 1.
const MAX_COEFFICIENT: u128 = 9_999_999_999_999_999_999_999_999_999_999_999;

/// The exponent bias of decimal128.
const EXPONENT_BIAS: i32 = 6176;

/// The largest precision of an Arrow `Decimal128`.
pub const MAX_PRECISION: u8 = 38;

/// A decoded decimal128 value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decimal {
    /// `(-1)^negative * coefficient * 10^exponent`. Non-canonical encodings (a coefficient above
    /// 10^34 - 1) decode to a zero coefficient, as the IEEE and BSON specifications require.
    Finite {
        /// The sign; `-0` is kept.
        negative: bool,
        /// The coefficient, at most 34 decimal digits.
        coefficient: u128,
        /// The power of ten, -6176 ..= 6111.
        exponent: i32,
    },
    /// Positive or negative infinity.
    Infinity {
        /// The sign.
        negative: bool,
    },
    /// Not a number (quiet or signalling).
    NaN,
}

/// Why a decimal value does not fit an Arrow decimal column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RescaleError {
    /// NaN or ±Infinity: no Arrow decimal represents them.
    NotFinite,
    /// The value has more fractional digits than the column's scale (it would be rounded).
    Scale {
        /// The fractional digits the value needs.
        needed: u32,
    },
    /// The value has more digits than the column's precision.
    Precision,
}

/// Decodes the 16 bytes of a BSON Decimal128 (little-endian, as stored in BSON).
///
/// Layout of the 128-bit integer, most significant bit first: 1 sign bit, then a combination
/// field. If its two top bits are not `11`: a 14-bit biased exponent and a 113-bit coefficient.
/// If they are `11`: `11110` is infinity, `11111` is NaN, anything else is a finite number whose
/// coefficient (`100` followed by 111 bits) exceeds 10^34 - 1 and is therefore non-canonical,
/// which decodes as zero with the 14-bit exponent that follows the `11`.
pub fn decode(bytes: [u8; 16]) -> Decimal {
    let bits = u128::from_le_bytes(bytes);
    let negative = bits >> 127 == 1;
    let top2 = (bits >> 125) & 0b11;
    if top2 == 0b11 {
        let top5 = (bits >> 122) & 0b1_1111;
        if top5 == 0b1_1110 {
            return Decimal::Infinity { negative };
        }
        if top5 == 0b1_1111 {
            return Decimal::NaN;
        }
        let biased = ((bits >> 111) & 0x3fff) as i32;
        return Decimal::Finite { negative, coefficient: 0, exponent: biased - EXPONENT_BIAS };
    }
    let biased = ((bits >> 113) & 0x3fff) as i32;
    let mut coefficient = bits & ((1u128 << 113) - 1);
    if coefficient > MAX_COEFFICIENT {
        coefficient = 0;
    }
    Decimal::Finite { negative, coefficient, exponent: biased - EXPONENT_BIAS }
}

/// The number of decimal digits of `n` (1 for 0).
pub fn digits(n: u128) -> u32 {
    match n.checked_ilog10() {
        Some(log) => log + 1,
        None => 1,
    }
}

impl Decimal {
    /// The fractional digits the value is written with: `-exponent`, or 0 for a non-negative
    /// exponent. `None` for NaN and infinities.
    pub fn scale(&self) -> Option<u32> {
        match *self {
            Decimal::Finite { exponent, .. } => Some(exponent.min(0).unsigned_abs()),
            _ => None,
        }
    }

    /// Whether MongoDB writes the value with an exponent (`1.5E+10`, `1E-7`): a positive
    /// exponent, or more than six zeros after the point. NaN and infinities are not numbers.
    pub fn is_scientific(&self) -> bool {
        match *self {
            Decimal::Finite { coefficient, exponent, .. } => {
                let adjusted = i64::from(exponent) + i64::from(digits(coefficient)) - 1;
                exponent > 0 || adjusted < -6
            }
            _ => false,
        }
    }

    /// The digits before the decimal point (0 for `0.05`, 3 for `123.4`, 4 for `1E+3`).
    /// `None` for NaN and infinities.
    pub fn integer_digits(&self) -> Option<u32> {
        match *self {
            Decimal::Finite { coefficient: 0, .. } => Some(0),
            Decimal::Finite { coefficient, exponent, .. } => {
                Some((digits(coefficient) as i64 + exponent as i64).max(0) as u32)
            }
            _ => None,
        }
    }

    /// The value as an unscaled `i128` for an Arrow `Decimal128(precision, scale)`, exactly:
    /// trailing zeros beyond `scale` are dropped (`1.50` fits scale 1), but a value that would
    /// need rounding, or that has more than `precision` digits, is an error.
    pub fn to_scaled(&self, precision: u8, scale: i8) -> Result<i128, RescaleError> {
        let Decimal::Finite { negative, coefficient, exponent } = *self else {
            return Err(RescaleError::NotFinite);
        };
        let shift = exponent + i32::from(scale);
        let magnitude = if coefficient == 0 {
            0
        } else if shift >= 0 {
            let factor = POW10.get(shift as usize).ok_or(RescaleError::Precision)?;
            (coefficient as i128).checked_mul(*factor).ok_or(RescaleError::Precision)?
        } else {
            let needed = (-exponent).max(0) as u32;
            let divisor = POW10.get(shift.unsigned_abs() as usize);
            match divisor {
                Some(d) if coefficient as i128 % d == 0 => coefficient as i128 / d,
                _ => return Err(RescaleError::Scale { needed }),
            }
        };
        check_precision(if negative { -magnitude } else { magnitude }, precision)
    }
}

/// An integer as an unscaled `i128` for an Arrow `Decimal128(precision, scale)`, exactly.
pub fn int_to_scaled(value: i64, precision: u8, scale: i8) -> Result<i128, RescaleError> {
    let value = i128::from(value);
    let scaled = if scale >= 0 {
        value.checked_mul(POW10[scale as usize]).ok_or(RescaleError::Precision)?
    } else {
        match POW10.get(usize::from(scale.unsigned_abs())) {
            Some(d) if value % d == 0 => value / d,
            _ if value == 0 => 0,
            _ => return Err(RescaleError::Precision),
        }
    };
    check_precision(scaled, precision)
}

fn check_precision(scaled: i128, precision: u8) -> Result<i128, RescaleError> {
    match POW10.get(usize::from(precision)) {
        Some(limit) if scaled.unsigned_abs() >= limit.unsigned_abs() => {
            Err(RescaleError::Precision)
        }
        _ => Ok(scaled),
    }
}
