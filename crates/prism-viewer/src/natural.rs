//! Natural order of names with numbers: `digit-2` before `digit-10`, `kmeans-02` before
//! `kmeans-10`, `agglomerative-10` before `kmeans-02`. The viewer lists categories and
//! clusterings in this order (analysis files store them in whatever order they were written).

use std::cmp::Ordering;

/// Compares `a` and `b` piece by piece: runs of digits by their value, other runs as text. Ties
/// (`7` and `07`) fall back to the plain string order, so the order is total.
pub fn cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.is_empty(), y.is_empty()) {
            (true, true) => return a.cmp(b),
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        let (px, rx) = piece(x);
        let (py, ry) = piece(y);
        let digits = |s: &str| s.starts_with(|c: char| c.is_ascii_digit());
        let o = match (digits(px), digits(py)) {
            (true, true) => {
                // By value: without leading zeros, the longer number is the larger.
                let (vx, vy) = (px.trim_start_matches('0'), py.trim_start_matches('0'));
                vx.len().cmp(&vy.len()).then_with(|| vx.cmp(vy))
            }
            // A number before text at the same place (`a1` < `ab`), as in plain order.
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => px.cmp(py),
        };
        if o != Ordering::Equal {
            return o;
        }
        (x, y) = (rx, ry);
    }
}

/// The leading run of digits or of other characters, and the rest.
fn piece(s: &str) -> (&str, &str) {
    let digit = s.starts_with(|c: char| c.is_ascii_digit());
    let end = s
        .find(|c: char| c.is_ascii_digit() != digit)
        .unwrap_or(s.len());
    s.split_at(end)
}

/// Sorts names in natural order.
pub fn sort<T: AsRef<str>>(names: &mut [T]) {
    names.sort_by(|a, b| cmp(a.as_ref(), b.as_ref()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value() {
        let mut v = vec![
            "digit-10", "digit-9", "digit-1", "digit-0", "digit-2", "digit-11",
        ];
        sort(&mut v);
        assert_eq!(
            v,
            ["digit-0", "digit-1", "digit-2", "digit-9", "digit-10", "digit-11"]
        );
        let mut c = vec![
            "kmeans-10",
            "kmeans-2",
            "dbscan-05",
            "kmeans-02",
            "agglomerative-10",
            "kmeans-03",
        ];
        sort(&mut c);
        assert_eq!(
            c,
            [
                "agglomerative-10",
                "dbscan-05",
                "kmeans-02",
                "kmeans-2",
                "kmeans-03",
                "kmeans-10"
            ]
        );
        assert_eq!(cmp("n00000002", "n00000010"), Ordering::Less);
        assert_eq!(cmp("a", "a1"), Ordering::Less);
        assert_eq!(cmp("a1", "ab"), Ordering::Less);
        assert_eq!(cmp("x", "x"), Ordering::Equal);
        assert_eq!(
            cmp("99999999999999999999999", "100000000000000000000000"),
            Ordering::Less
        );
        assert_eq!(cmp("é2", "é10"), Ordering::Less);
    }
}
