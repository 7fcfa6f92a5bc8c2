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

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Event names built from the allowed alphabet.
        fn event_name() -> impl Strategy<Value = String> {
            prop::collection::vec("[A-Za-z0-9_-]{1,8}", 1..5).prop_map(|s| s.join("."))
        }

        /// Small alphabets, so that random patterns and names often match.
        fn small_name() -> impl Strategy<Value = String> {
            prop::collection::vec("[ab]{1,2}", 1..5).prop_map(|s| s.join("."))
        }

        fn small_pattern() -> impl Strategy<Value = String> {
            prop::collection::vec(prop_oneof!["[ab]{1,2}", Just("*".to_owned())], 1..5).prop_map(|s| s.join("."))
        }

        /// The documented rule, written recursively: `*` is one segment, and
        /// one or more as the last segment.
        fn model(p: &[&str], e: &[&str]) -> bool {
            match (p, e) {
                ([], []) => true,
                (["*"], [_, ..]) => true,
                ([ph, pt @ ..], [eh, et @ ..]) => (*ph == "*" || ph == eh) && model(pt, et),
                _ => false,
            }
        }

        proptest! {
            #[test]
            fn any_input_is_accepted_or_refused_without_panicking(s in ".{0,40}", t in ".{0,40}") {
                let _ = validate_pattern(&s);
                let _ = validate_event_name(&s);
                let _ = matches(&s, &t);
            }

            #[test]
            fn accepted_names_use_only_the_documented_alphabet(s in "[a-z.*_ -]{0,12}") {
                if validate_event_name(&s).is_ok() {
                    prop_assert!(!s.is_empty() && !s.contains('*') && !s.contains(' ') && !s.contains(".."));
                    prop_assert!(!s.starts_with('.') && !s.ends_with('.'));
                }
                if validate_pattern(&s).is_ok() {
                    prop_assert!(s.split('.').all(|seg| seg == "*" || !seg.contains('*')));
                }
            }

            #[test]
            fn a_name_matches_itself_and_its_wildcards(name in event_name(), mask in any::<u8>()) {
                prop_assume!(!name.starts_with("webhooks."));
                prop_assert!(validate_event_name(&name).is_ok());
                prop_assert!(matches(&name, &name));
                prop_assert!(matches("*", &name));
                // Any segment replaced by `*` still matches.
                let starred: Vec<&str> = name
                    .split('.')
                    .enumerate()
                    .map(|(i, seg)| if mask & (1 << (i % 8)) != 0 { "*" } else { seg })
                    .collect();
                let pattern = starred.join(".");
                prop_assert!(validate_pattern(&pattern).is_ok());
                prop_assert!(matches(&pattern, &name), "{} should match {}", pattern, name);
            }

            #[test]
            fn matching_agrees_with_a_segment_by_segment_model(pattern in small_pattern(), name in small_name()) {
                let p: Vec<&str> = pattern.split('.').collect();
                let e: Vec<&str> = name.split('.').collect();
                prop_assert!(validate_pattern(&pattern).is_ok());
                prop_assert_eq!(matches(&pattern, &name), model(&p, &e), "{} vs {}", pattern, name);
            }

            #[test]
            fn system_events_need_a_pattern_naming_webhooks(rest in event_name(), pattern in event_name()) {
                let system = format!("webhooks.{rest}");
                prop_assume!(!pattern.starts_with("webhooks."));
                prop_assert!(!matches(&pattern, &system));
                prop_assert!(!matches("*", &system));
                prop_assert!(matches("webhooks.*", &system));
            }
        }
    }
}
