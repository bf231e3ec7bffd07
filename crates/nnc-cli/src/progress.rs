//! Progress on stderr for long runs: a spinner with the current stage and the elapsed time, or a
//! bar where work goes tensor by tensor.
//!
//! Drawn only when stderr is a terminal, `--quiet` is off and the model has at least
//! [`MIN_TENSORS`] tensors; otherwise every call is a no-op, so scripts and pipes see nothing.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Models with fewer tensors finish too fast for a progress display to help.
pub const MIN_TENSORS: usize = 8;

/// Progress display of one command.
pub struct Progress {
    bar: ProgressBar,
    allowed: bool,
}

impl Progress {
    /// A display that stays hidden until [`Progress::show_for`] enables it.
    pub fn new(quiet: bool) -> Self {
        Progress {
            bar: ProgressBar::hidden(),
            allowed: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// Starts drawing if allowed and the model has at least [`MIN_TENSORS`] tensors.
    pub fn show_for(&self, tensors: usize) {
        if self.allowed && tensors >= MIN_TENSORS && self.bar.is_hidden() {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
            self.bar.enable_steady_tick(Duration::from_millis(120));
        }
    }

    /// A stage of unknown length: spinner, message, elapsed time.
    pub fn stage(&self, msg: impl Into<Cow<'static, str>>) {
        self.bar.set_style(spinner_style());
        self.bar.set_length(0);
        self.bar.set_position(0);
        self.bar.set_message(msg);
    }

    /// A stage of `len` steps (tensors): bar, count, message.
    pub fn steps(&self, msg: impl Into<Cow<'static, str>>, len: usize) {
        self.bar.set_style(bar_style());
        self.bar.set_length(len as u64);
        self.bar.set_position(0);
        self.bar.set_message(msg);
    }

    /// One step of the current [`Progress::steps`] stage done.
    pub fn step(&self) {
        self.bar.inc(1);
    }

    /// Removes the display (before a summary line is printed).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error ends the command early: leave no half-drawn line above its message.
        self.bar.finish_and_clear();
    }
}

const SPINNER_TEMPLATE: &str = "{spinner} {msg} [{elapsed}]";
const BAR_TEMPLATE: &str = "{spinner} {msg} [{bar:30}] {pos}/{len} [{elapsed}]";

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template(SPINNER_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(BAR_TEMPLATE)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_parse() {
        // A template typo would silently fall back to the default style; make it fail here.
        assert!(ProgressStyle::with_template(SPINNER_TEMPLATE).is_ok());
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
    }

    #[test]
    fn quiet_or_small_models_stay_hidden() {
        let p = Progress::new(true);
        p.show_for(1000);
        assert!(p.bar.is_hidden());
        let p = Progress::new(false);
        p.show_for(MIN_TENSORS - 1);
        assert!(p.bar.is_hidden());
        // Calls on a hidden display are harmless.
        p.steps("tensors", 3);
        p.step();
        p.stage("writing");
        p.finish();
    }
}
