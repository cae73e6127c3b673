//! `Accept-Language` as the preferences it states (RFC 9110 §12.5.4): a
//! set of language ranges, each with a weight (§12.4.2). The order of the
//! members and the spelling of a weight (`q=0.8`, `q=0.80`, no `q` for 1)
//! say nothing more, so requests stating the same preferences share a
//! variant; different preferences never do.

/// The canonical form of an `Accept-Language` value already folded to
/// lower case with spaces trimmed (see `normalized_header`): members
/// ordered by weight, highest first, then by range; weights written
/// shortest, `q=1` left out. `None` when a member is not a language range
/// with at most a weight, or there is none: the value then keys as sent.
pub(super) fn canonical(value: &str) -> Option<String> {
    let mut preferences = Vec::new();
    for member in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        preferences.push(preference(member)?);
    }
    if preferences.is_empty() {
        return None;
    }
    preferences.sort_by(|(a_range, a_weight), (b_range, b_weight)| {
        b_weight.cmp(a_weight).then_with(|| a_range.cmp(b_range))
    });
    preferences.dedup();
    let mut out = String::with_capacity(value.len());
    for (range, weight) in preferences {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(range);
        if weight < 1000 {
            let digits = format!("{weight:03}");
            out.push_str(";q=0.");
            out.push_str(digits.trim_end_matches('0'));
            if weight == 0 {
                out.truncate(out.len() - 1); // `q=0`, not `q=0.`
            }
        }
    }
    Some(out)
}

/// `language-range [ ";" "q=" qvalue ]`, the weight in thousandths.
fn preference(member: &str) -> Option<(&str, u16)> {
    let mut parts = member.split(';').map(str::trim);
    let range = parts.next()?;
    if !is_language_range(range) {
        return None;
    }
    let weight = match parts.next() {
        None => 1000,
        Some(parameter) => weight(parameter.strip_prefix("q=")?)?,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((range, weight))
}

/// RFC 4647 §2.1: `"*"`, or `1*8ALPHA *("-" 1*8alphanum)`.
fn is_language_range(range: &str) -> bool {
    if range == "*" {
        return true;
    }
    let mut subtags = range.split('-');
    let first = subtags.next().unwrap_or("");
    let alpha = |s: &str| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphabetic());
    let alphanum =
        |s: &str| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric());
    alpha(first) && subtags.all(alphanum)
}

/// RFC 9110 §12.4.2 qvalue, in thousandths.
fn weight(qvalue: &str) -> Option<u16> {
    crate::compression::qvalue(qvalue)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_preferences_have_one_form() {
        for value in [
            "en,fr;q=0.8",
            "fr;q=0.8,en",
            "en;q=1.0,fr;q=0.80",
            "en;q=1,fr;q=0.800",
            "fr;q=0.8,en;q=1.000",
        ] {
            assert_eq!(canonical(value).as_deref(), Some("en,fr;q=0.8"), "{value}");
        }
        assert_eq!(
            canonical("en,de"),
            canonical("de,en"),
            "equal weights: a set"
        );
        assert_eq!(canonical("de,en").as_deref(), Some("de,en"));
        assert_eq!(
            canonical("*;q=0,en-us;q=0.05").as_deref(),
            Some("en-us;q=0.05,*;q=0")
        );
        assert_eq!(canonical("en,en").as_deref(), Some("en"));
    }

    #[test]
    fn different_preferences_stay_apart() {
        let en_fr = canonical("en,fr;q=0.8");
        for other in [
            "en,fr;q=0.5",
            "fr,en;q=0.8",
            "en",
            "en,fr",
            "en-gb,fr;q=0.8",
            "en,fr;q=0",
        ] {
            assert_ne!(canonical(other), en_fr, "{other}");
        }
    }

    #[test]
    fn what_is_not_a_preference_list_is_left_as_sent() {
        for value in [
            "",
            "en;q=2",
            "en;q=1.5",
            "en;q=0.1234",
            "en;q=",
            "en;level=1",
            "en;q=0.5;q=0.4",
            "en_us",
            "toolongsubtag",
            "en--us",
            "-en",
            "1en",
        ] {
            assert_eq!(canonical(value), None, "{value:?}");
        }
    }
}
