//! Every exit status synscope returns, in one place (documented in
//! `synscope --help`, cli::EXIT_CODES).

/// The command's expectation held (ping: the port answered as `--expect`
/// says; trace: every connection succeeded; path: the destination answered;
/// dns: every check passed; scan: the scan ran to its end).
pub const OK: u8 = 0;
/// It did not (or the run was interrupted: what was seen so far is printed).
pub const FAILED: u8 = 1;
/// An interrupted run (SIGINT, SIGTERM): the summary so far is printed.
pub const INTERRUPTED: u8 = 1;
/// The command could not run: bad arguments, missing privileges, an I/O error.
pub const USAGE: u8 = 2;
/// dns: no answer at all came back.
pub const NO_ANSWER: u8 = 3;
/// dns bulk: some input lines could not be read as queries.
pub const BAD_LINES: u8 = 2;

/// [`OK`] when the expectation held, else [`FAILED`].
pub fn of(ok: bool) -> u8 {
    if ok { OK } else { FAILED }
}
