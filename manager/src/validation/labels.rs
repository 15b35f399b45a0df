//! The `label` query of `GET /v2/apps`: label selectors.

use std::collections::BTreeMap;

/// Labels filter (`label` query): comma = AND; `k`, `k==v`, `k!=v`,
/// `k in (a,b)`, `k notin (a,b)`.
pub fn label_selector_matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    split_selector(selector).iter().all(|term| {
        let term = term.trim();
        if term.is_empty() {
            return true;
        }
        if let Some((k, v)) = term.split_once("==") {
            return labels.get(&unescape(k.trim())) == Some(&unescape(v.trim()));
        }
        if let Some((k, v)) = term.split_once("!=") {
            return labels.get(&unescape(k.trim())) != Some(&unescape(v.trim()));
        }
        for (op, negate) in [(" notin ", true), (" in ", false)] {
            if let Some((k, set)) = term.split_once(op) {
                let set = set.trim().trim_start_matches('(').trim_end_matches(')');
                let values: Vec<String> = set.split(',').map(|s| unescape(s.trim())).collect();
                let hit = labels
                    .get(&unescape(k.trim()))
                    .is_some_and(|v| values.contains(v));
                return hit != negate;
            }
        }
        labels.contains_key(&unescape(term))
    })
}

fn split_selector(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0;
    let mut escaped = false;
    for c in s.chars() {
        let cur = out.last_mut().expect("non-empty");
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(String::new()),
            _ => cur.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let labels: BTreeMap<String, String> = [
            ("env".to_string(), "prod".to_string()),
            ("tier".to_string(), "web".to_string()),
        ]
        .into();
        let cases = [
            ("env", true),
            ("missing", false),
            ("env==prod", true),
            ("env==dev", false),
            ("env!=dev", true),
            ("env in (dev, prod)", true),
            ("env notin (dev, prod)", false),
            ("env==prod,tier==web", true),
            ("env==prod,tier==db", false),
        ];
        for (sel, want) in cases {
            assert_eq!(label_selector_matches(sel, &labels), want, "{sel}");
        }
    }
}
