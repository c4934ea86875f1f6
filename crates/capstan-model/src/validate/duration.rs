//! Go-style durations (`5s`, `3m`, `1h30m`, `1.5h`, `300ms`), as Argo CD writes them.

use std::time::Duration;

/// Why a duration text is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Empty text.
    #[error("the duration is empty; write a number with a unit, e.g. 5s, 3m or 1h30m")]
    Empty,
    /// Not a Go duration.
    #[error(
        "{0:?} is not a duration; write a number with a unit (ns, us, ms, s, m, h), e.g. 5s, 3m or 1h30m"
    )]
    Invalid(String),
    /// A unit Go does not know.
    #[error("{text:?} has the unknown unit {unit:?}; use ns, us, ms, s, m or h")]
    UnknownUnit {
        /// The whole duration text.
        text: String,
        /// The unit found.
        unit: String,
    },
    /// Negative.
    #[error("{0:?} is negative; durations must be zero or more")]
    Negative(String),
    /// Too long to represent.
    #[error("{0:?} is too long")]
    Overflow(String),
}

/// Parses a Go duration (`time.ParseDuration`): one or more `<number><unit>` parts with
/// units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; `0` alone is allowed. Negative durations
/// are refused.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.to_owned());
    let mut rest = text;
    if rest.is_empty() {
        return Err(DurationError::Empty);
    }
    if let Some(r) = rest.strip_prefix('-') {
        if r.is_empty() {
            return Err(invalid());
        }
        // "-0" style zero durations are harmless; anything else is negative.
        let parsed = parse_go_duration(r)?;
        return if parsed.is_zero() {
            Ok(parsed)
        } else {
            Err(DurationError::Negative(text.to_owned()))
        };
    }
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(a) => {
                let frac_len = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after_num
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_num.len());
        let (unit, next) = after_num.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(invalid()),
            other => {
                return Err(DurationError::UnknownUnit {
                    text: text.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        let overflow = || DurationError::Overflow(text.to_owned());
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
        if !frac_part.is_empty() {
            // Only the digits that matter at nanosecond precision.
            let digits = &frac_part[..frac_part.len().min(20)];
            let frac: u128 = digits.parse().map_err(|_| overflow())?;
            let scale = 10u128.pow(u32::try_from(digits.len()).map_err(|_| overflow())?);
            nanos = nanos
                .checked_add(frac * unit_nanos / scale)
                .ok_or_else(overflow)?;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
        rest = next;
    }
    // Go durations are int64 nanoseconds.
    if total_nanos > i64::MAX as u128 {
        return Err(DurationError::Overflow(text.to_owned()));
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000)
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    let sub = u32::try_from(total_nanos % 1_000_000_000)
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    Ok(Duration::new(secs, sub))
}

/// Parses a retry backoff duration as Argo CD does: a whole number of seconds (`30`), or a
/// Go duration (`30s`, `2m`).
pub fn parse_backoff_duration(text: &str) -> Result<Duration, DurationError> {
    match text.parse::<i64>() {
        Ok(secs) if secs >= 0 => Ok(Duration::from_secs(secs.unsigned_abs())),
        Ok(_) => Err(DurationError::Negative(text.to_owned())),
        Err(_) => parse_go_duration(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_go_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse_go_duration("2h45m30.5s").map(|d| d.as_millis()),
            Ok(9_930_500)
        );
        assert!(matches!(parse_go_duration(""), Err(DurationError::Empty)));
        for bad in ["5", "s", "1x", "1h 30m", "h1", "1..5s", "-", "+"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse_go_duration("3d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_go_duration("-5s"),
            Err(DurationError::Negative(_))
        ));
        assert!(matches!(
            parse_go_duration("99999999999h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn backoff_durations_accept_plain_seconds() {
        assert_eq!(parse_backoff_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_backoff_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_backoff_duration("two minutes").is_err());
    }
}
