//! The `synscope` binary: arguments in, one clear line and a documented exit
//! status out on any error (see `synscope --help`).

use clap::{CommandFactory, Parser};
use std::process::ExitCode;
use synscope::cli::{Cli, Command, SystemEnv};
use synscope::cmd::status::{self, USAGE as EXIT_USAGE};
use synscope::cmd::{self, CmdError, Log, runtime};

/// mimalloc: per-thread free lists that take frees from other threads without
/// a lock (bulk DNS parses replies on one thread and drops them on another),
/// and fewer instructions per allocation than glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    return ExitCode::from(
                        if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                            EXIT_USAGE
                        } else {
                            0
                        },
                    );
                }
                _ => {
                    // one line, like every other error: clap's first line, without its usage block
                    let text = e.render().to_string();
                    let mut lines = text.lines();
                    let mut first = lines
                        .next()
                        .unwrap_or("bad arguments")
                        .trim_start_matches("error: ")
                        .to_string();
                    // "required arguments were not provided:" lists them below
                    if first.ends_with(':') {
                        let more: Vec<&str> = lines
                            .take_while(|l| !l.trim().is_empty())
                            .map(str::trim)
                            .collect();
                        first = format!("{first} {}", more.join(", "));
                    }
                    eprintln!(
                        "synscope: {first} (see {})",
                        help_for(command_in_args().as_deref())
                    );
                    return ExitCode::from(EXIT_USAGE);
                }
            }
        }
    };
    let global = cli.global;
    let log = Log {
        verbose: global.verbose,
    };
    cmd::set_quiet(global.quiet);
    let env = SystemEnv;
    let result: Result<u8, CmdError> = match &cli.command {
        Command::Ping(args) => args
            .settings(&env, global)
            .map_err(CmdError::from)
            .and_then(|s| {
                let mut out = std::io::stdout().lock();
                runtime()?
                    .block_on(cmd::ping::run(&s, &mut out, log))
                    .map(|sum| exit(sum.expectation_met))
            }),
        Command::Scan(args) => args
            .settings(&env, global)
            .map_err(CmdError::from)
            .and_then(|s| cmd::scan::run(&s, log))
            .map(|sum| exit(!sum.interrupted)),
        Command::Dns(args) => args
            .settings(&env, global)
            .map_err(CmdError::from)
            .and_then(|s| {
                let mut out = std::io::stdout().lock();
                // dns has its own statuses: 0 pass, 1 check failed, 3 no answer
                runtime()?.block_on(cmd::dns::run(&s, &mut out, log))
            }),
        Command::Trace(args) => args.settings(&env).map_err(CmdError::from).and_then(|s| {
            let mut out = std::io::stdout().lock();
            runtime()?
                .block_on(cmd::trace::run(&s, &mut out, log))
                .map(|sum| exit(sum.all_succeeded))
        }),
        Command::Path(args) => args.settings(&env).map_err(CmdError::from).and_then(|s| {
            let mut out = std::io::stdout().lock();
            runtime()?
                .block_on(cmd::path::run(&s, &mut out, log))
                .map(|sum| exit(sum.reached && !sum.interrupted))
        }),
        #[cfg(feature = "demo")]
        Command::Demo(args) => cmd::demo::run(args).map(exit),
        Command::Exporter(args) => {
            runtime().and_then(|rt| rt.block_on(cmd::exporter::run(&args.settings(), log)))
        }
        Command::Completions(args) => {
            synscope::cli::completions::write(args.shell, &mut std::io::stdout().lock())
                .map(|()| 0)
                .map_err(CmdError::Output)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(CmdError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e @ CmdError::Usage(_)) => {
            let name = cli.command.name();
            eprintln!("synscope: {} (see {})", e.line(), help_for(Some(name)));
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("synscope: {}", e.line());
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Where a usage error sends the user: the subcommand's help, else the top one.
fn help_for(command: Option<&str>) -> String {
    match command {
        Some(name) => format!("synscope {name} --help"),
        None => "synscope --help".to_string(),
    }
}

/// The subcommand named on the command line (the first word that is not a
/// global flag), when it is one: clap's errors do not say which it was.
fn command_in_args() -> Option<String> {
    let word = std::env::args().skip(1).find(|a| {
        !matches!(
            a.as_str(),
            "-v" | "--verbose" | "-q" | "--quiet" | "-vq" | "-qv"
        )
    })?;
    Cli::command()
        .get_subcommands()
        .map(|c| c.get_name())
        .find(|n| *n == word)
        .map(str::to_string)
}

/// 0 when the command's expectation held, 1 when not.
fn exit(ok: bool) -> u8 {
    status::of(ok)
}
