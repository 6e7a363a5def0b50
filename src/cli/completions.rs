//! `synscope completions SHELL`: a completion script for bash, zsh or fish
//! (clap_complete), generated from the same definitions as `--help`.

use clap::{Args, CommandFactory, ValueEnum};

/// The one-line help of `synscope completions`.
pub const ABOUT: &str = "Print a shell completion script (bash, zsh, fish).";

/// The long help of `synscope completions`.
pub const LONG_ABOUT: &str = "\
Print a shell completion script (bash, zsh, fish) on stdout.

Examples:
  synscope completions bash > /etc/bash_completion.d/synscope
  synscope completions zsh > \"${fpath[1]}/_synscope\"
  synscope completions fish > ~/.config/fish/completions/synscope.fish
  source <(synscope completions bash)          # this shell only";

/// Arguments of `synscope completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells a script is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
// the variants' docs are not --help text (help = None): the argument's help names them
pub enum Shell {
    /// GNU bash.
    #[value(help = None)]
    Bash,
    /// Z shell.
    #[value(help = None)]
    Zsh,
    /// fish.
    #[value(help = None)]
    Fish,
}

/// Writes the completion script for `shell` (built in memory first:
/// clap_complete panics on a failed write, e.g. a closed pipe).
pub fn write(shell: Shell, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap_complete::shells;
    let mut cmd = super::Cli::command();
    let mut buf = Vec::new();
    match shell {
        Shell::Bash => clap_complete::generate(shells::Bash, &mut cmd, "synscope", &mut buf),
        Shell::Zsh => clap_complete::generate(shells::Zsh, &mut cmd, "synscope", &mut buf),
        Shell::Fish => clap_complete::generate(shells::Fish, &mut cmd, "synscope", &mut buf),
    }
    out.write_all(&buf)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_names_every_command_and_shared_flag() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut buf = Vec::new();
            write(shell, &mut buf).unwrap();
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
