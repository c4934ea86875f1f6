//! "Did you mean …?" suggestions for misspelt field names and values.

/// The candidate closest to `given`, if one is close enough to be a plausible typo: equal
/// ignoring case, `_` and `-`, or within a small edit distance.
pub(crate) fn closest<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let given_squashed = squash(given);
    if let Some(exact) = candidates.iter().find(|c| squash(c) == given_squashed) {
        return Some(exact);
    }
    let limit = (given.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(&given_squashed, &squash(c)), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance over characters, counting an adjacent transposition as one edit
/// (optimal string alignment), so `valeu` is one edit from `value`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// `a`, `b` and `c` as a backquoted, comma-separated list.
pub(crate) fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_case_and_typo_fixes() {
        let fields = ["syncPolicy", "source", "sources", "destination", "project"];
        assert_eq!(closest("syncpolicy", &fields), Some("syncPolicy"));
        assert_eq!(closest("sync_policy", &fields), Some("syncPolicy"));
        assert_eq!(closest("destinaton", &fields), Some("destination"));
        assert_eq!(closest("projcet", &fields), Some("project"));
        assert_eq!(closest("colour", &fields), None);
        assert_eq!(
            closest("valeu", &["name", "value", "forceString"]),
            Some("value")
        );
    }
}
