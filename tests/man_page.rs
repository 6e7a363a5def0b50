//! The committed man pages are generated from the clap definitions; this test
//! fails when they are stale. Regenerate with:
//!   SYNSCOPE_UPDATE_MAN=1 cargo test --test man_page

use clap::CommandFactory;
use std::path::Path;

/// The usual sections, with the command's `after_long_help` (its exit codes)
/// as a proper EXIT STATUS section instead of clap_mangen's EXTRA.
fn render(cmd: clap::Command) -> String {
    let extra = cmd.get_after_long_help().map(|h| h.to_string());
    let man = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf).unwrap();
    man.render_name_section(&mut buf).unwrap();
    man.render_synopsis_section(&mut buf).unwrap();
    man.render_description_section(&mut buf).unwrap();
    man.render_options_section(&mut buf).unwrap();
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut buf).unwrap();
    }
    if let Some(text) = extra {
        let body = text.strip_prefix("EXIT STATUS:\n").unwrap_or(&text);
        let escaped = body.replace('\\', "\\\\").replace('-', "\\-");
        buf.extend_from_slice(format!(".SH \"EXIT STATUS\"\n.nf\n{escaped}\n.fi\n").as_bytes());
    }
    man.render_version_section(&mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

fn pages() -> Vec<(String, String)> {
    let top = synscope::cli::Cli::command();
    let mut pages = vec![("synscope.1".to_string(), render(top.clone()))];
    for sub in top.get_subcommands() {
        let name = format!("synscope-{}", sub.get_name());
        let cmd = sub
            .clone()
            .name(name.clone().leak() as &str)
            .version(env!("CARGO_PKG_VERSION"));
        pages.push((format!("{name}.1"), render(cmd)));
    }
    pages
}

#[test]
fn man_pages_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("SYNSCOPE_UPDATE_MAN").is_some();
    for (file, text) in pages() {
        let path = dir.join(&file);
        if update {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "man/{file} is stale: run SYNSCOPE_UPDATE_MAN=1 cargo test --test man_page"
        );
    }
}
