//! The committed man pages are generated from the clap definitions; this test
//! fails when they are stale. Regenerate with:
//!   SYNSCOPE_UPDATE_MAN=1 cargo test --test man_page

use clap::CommandFactory;
use std::path::Path;

/// The usual sections, with the command's `after_long_help` (its exit codes)
/// as a proper EXIT STATUS section instead of clap_mangen's EXTRA, and a
/// SYNOPSIS as the user types it: `synscope scan [OPTIONS] [TARGET]...`.
fn render(cmd: clap::Command, usage: &str) -> String {
    let extra = cmd.get_after_long_help().map(|h| h.to_string());
    let man = clap_mangen::Man::new(cmd.clone());
    let mut buf = Vec::new();
    man.render_title(&mut buf).unwrap();
    man.render_name_section(&mut buf).unwrap();
    buf.extend_from_slice(synopsis(usage).as_bytes());
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

/// clap's usage line (`Usage: synscope scan [OPTIONS] [TARGET]...`) as roff:
/// the command in bold, placeholders in italics.
fn synopsis(usage: &str) -> String {
    let usage = usage.trim().trim_start_matches("Usage: ");
    let mut out = String::from(".SH SYNOPSIS\n");
    let mut words = usage.split(' ').peekable();
    let mut bold = Vec::new();
    while let Some(w) = words.next_if(|w| !w.starts_with(['[', '<'])) {
        bold.push(w);
    }
    out.push_str(&format!("\\fB{}\\fR", bold.join(" ")));
    for w in words {
        if w.starts_with('-') {
            out.push_str(&format!(" \\fB{}\\fR", w.replace('-', "\\-")));
            continue;
        }
        let mut roff = String::new();
        let mut chars = w.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '<' => roff.push_str("\\fI"),
                '>' => roff.push_str("\\fR"),
                '[' if chars.peek().is_some_and(|c| c.is_ascii_uppercase()) => {
                    roff.push_str("[\\fI");
                    // [OPTIONS]: close the italics before the bracket
                    let rest: String = chars.by_ref().take_while(|c| *c != ']').collect();
                    roff.push_str(&rest);
                    roff.push_str("\\fR]");
                }
                '-' => roff.push_str("\\-"),
                c => roff.push(c),
            }
        }
        out.push(' ');
        out.push_str(&roff);
    }
    out.push('\n');
    out
}

fn pages() -> Vec<(String, String)> {
    // no `help` subcommand in the pages: `synscope help` is --help, not a page
    let mut top = synscope::cli::Cli::command().disable_help_subcommand(true);
    top.build();
    let usage = top.render_usage().to_string();
    let mut pages = vec![("synscope.1".to_string(), render(top.clone(), &usage))];
    for sub in top.get_subcommands() {
        let usage = sub.clone().render_usage().to_string();
        let name = format!("synscope-{}", sub.get_name());
        let cmd = sub
            .clone()
            .name(name.clone().leak() as &str)
            .version(env!("CARGO_PKG_VERSION"));
        pages.push((format!("{name}.1"), render(cmd, &usage)));
    }
    pages
}

#[test]
fn synopsis_shows_how_the_command_is_typed() {
    for (file, text) in pages() {
        assert!(!text.contains("synscope\\-help"), "{file}");
        let syn = text
            .split(".SH SYNOPSIS\n")
            .nth(1)
            .unwrap()
            .lines()
            .next()
            .unwrap();
        assert!(syn.starts_with("\\fBsynscope"), "{file}: {syn}");
        assert!(syn.contains("[\\fIOPTIONS\\fR]"), "{file}: {syn}");
    }
    let scan = pages()
        .into_iter()
        .find(|(f, _)| f == "synscope-scan.1")
        .unwrap()
        .1;
    assert!(
        scan.contains(
            ".SH SYNOPSIS\n\\fBsynscope scan\\fR [\\fIOPTIONS\\fR] [\\fITARGET\\fR]...\n"
        ),
        "{scan}"
    );
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
