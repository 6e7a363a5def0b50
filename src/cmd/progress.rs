//! The progress bar of long runs (scan, bulk dns): indicatif on stderr, with
//! the rate and, when the total is known, the time left. Drawn only when the
//! settings say so (stderr is a terminal, no --quiet, no --no-progress); off,
//! it costs a branch per update.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

/// How often the bar's text is recomputed (indicatif redraws at most as often).
const EVERY: Duration = Duration::from_millis(200);

/// The bar of one run, or nothing.
pub(crate) struct Bar {
    bar: Option<ProgressBar>,
    last: Instant,
}

impl Bar {
    /// A bar over `total` items (`unit`: "probes", "names"), or with no total
    /// a counter with a rate; `on` false draws nothing.
    pub fn new(on: bool, total: Option<u64>, unit: &str) -> Bar {
        let bar = on.then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(5));
            bar.set_style(style(total.is_some(), unit));
            bar
        });
        Bar {
            bar,
            last: Instant::now() - EVERY,
        }
    }

    /// Items done so far and the text after the bar (`msg` is called only
    /// when the bar is drawn and due).
    pub fn update(&mut self, done: u64, msg: impl FnOnce() -> String) {
        let Some(bar) = &self.bar else { return };
        if self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        bar.set_message(msg());
        bar.set_position(done);
    }

    /// Leaves the last state on the screen, on its own line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

fn style(known_total: bool, unit: &str) -> ProgressStyle {
    ProgressStyle::with_template(&template(known_total, unit))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// With a total: bar, percent, done/total, rate, time left; without: a spinner and the rate.
fn template(known_total: bool, unit: &str) -> String {
    if known_total {
        format!(
            "[{{elapsed_precise}}] {{wide_bar}} {{percent:>3}}% {{human_pos}}/{{human_len}} {unit}  {{per_sec:0}}  ETA {{eta}}  {{msg}}"
        )
    } else {
        format!("[{{elapsed_precise}}] {{spinner}} {{human_pos}} {unit}  {{per_sec:0}}  {{msg}}")
    }
}

/// The lines of a regular file (a bulk input's total), counted when a bar is
/// drawn; None for stdin or a file that cannot be read (the run says why).
pub(crate) fn count_lines(path: &std::path::Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Some(lines + u64::from(last != b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_templates_are_valid() {
        for known in [true, false] {
            let t = template(known, "probes");
            assert!(ProgressStyle::with_template(&t).is_ok(), "{t}");
            assert!(t.contains("{per_sec:0}") && t.contains("probes"), "{t}");
        }
        assert!(template(true, "names").contains("ETA {eta}"));
        // off: nothing drawn, msg never built
        let mut off = Bar::new(false, Some(10), "probes");
        off.update(5, || unreachable!());
        off.finish();
    }

    #[test]
    fn lines_of_a_file() {
        let dir = std::env::temp_dir().join(format!("synscope-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("names.txt");
        std::fs::write(&f, "a\nb\nc").unwrap();
        assert_eq!(count_lines(&f), Some(3));
        std::fs::write(&f, "a\nb\n").unwrap();
        assert_eq!(count_lines(&f), Some(2));
        std::fs::write(&f, "").unwrap();
        assert_eq!(count_lines(&f), Some(0));
        assert_eq!(count_lines(&dir), None);
        assert_eq!(count_lines(&dir.join("nope")), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
