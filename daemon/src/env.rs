//! Environment variables: the names of earlier releases accepted beside
//! the current ones.

/// The value `name` should have: its own when set (even empty: the user
/// chose it), else the first alias in `aliases` that is set. `lookup`
/// reads a variable (the process environment in [`apply_env_aliases`]).
pub fn aliased_value(
    name: &str,
    aliases: &[&str],
    lookup: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    lookup(name).or_else(|| aliases.iter().find_map(|a| lookup(a)))
}

/// Sets each variable of `table` (`(name, its older names)`) from its first
/// older name that is set, when the variable itself is unset, so that clap
/// (one environment name per flag) accepts the names of earlier releases.
/// Call first thing in `main`, before any thread starts.
pub fn apply_env_aliases(table: &[(&str, &[&str])]) {
    let lookup = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
    for (name, aliases) in table {
        if std::env::var_os(name).is_some() {
            continue;
        }
        if let Some(v) = aliased_value(name, aliases, lookup) {
            std::env::set_var(name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn aliases_fill_in_only_when_the_name_is_unset() {
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let aliases = ["MANAGER_LOG_FORMAT", "DEPLOYER_LOG_FORMAT"];
        let cases: &[Case] = &[
            (&[], None),
            (&[("LOG_FORMAT", "json")], Some("json")),
            (&[("MANAGER_LOG_FORMAT", "json")], Some("json")),
            (&[("DEPLOYER_LOG_FORMAT", "json")], Some("json")),
            (
                &[("LOG_FORMAT", "text"), ("MANAGER_LOG_FORMAT", "json")],
                Some("text"),
            ),
            (
                &[
                    ("MANAGER_LOG_FORMAT", "json"),
                    ("DEPLOYER_LOG_FORMAT", "text"),
                ],
                Some("json"),
            ),
            (
                &[("LOG_FORMAT", ""), ("MANAGER_LOG_FORMAT", "json")],
                Some(""),
            ),
        ];
        for (vars, want) in cases {
            let vars = env(vars);
            let got = aliased_value("LOG_FORMAT", &aliases, |k| vars.get(k).cloned());
            assert_eq!(got.as_deref(), *want, "{vars:?}");
        }
    }
}
