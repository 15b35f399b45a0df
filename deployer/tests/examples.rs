//! Every example document validates and translates.

use deployer::apply;
use deployer::parse::{Format, Limits};
use deployer::translate::TranslateConfig;

#[test]
fn examples_are_valid() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read(&path).unwrap();
        let doc = apply::load(&body, Format::Yaml, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let (desired, removals) = apply::prepare(&doc, &TranslateConfig::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        assert!(
            !desired.is_empty() || !removals.is_empty(),
            "{}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 4);
}

/// deployer/README.md says `examples/everything.yaml` uses every field of a
/// service spec and its table describes each: both hold for every field the
/// parser accepts.
#[test]
fn everything_yaml_uses_and_readme_describes_every_field() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read_to_string(root.join("examples/everything.yaml")).unwrap();
    let doc = deployer::parse::parse(
        body.as_bytes(),
        deployer::parse::Format::Yaml,
        &deployer::parse::Limits::default(),
    )
    .unwrap();
    let used: std::collections::BTreeSet<String> = doc["deploy"]
        .as_object()
        .expect("everything.yaml has deploy:")
        .values()
        .flat_map(|spec| spec.as_object().expect("a spec is a mapping").keys())
        .cloned()
        .collect();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut problems = Vec::new();
    for field in deployer::spec::SERVICE_FIELDS {
        if !used.contains(*field) {
            problems.push(format!("examples/everything.yaml does not use `{field}`"));
        }
        // A row of the field table: `| `field` |` or `| `a`, `field`, ... |`.
        let described = readme.lines().any(|l| {
            l.starts_with("| `")
                && l.split('|').nth(1).is_some_and(|cell| {
                    cell.split(',')
                        .any(|name| name.trim().trim_matches('`') == *field)
                })
        });
        if !described {
            problems.push(format!("deployer/README.md's field table lacks `{field}`"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
