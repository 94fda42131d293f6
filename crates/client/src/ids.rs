//! Event ids: Herald's are decimal sequence numbers, compared as numbers.

/// Whether event id `a` comes after `b` in the log (anything comes after none).
pub fn is_after(a: &str, b: Option<&str>) -> bool {
    let Some(b) = b.filter(|b| !b.is_empty()) else {
        return true;
    };
    let numeric = |id: &str| !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit());
    if numeric(a) && numeric(b) {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        return (a.len(), a) > (b.len(), b);
    }
    a != b
}

#[cfg(test)]
mod tests {
    use super::is_after;

    #[test]
    fn ids_compare_as_numbers() {
        assert!(is_after("10", Some("9")));
        assert!(!is_after("9", Some("10")));
        assert!(!is_after("10", Some("10")));
        assert!(is_after("1", None));
        assert!(is_after("1", Some("")));
    }
}
