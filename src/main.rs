//! The `synscope` binary: arguments in, one clear line and a documented exit
//! status out on any error (see `synscope --help`).

use clap::Parser;
use std::process::ExitCode;
use synscope::cli::{Cli, Command};
use synscope::cmd::{self, CmdError, Log};

const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => EXIT_USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let log = Log {
        verbose: cli.verbose,
    };
    let result: Result<bool, CmdError> = match &cli.command {
        Command::Ping(args) => args
            .settings(cli.verbose)
            .map_err(CmdError::from)
            .and_then(|s| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| CmdError::Setup(format!("start runtime: {e}")))?;
                let mut out = std::io::stdout().lock();
                rt.block_on(cmd::ping::run(&s, &mut out, log))
                    .map(|sum| sum.expectation_met)
            }),
        Command::Trace(args) => args.settings().map_err(CmdError::from).and_then(|s| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CmdError::Setup(format!("start runtime: {e}")))?;
            let mut out = std::io::stdout().lock();
            rt.block_on(cmd::trace::run(&s, &mut out, log))
                .map(|sum| sum.all_succeeded)
        }),
        Command::Demo(args) => cmd::demo::run(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(CmdError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("synscope: {}", e.line());
            ExitCode::from(EXIT_USAGE)
        }
    }
}
