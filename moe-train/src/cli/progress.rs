//! Progress bars for long data commands (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

/// A bytes-and-tokens progress bar.
pub struct DataProgress {
    bar: ProgressBar,
    start: Instant,
}

impl DataProgress {
    /// A bar over `total_bytes` of text (a spinner when unknown).
    pub fn new(total_bytes: Option<u64>) -> Self {
        let bar = match total_bytes {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .expect("valid template"),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix} {spinner} [{elapsed_precise}] {bytes} {bytes_per_sec} {msg}")
                    .expect("valid template"),
            ),
        };
        Self {
            bar,
            start: Instant::now(),
        }
    }

    /// Updates from the library's running totals.
    pub fn update(&self, prefix: &str, p: &moe_data::Progress) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_prefix(prefix.to_string());
        self.bar.set_position(p.bytes);
        self.bar
            .set_message(format!("{} tokens ({:.0} tok/s)", p.tokens, p.tokens as f64 / secs));
    }

    /// Removes the bar; returns elapsed seconds.
    pub fn finish(self) -> f64 {
        self.bar.finish_and_clear();
        self.start.elapsed().as_secs_f64()
    }
}
