//! Event names and subscription patterns.
//!
//! An event name is dot-separated segments of `[A-Za-z0-9_-]` (`order.created`,
//! `webhooks.delivery.failed`). A pattern may use `*` as a whole segment: it
//! matches exactly one segment, except as the last segment, where it matches one
//! or more (`order.*` covers `order.created`; `webhooks.*` covers
//! `webhooks.delivery.failed`; `*` covers everything).
//!
//! System events (`webhooks.…`) match only patterns that name `webhooks`
//! literally: a partner subscribed to `*` does not want our failure reports,
//! and an admin endpoint subscribes to `webhooks.*` on purpose.

/// Why a name or pattern is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PatternError {
    Empty,
    EmptySegment(String),
    BadSegment(String),
    Wildcard(String),
}

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatternError::Empty => write!(f, "event name or pattern must not be empty"),
            PatternError::EmptySegment(p) => write!(f, "\"{p}\" has an empty segment"),
            PatternError::BadSegment(p) => write!(
                f,
                "\"{p}\" has a segment with characters other than letters, digits, '_' and '-', or a '*' that is not a whole segment"
            ),
            PatternError::Wildcard(p) => write!(f, "event name \"{p}\" must not contain '*'"),
        }
    }
}

fn check(s: &str, allow_wildcard: bool) -> Result<(), PatternError> {
    if s.is_empty() {
        return Err(PatternError::Empty);
    }
    for seg in s.split('.') {
        if seg.is_empty() {
            return Err(PatternError::EmptySegment(s.to_owned()));
        }
        if seg == "*" {
            if allow_wildcard {
                continue;
            }
            return Err(PatternError::Wildcard(s.to_owned()));
        }
        if !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(PatternError::BadSegment(s.to_owned()));
        }
    }
    Ok(())
}

pub fn validate_event_name(name: &str) -> Result<(), PatternError> {
    check(name, false)
}

pub fn validate_pattern(pattern: &str) -> Result<(), PatternError> {
    check(pattern, true)
}

/// Does `event` match `pattern`? Both are assumed valid (validated when saved).
pub fn matches(pattern: &str, event: &str) -> bool {
    if event.starts_with("webhooks.") && !pattern.starts_with("webhooks.") {
        return false;
    }
    let mut pat = pattern.split('.').peekable();
    let mut ev = event.split('.');
    while let Some(p) = pat.next() {
        let last = pat.peek().is_none();
        match ev.next() {
            None => return false,
            Some(_) if p == "*" && last => return true,
            Some(e) if p == "*" || p == e => {}
            Some(_) => return false,
        }
    }
    ev.next().is_none()
}

pub fn matches_any<'a>(patterns: impl IntoIterator<Item = &'a str>, event: &str) -> bool {
    patterns.into_iter().any(|p| matches(p, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcards() {
        assert!(matches("order.created", "order.created"));
        assert!(!matches("order.created", "order.updated"));
        assert!(matches("order.*", "order.created"));
        assert!(!matches("order.*", "order"));
        assert!(!matches("order.*", "orders.created"));
        assert!(matches("*", "order.created"));
        assert!(matches("*", "x"));
        assert!(matches("webhooks.*", "webhooks.delivery.failed"));
        assert!(matches("webhooks.endpoint.paused", "webhooks.endpoint.paused"));
        assert!(
            !matches("*", "webhooks.delivery.failed"),
            "system events need an explicit pattern"
        );
        assert!(!matches("*.failed", "webhooks.delivery.failed"));
        assert!(matches("*.created", "invoice.created"));
        assert!(!matches("*.created", "invoice.line.created"));
        assert!(!matches("order", "order.created"));
        assert!(matches_any(["a.b", "invoice.paid"], "invoice.paid"));
        assert!(!matches_any(Vec::<&str>::new(), "invoice.paid"));
    }

    #[test]
    fn validation() {
        assert!(validate_pattern("order.*").is_ok());
        assert!(validate_pattern("*").is_ok());
        assert_eq!(validate_pattern(""), Err(PatternError::Empty));
        assert!(matches!(
            validate_pattern("order..x"),
            Err(PatternError::EmptySegment(_))
        ));
        assert!(matches!(
            validate_pattern("order.cre*"),
            Err(PatternError::BadSegment(_))
        ));
        assert!(matches!(
            validate_pattern("order created"),
            Err(PatternError::BadSegment(_))
        ));
        assert!(validate_event_name("loyalty.points_earned").is_ok());
        assert!(matches!(validate_event_name("order.*"), Err(PatternError::Wildcard(_))));
    }
}
