//! `synscope completions SHELL`: a completion script for bash, zsh or fish
//! (clap_complete), generated from the same definitions as `--help`.

use clap::{Args, CommandFactory, ValueEnum};

pub const ABOUT: &str = "Print a shell completion script (bash, zsh, fish).";

pub const LONG_ABOUT: &str = "\
Print a shell completion script (bash, zsh, fish) on stdout.

Examples:
  synscope completions bash > /etc/bash_completion.d/synscope
  synscope completions zsh > \"${fpath[1]}/_synscope\"
  synscope completions fish > ~/.config/fish/completions/synscope.fish
  source <(synscope completions bash)          # this shell only";

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells a script is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Writes the completion script for `shell`.
pub fn write(shell: Shell, out: &mut dyn std::io::Write) {
    use clap_complete::shells;
    let mut cmd = super::Cli::command();
    match shell {
        Shell::Bash => clap_complete::generate(shells::Bash, &mut cmd, "synscope", out),
        Shell::Zsh => clap_complete::generate(shells::Zsh, &mut cmd, "synscope", out),
        Shell::Fish => clap_complete::generate(shells::Fish, &mut cmd, "synscope", out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_names_every_command_and_shared_flag() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut buf = Vec::new();
            write(shell, &mut buf);
            let text = String::from_utf8(buf).unwrap();
            for word in [
                "ping",
                "scan",
                "trace",
                "dns",
                "path",
                "ndjson",
                "source-port",
            ] {
                assert!(text.contains(word), "{shell:?}: no {word}");
            }
        }
    }
}
