//! Every namespace-lab test says why it skips when not root, instead of
//! failing (or, worse, passing without a word): each `#[test]` in a lab test
//! file starts with `synscope_lab::skip_unless_root`. `scripts/root_guard.py`
//! adds the line where it is missing. Needs no root.

const NO_ROOT: &[&str] = &["cli_errors.rs", "man_page.rs", "root_guard.rs"];

#[test]
fn every_lab_test_starts_with_the_root_guard() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".rs") || NO_ROOT.contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim() != "#[test]" {
                continue;
            }
            // the fn line (after other attributes), then its first statement
            let Some(f) = (i + 1..lines.len()).find(|&j| {
                lines[j].trim_start().starts_with("fn ")
                    || lines[j].trim_start().starts_with("async fn ")
            }) else {
                continue;
            };
            let body = lines.get(f + 1).map(|l| l.trim()).unwrap_or("");
            if !body.starts_with("if synscope_lab::skip_unless_root(") {
                missing.push(format!("{name}:{}: {}", f + 1, lines[f].trim()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "lab tests without the root guard (run scripts/root_guard.py):\n{}",
        missing.join("\n")
    );
}
