//! [`Selector`]: a Mercure topic selector, matched against an update's topics: `*` matches
//! every topic, a selector matches the topic equal to it, and a selector that is an RFC 6570
//! URI Template matches every topic some expansion of it produces (`https://example.com/books/{id}`
//! matches `https://example.com/books/1`, not `https://example.com/books/1/reviews`).
//!
//! A template is matched as its expansions are built: each literal must appear as it is, and
//! each expression takes a run of the characters its operator may expand to (for `{var}`, the
//! unreserved ones and percent-encoded octets, so it never spans a `/`; for `{+var}` and
//! `{#var}` the reserved ones too; the other operators with their own prefix). Matching walks
//! the template part by part over the set of positions the topic may have reached, and an
//! expression's run from a position is walked once whichever start reached it, so the work is
//! linear in the topic's length for each part, whatever the template.

/// A topic selector, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Any,
    /// Matches the topic equal to the selector only (no expression in it, or not a valid
    /// template).
    Exact,
    Template(Vec<Part>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// One expression, by its operator.
    Expression(Operator),
}

/// What an expression may expand to, by its operator (RFC 6570 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    /// `{var}`: unreserved characters and percent-encoded octets; `,` between list items.
    Simple,
    /// `{+var}`: reserved characters too.
    Reserved,
    /// `{#var}`: `#` and reserved characters, or nothing.
    Fragment,
    /// `{.var}`, `{/var}`, `{;var}`, `{?var}`, `{&var}`: nothing, or the prefix and what
    /// follows it.
    Prefixed(char),
}

/// The most parts a template may have: the search is bounded by parts × topic length.
const MAX_PARTS: usize = 64;

impl Selector {
    pub fn new(text: &str) -> Self {
        let kind = if text == "*" {
            Kind::Any
        } else if text.contains('{') {
            parse_template(text).map_or(Kind::Exact, Kind::Template)
        } else {
            Kind::Exact
        };
        Self {
            text: text.to_owned(),
            kind,
        }
    }

    /// The selector as it was given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it matches only the topic equal to it.
    pub fn exact(&self) -> Option<&str> {
        matches!(self.kind, Kind::Exact).then_some(self.text.as_str())
    }

    /// Whether `topic` is selected: `*`, the same text, or an expansion of the template.
    pub fn matches(&self, topic: &str) -> bool {
        if self.text == topic {
            return true;
        }
        match &self.kind {
            Kind::Any => true,
            Kind::Exact => false,
            Kind::Template(parts) => template_matches(parts, topic),
        }
    }
}

/// Whether any of `selectors` matches any of `topics`.
pub fn any_matches<'a>(
    selectors: &[Selector],
    topics: impl IntoIterator<Item = &'a str> + Clone,
) -> bool {
    selectors.iter().any(|selector| {
        topics
            .clone()
            .into_iter()
            .any(|topic| selector.matches(topic))
    })
}

/// The parts of a template, or `None` if it is not one (an unclosed or empty expression, an
/// operator RFC 6570 reserves, a brace inside a literal).
fn parse_template(text: &str) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(expression) = rest.strip_prefix('{') {
            let end = expression.find('}')?;
            let body = &expression[..end];
            let (operator, names) = match body.chars().next()? {
                '+' => (Operator::Reserved, &body[1..]),
                '#' => (Operator::Fragment, &body[1..]),
                prefix @ ('.' | '/' | ';' | '?' | '&') => (Operator::Prefixed(prefix), &body[1..]),
                '=' | ',' | '!' | '@' | '|' => return None,
                _ => (Operator::Simple, body),
            };
            let valid_name = |name: &str| {
                let name = name.trim_end_matches('*');
                let name = name.split_once(':').map_or(name, |(name, length)| {
                    if length.is_empty() || !length.bytes().all(|b| b.is_ascii_digit()) {
                        ""
                    } else {
                        name
                    }
                });
                !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'%')
            };
            if !names.split(',').all(valid_name) {
                return None;
            }
            parts.push(Part::Expression(operator));
            rest = &expression[end + 1..];
        } else {
            let end = rest.find('{').unwrap_or(rest.len());
            let literal = &rest[..end];
            if literal.contains('}') {
                return None;
            }
            parts.push(Part::Literal(literal.to_owned()));
            rest = &rest[end..];
        }
        if parts.len() > MAX_PARTS {
            return None;
        }
    }
    Some(parts)
}

fn unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn reserved(c: u8) -> bool {
    matches!(
        c,
        b':' | b'/'
            | b'?'
            | b'#'
            | b'['
            | b']'
            | b'@'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
    )
}

/// How many bytes from `at` a character an expression of `operator` may expand to takes: 1,
/// 3 for a percent-encoded octet, or 0 if none may start there. `,` separates list items in
/// every expansion; `=` and the operator's own separator appear in the named and prefixed
/// ones.
fn allowed_at(operator: Operator, topic: &[u8], at: usize) -> usize {
    let c = topic[at];
    if c == b'%' {
        let hex = |i: usize| topic.get(i).is_some_and(u8::is_ascii_hexdigit);
        return if hex(at + 1) && hex(at + 2) { 3 } else { 0 };
    }
    let fits = match operator {
        Operator::Simple => unreserved(c) || c == b',',
        Operator::Reserved | Operator::Fragment => unreserved(c) || reserved(c),
        Operator::Prefixed(prefix) => {
            unreserved(c)
                || c == b','
                || c == b'='
                || c == prefix as u8
                || (prefix == '?' && c == b'&')
        }
    };
    usize::from(fits)
}

/// Whether some expansion of `parts` is `topic`.
fn template_matches(parts: &[Part], topic: &str) -> bool {
    let topic = topic.as_bytes();
    // reachable[i][at]: part i can start at byte `at`. Filled part by part, each from the
    // previous, so the work is parts × length × (run length) at most.
    let mut reachable = vec![false; topic.len() + 1];
    reachable[0] = true;
    for part in parts {
        let mut next = vec![false; topic.len() + 1];
        // Positions an expression's run has been walked from: the rest of that run is the same
        // whichever start reached them.
        let mut walked = vec![false; topic.len() + 1];
        for start in 0..=topic.len() {
            if !reachable[start] {
                continue;
            }
            match part {
                Part::Literal(literal) => {
                    if topic[start..].starts_with(literal.as_bytes()) {
                        next[start + literal.len()] = true;
                    }
                }
                Part::Expression(operator) => {
                    expand_from(*operator, topic, start, &mut next, &mut walked);
                }
            }
        }
        reachable = next;
    }
    reachable[topic.len()]
}

/// Marks in `next` every position an expression of `operator` starting at `start` may end at,
/// stopping where an earlier start's run was already walked.
fn expand_from(
    operator: Operator,
    topic: &[u8],
    start: usize,
    next: &mut [bool],
    walked: &mut [bool],
) {
    // Every expression may expand to nothing (an undefined variable).
    next[start] = true;
    let mut at = start;
    match operator {
        Operator::Simple | Operator::Reserved => {}
        Operator::Fragment => {
            if topic.get(at) != Some(&b'#') {
                return;
            }
            at += 1;
            next[at] = true;
        }
        Operator::Prefixed(prefix) => {
            let opening = if prefix == '&' { b'&' } else { prefix as u8 };
            if topic.get(at) != Some(&opening) {
                return;
            }
            at += 1;
            next[at] = true;
        }
    }
    while at < topic.len() {
        if std::mem::replace(&mut walked[at], true) {
            break;
        }
        let step = allowed_at(operator, topic, at);
        if step == 0 {
            break;
        }
        at += step;
        next[at] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(selector: &str, topic: &str) -> bool {
        Selector::new(selector).matches(topic)
    }

    #[test]
    fn the_wildcard_and_equal_text_match() {
        assert!(matches("*", "anything at all"));
        assert!(matches("orders", "orders"));
        assert!(!matches("orders", "orders/1"));
        // A selector matches itself even when it is a template, which authorization relies on.
        assert!(matches(
            "https://example.com/{id}",
            "https://example.com/{id}"
        ));
        assert!(!matches("another-name", "will-not-match}"));
    }

    #[test]
    fn a_simple_expression_takes_one_path_segment() {
        let books = "https://example.com/books/{id}";
        assert!(matches(books, "https://example.com/books/1"));
        assert!(matches(books, "https://example.com/books/a-b_c.d~e%20f"));
        assert!(matches(books, "https://example.com/books/"));
        assert!(!matches(books, "https://example.com/books/1/reviews"));
        assert!(!matches(books, "https://example.com/authors/1"));
        assert!(!matches(books, "https://example.com/books/1?x=y"));
        assert!(!matches(
            "https://example.net/bar/{var}",
            "https://example.net/foo/will-not-match}"
        ));
        let two = "https://example.com/{kind}/{id}.json";
        assert!(matches(two, "https://example.com/books/42.json"));
        assert!(!matches(two, "https://example.com/books/42.xml"));
    }

    #[test]
    fn operators_expand_as_rfc_6570_says() {
        assert!(matches(
            "https://example.com{+path}",
            "https://example.com/a/b/c"
        ));
        assert!(matches(
            "https://example.com/page{#section}",
            "https://example.com/page#top"
        ));
        assert!(matches(
            "https://example.com/page{#section}",
            "https://example.com/page"
        ));
        assert!(matches(
            "https://example.com/users{/id}",
            "https://example.com/users/1"
        ));
        assert!(matches(
            "https://example.com/users{/id*}",
            "https://example.com/users/1/2"
        ));
        assert!(matches(
            "https://example.com/search{?q,lang}",
            "https://example.com/search?q=a&lang=en"
        ));
        assert!(matches(
            "https://example.com/search{?q}{&lang}",
            "https://example.com/search?q=a&lang=en"
        ));
        assert!(matches(
            "https://example.com/file{.ext}",
            "https://example.com/file.tar.gz"
        ));
        assert!(matches(
            "https://example.com/m{;x,y}",
            "https://example.com/m;x=1;y=2"
        ));
        assert!(matches(
            "https://example.com/{id:3}",
            "https://example.com/abc"
        ));
        assert!(!matches(
            "https://example.com/users{/id}",
            "https://example.com/users?x"
        ));
    }

    #[test]
    fn what_is_not_a_template_matches_only_itself() {
        for text in ["a{b", "a}b{c}", "{}", "{=x}", "{a b}", "{x:}", "{x:y}"] {
            let selector = Selector::new(text);
            assert_eq!(selector.exact(), Some(text), "{text}");
            assert!(selector.matches(text));
            assert!(!selector.matches("a"));
        }
        assert_eq!(Selector::new("{x}").exact(), None);
    }

    #[test]
    fn matching_stays_fast_on_adversarial_templates() {
        let template = "{a}".repeat(60) + "!";
        let topic = "a".repeat(10_000);
        // Parts × length steps, not an exponential search: this answers at once.
        assert!(!matches(&template, &topic));
        assert!(matches(&template, &(topic + "!")));
    }
}
