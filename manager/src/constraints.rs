//! Placement constraints: validation with Marathon's messages and the
//! placement decision on this node (its hostname and `--node-attribute`s).

use std::collections::BTreeMap;

use regex::Regex;

const OPERATORS: &str =
    "operator must be one of the following UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS";

/// Checks one constraint (`[field, OP]` or `[field, OP, value]`).
pub fn validate(c: &[String]) -> Result<(), String> {
    if c.len() != 2 && c.len() != 3 {
        return Err("Each constraint must have either 2 or 3 fields".into());
    }
    let value = c.get(2);
    match c[1].as_str() {
        "UNIQUE" => match value {
            Some(_) => Err("UNIQUE does not accept a value".into()),
            None => Ok(()),
        },
        "CLUSTER" => Ok(()),
        "GROUP_BY" => match value {
            Some(v) if v.parse::<u32>().is_err() => {
                Err("GROUP BY must define an integer value or else no value at all".into())
            }
            _ => Ok(()),
        },
        "LIKE" | "UNLIKE" => match value {
            Some(v) if !v.is_empty() && Regex::new(&format!("^(?:{v})$")).is_ok() => Ok(()),
            _ => Err("LIKE and UNLIKE require a non-empty, regular expression value".into()),
        },
        "MAX_PER" => match value {
            Some(v) if v.parse::<u32>().is_ok() => Ok(()),
            _ => Err("MAX_PER requires an integer value".into()),
        },
        "IS" => match value {
            Some(v) if v.chars().all(|c| c.is_ascii_alphanumeric() || "_/.-".contains(c)) => Ok(()),
            _ => Err("IS only supports Mesos text and float values (see http://mesos.apache.org/documentation/latest/attributes-resources/)".into()),
        },
        _ => Err(OPERATORS.into()),
    }
}

/// Whether one more task of an app with these constraints may run on this
/// node, given how many of its tasks already run here.
pub fn allows(
    constraints: &[Vec<String>],
    node: &BTreeMap<String, String>,
    tasks_here: usize,
) -> bool {
    constraints.iter().all(|c| {
        let field = c[0].trim_start_matches('@');
        let attr = node.get(field);
        let value = c.get(2);
        match c[1].as_str() {
            "UNIQUE" => attr.is_some() && tasks_here == 0,
            "CLUSTER" => match (attr, value) {
                (Some(a), Some(v)) if !v.is_empty() => a == v,
                (Some(_), _) => true,
                (None, _) => false,
            },
            "GROUP_BY" => attr.is_some(),
            "LIKE" => match (attr, value) {
                (Some(a), Some(v)) => full_match(v, a),
                _ => false,
            },
            "UNLIKE" => match (attr, value) {
                (Some(a), Some(v)) => !full_match(v, a),
                _ => true,
            },
            "MAX_PER" => {
                attr.is_some()
                    && value
                        .and_then(|v| v.parse::<usize>().ok())
                        .is_some_and(|n| tasks_here < n)
            }
            "IS" => match (attr, value) {
                (Some(a), Some(v)) => a == v || scalar_eq(a, v),
                _ => false,
            },
            _ => false,
        }
    })
}

fn full_match(pattern: &str, value: &str) -> bool {
    Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(value))
}

fn scalar_eq(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x * 1000.0).round() == (y * 1000.0).round(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn validation() {
        let cases: Vec<(Vec<String>, Option<&str>)> = vec![
            (c(&["hostname", "UNIQUE"]), None),
            (
                c(&["hostname", "UNIQUE", "x"]),
                Some("UNIQUE does not accept a value"),
            ),
            (
                c(&["hostname"]),
                Some("Each constraint must have either 2 or 3 fields"),
            ),
            (c(&["hostname", "NOPE"]), Some(OPERATORS)),
            (
                c(&["rack", "GROUP_BY", "x"]),
                Some("GROUP BY must define an integer value or else no value at all"),
            ),
            (c(&["rack", "GROUP_BY", "3"]), None),
            (
                c(&["rack", "LIKE", ""]),
                Some("LIKE and UNLIKE require a non-empty, regular expression value"),
            ),
            (c(&["rack", "LIKE", "r[0-9]"]), None),
            (
                c(&["rack", "MAX_PER", "x"]),
                Some("MAX_PER requires an integer value"),
            ),
            (c(&["rack", "IS", "a b"]), Some("IS only supports")),
            (c(&["rack", "IS", "a-1"]), None),
        ];
        for (con, want) in cases {
            match (validate(&con), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.starts_with(w), "{con:?}: {e}"),
                (got, want) => panic!("{con:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn placement() {
        let node: BTreeMap<String, String> = [
            ("hostname".to_string(), "node-1".to_string()),
            ("rack".to_string(), "r1".to_string()),
        ]
        .into();
        let cases: Vec<(Vec<String>, usize, bool)> = vec![
            (c(&["hostname", "UNIQUE"]), 0, true),
            (c(&["hostname", "UNIQUE"]), 1, false),
            (c(&["@hostname", "CLUSTER", "node-1"]), 3, true),
            (c(&["hostname", "CLUSTER", "node-2"]), 0, false),
            (c(&["rack", "LIKE", "r[0-9]"]), 0, true),
            (c(&["rack", "UNLIKE", "r[0-9]"]), 0, false),
            (c(&["zone", "UNLIKE", "z"]), 0, true),
            (c(&["zone", "LIKE", "z"]), 0, false),
            (c(&["rack", "MAX_PER", "2"]), 1, true),
            (c(&["rack", "MAX_PER", "2"]), 2, false),
            (c(&["rack", "IS", "r1"]), 0, true),
            (c(&["rack", "IS", "r2"]), 0, false),
            (c(&["rack", "GROUP_BY"]), 5, true),
        ];
        for (con, here, want) in cases {
            assert_eq!(
                allows(std::slice::from_ref(&con), &node, here),
                want,
                "{con:?} with {here}"
            );
        }
    }
}
