//! Glob patterns as Argo CD uses them in projects and sync windows (`*`, `?`, `[a-z]`,
//! `[!x]`, `{a,b}`, `\` escapes), and a matcher for them.

/// Checks that a glob pattern is well formed: brackets and braces closed, no trailing `\`,
/// no empty `[]`.
pub fn check_glob(pattern: &str) -> Result<(), String> {
    let mut chars = pattern.chars().peekable();
    let mut brace_depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => {
                return Err(format!(
                    "{pattern:?} ends with '\\'; escape a character after it or remove it"
                ));
            }
            '[' => {
                if chars.peek() == Some(&'!') {
                    chars.next();
                }
                let mut empty = true;
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '\\' => {
                            chars.next();
                            empty = false;
                        }
                        _ => empty = false,
                    }
                }
                if !closed {
                    return Err(format!("{pattern:?} has '[' without a closing ']'"));
                }
                if empty {
                    return Err(format!("{pattern:?} has an empty character class '[]'"));
                }
            }
            '{' => brace_depth += 1,
            '}' => {
                if brace_depth == 0 {
                    return Err(format!("{pattern:?} has '}}' without an opening '{{'"));
                }
                brace_depth -= 1;
            }
            _ => {}
        }
    }
    if brace_depth > 0 {
        return Err(format!("{pattern:?} has '{{' without a closing '}}'"));
    }
    Ok(())
}

/// Whether `text` matches `pattern` (no separators: `*` matches any run of characters).
/// A malformed pattern matches nothing.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if check_glob(pattern).is_err() {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    matches_at(&p, &t)
}

fn matches_at(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|i| matches_at(&p[1..], &t[i..])),
        Some('?') => !t.is_empty() && matches_at(&p[1..], &t[1..]),
        Some('\\') => p.len() > 1 && t.first() == Some(&p[1]) && matches_at(&p[2..], &t[1..]),
        Some('[') => {
            let Some(c) = t.first() else { return false };
            let mut i = 1;
            let negate = p.get(1) == Some(&'!');
            if negate {
                i += 1;
            }
            let mut matched = false;
            while i < p.len() && p[i] != ']' {
                let lo = if p[i] == '\\' {
                    i += 1;
                    p.get(i).copied().unwrap_or('\\')
                } else {
                    p[i]
                };
                if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|c| *c != ']') {
                    let hi = p[i + 2];
                    matched |= lo <= *c && *c <= hi;
                    i += 3;
                } else {
                    matched |= lo == *c;
                    i += 1;
                }
            }
            matched != negate && matches_at(&p[(i + 1).min(p.len())..], &t[1..])
        }
        Some('{') => {
            // Split the top-level alternatives of this brace group.
            let mut depth = 0;
            let mut end = 0;
            let mut starts = vec![1];
            for (i, c) in p.iter().enumerate().skip(1) {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = i;
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => starts.push(i + 1),
                    _ => {}
                }
            }
            let rest = &p[end + 1..];
            starts.iter().enumerate().any(|(k, s)| {
                let stop = starts.get(k + 1).map_or(end, |n| n - 1);
                let mut alt: Vec<char> = p[*s..stop].to_vec();
                alt.extend_from_slice(rest);
                matches_at(&alt, t)
            })
        }
        Some(c) => t.first() == Some(c) && matches_at(&p[1..], &t[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_syntax() {
        for ok in [
            "*",
            "team-*",
            "prod-[0-9]",
            "{a,b}-*",
            "[!x]y",
            "a\\*b",
            "{a,{b,c}}",
        ] {
            assert_eq!(check_glob(ok), Ok(()), "{ok}");
        }
        for bad in ["[abc", "{a,b", "a}", "[]", "x\\"] {
            assert!(check_glob(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matches() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("team-*", "team-a"));
        assert!(!glob_match("team-*", "other"));
        assert!(glob_match("prod-[0-9]", "prod-3"));
        assert!(!glob_match("prod-[!0-9]", "prod-3"));
        assert!(glob_match("{dev,stage}-*", "stage-eu"));
        assert!(!glob_match("{dev,stage}-*", "prod-eu"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("a\\*c", "a*c"));
        assert!(!glob_match("a\\*c", "abc"));
    }
}
