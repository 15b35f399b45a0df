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
