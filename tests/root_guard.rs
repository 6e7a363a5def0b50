//! Every namespace-lab test says why it skips when not root, instead of
//! failing (or, worse, passing without a word): each test in a lab test file
//! starts with `synscope_lab::skip_unless_root("ITS NAME")`. Needs no root.
//!
//! This file is the one definition of "a test" and of "starts with": a line
//! `#[test]` (any indentation), then any more attribute lines, then its
//! `fn` / `async fn` line; the signature ends at the first line ending in
//! `{`, and the body's first statement must be the guard, naming the function.
//! To add the missing guards (then `cargo fmt`):
//!
//!   SYNSCOPE_UPDATE_ROOT_GUARD=1 cargo test --test root_guard

/// Test files whose tests need no root.
const NO_ROOT: &[&str] = &["cli_errors.rs", "man_page.rs", "root_guard.rs"];

const GUARD: &str = "if synscope_lab::skip_unless_root(";

/// One test found in a file.
struct TestFn {
    /// Its name.
    name: String,
    /// The index of the line holding its `fn`.
    fn_line: usize,
    /// The index of its body's first line.
    body: usize,
    /// The name its guard gives; None: no guard.
    guarded_as: Option<String>,
}

/// The tests of `lines`, by the rule in the module's doc.
fn tests_of(lines: &[&str]) -> Vec<TestFn> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "#[test]" {
            continue;
        }
        let mut f = i + 1;
        while lines
            .get(f)
            .is_some_and(|l| l.trim_start().starts_with("#["))
        {
            f += 1;
        }
        let Some(sig) = lines.get(f).map(|l| l.trim_start()) else {
            continue;
        };
        let Some(rest) = sig
            .strip_prefix("fn ")
            .or_else(|| sig.strip_prefix("async fn "))
        else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let Some(open) = (f..lines.len()).find(|&j| lines[j].trim_end().ends_with('{')) else {
            continue;
        };
        // the guard may be wrapped by rustfmt: read a few lines of the body as one
        let start: String = lines[open + 1..lines.len().min(open + 4)]
            .iter()
            .map(|l| l.trim())
            .collect();
        let guarded_as = start
            .strip_prefix(GUARD)
            .and_then(|r| r.strip_prefix('"'))
            .and_then(|r| r.split('"').next())
            .map(str::to_string);
        out.push(TestFn {
            name,
            fn_line: f,
            body: open + 1,
            guarded_as,
        });
    }
    out
}

#[test]
fn every_lab_test_starts_with_the_root_guard() {
    let update = std::env::var_os("SYNSCOPE_UPDATE_ROOT_GUARD").is_some();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut wrong = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".rs") || NO_ROOT.contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let tests = tests_of(&lines);
        let mut insert = Vec::new();
        for t in &tests {
            match &t.guarded_as {
                Some(g) if *g == t.name => {}
                Some(g) => wrong.push(format!(
                    "{name}:{}: {}: the guard names {g:?}",
                    t.fn_line + 1,
                    t.name
                )),
                None if update => insert.push(t),
                None => wrong.push(format!(
                    "{name}:{}: {}: no root guard",
                    t.fn_line + 1,
                    t.name
                )),
            }
        }
        if insert.is_empty() {
            continue;
        }
        let mut out: Vec<String> = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some(t) = insert.iter().find(|t| t.body == i) {
                let indent =
                    " ".repeat(lines[t.fn_line].len() - lines[t.fn_line].trim_start().len());
                out.push(format!("{indent}    {GUARD}\"{}\") {{", t.name));
                out.push(format!("{indent}        return;"));
                out.push(format!("{indent}    }}"));
            }
            out.push(l.to_string());
        }
        let mut new = out.join("\n");
        if text.ends_with('\n') {
            new.push('\n');
        }
        std::fs::write(&path, new).unwrap();
        eprintln!("{name}: {} guards added", insert.len());
    }
    assert!(
        wrong.is_empty(),
        "lab tests without their root guard (SYNSCOPE_UPDATE_ROOT_GUARD=1 cargo test --test \
         root_guard adds the missing ones):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_rule_finds_tests_as_documented() {
    let src = "#[test]\n#[ignore = \"slow\"]\nfn a() {\n    if synscope_lab::skip_unless_root(\"a\") {\n        return;\n    }\n}\n\
               mod m {\n    #[test]\n    fn b() -> Result<(), String> {\n        let x = 1;\n    }\n}\n\
               #[test]\nfn c() {\n    if synscope_lab::skip_unless_root(\n        \"c\",\n    ) {\n\
               #[test]\nfn d() {\n    if synscope_lab::skip_unless_root(\"a\") {\n\
               fn not_a_test() {\n";
    let lines: Vec<&str> = src.lines().collect();
    let found: Vec<(String, Option<String>)> = tests_of(&lines)
        .into_iter()
        .map(|t| (t.name, t.guarded_as))
        .collect();
    let s = |v: &str| v.to_string();
    assert_eq!(
        found,
        vec![
            (s("a"), Some(s("a"))),
            (s("b"), None),
            (s("c"), Some(s("c"))),
            (s("d"), Some(s("a"))),
        ]
    );
}
