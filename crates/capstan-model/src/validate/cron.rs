//! Sync window schedules: standard 5-field cron expressions
//! (`minute hour day-of-month month day-of-week`), as Argo CD parses them.

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    allows_question_mark: bool,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        allows_question_mark: false,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        allows_question_mark: false,
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
        allows_question_mark: true,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: MONTHS,
        allows_question_mark: false,
    },
    Field {
        name: "day of week",
        min: 0,
        max: 6,
        names: WEEKDAYS,
        allows_question_mark: true,
    },
];

fn value(field: &Field, text: &str) -> Result<u32, String> {
    if let Ok(n) = text.parse::<u32>() {
        return if (field.min..=field.max).contains(&n) {
            Ok(n)
        } else {
            Err(format!(
                "{} {n} is out of range {}-{}",
                field.name, field.min, field.max
            ))
        };
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = field.names.iter().position(|n| *n == lower) {
        let i = u32::try_from(i).unwrap_or(0);
        return Ok(field.min + i);
    }
    Err(format!("{} {text:?} is not a number", field.name))
}

fn check_field(field: &Field, text: &str) -> Result<(), String> {
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("{} has an empty list item in {text:?}", field.name));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(s) if s > 0 => {}
                _ => {
                    return Err(format!(
                        "{} step {step:?} must be a positive number",
                        field.name
                    ));
                }
            }
        }
        if range == "*" || (range == "?" && field.allows_question_mark) {
            continue;
        }
        match range.split_once('-') {
            Some((lo, hi)) => {
                let lo_v = value(field, lo)?;
                let hi_v = value(field, hi)?;
                if lo_v > hi_v {
                    return Err(format!(
                        "{} range {range:?} starts after it ends",
                        field.name
                    ));
                }
            }
            None => {
                value(field, range)?;
            }
        }
    }
    Ok(())
}

/// Checks a 5-field cron expression, e.g. `0 22 * * *` or `*/15 9-17 * * MON-FRI`.
pub fn check_cron(expr: &str) -> Result<(), String> {
    let parts: Vec<&str> = expr.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!(
            "{expr:?} has {} fields; write 5: minute hour day-of-month month day-of-week, e.g. \"0 22 * * *\"",
            parts.len()
        ));
    }
    for (field, text) in FIELDS.iter().zip(parts) {
        check_field(field, text).map_err(|e| format!("{expr:?}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_expressions() {
        for ok in [
            "0 22 * * *",
            "*/15 9-17 * * MON-FRI",
            "10 1 1,15 * ?",
            "0 0 1 jan-jun sun",
            "5-10/2 * * * 0",
            "59 23 31 12 6",
        ] {
            assert_eq!(check_cron(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_malformed_expressions() {
        for (bad, expect) in [
            ("0 22 * *", "has 4 fields"),
            ("@daily", "has 1 fields"),
            ("61 * * * *", "minute 61 is out of range 0-59"),
            ("* 24 * * *", "hour 24 is out of range 0-23"),
            ("* * 0 * *", "day of month 0 is out of range 1-31"),
            ("* * * 13 *", "month 13 is out of range 1-12"),
            ("* * * * 7", "day of week 7 is out of range 0-6"),
            ("*/0 * * * *", "step \"0\" must be a positive number"),
            ("10-5 * * * *", "starts after it ends"),
            ("? * * * *", "minute \"?\" is not a number"),
            ("1,,2 * * * *", "empty list item"),
            ("* * * foo *", "month \"foo\" is not a number"),
        ] {
            let err = check_cron(bad).expect_err(bad);
            assert!(err.contains(expect), "{bad}: {err}");
        }
    }
}
