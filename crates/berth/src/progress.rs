//! Progress for transfers: a bar per blob on a terminal, a line per blob in logs, or nothing.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use berth_client::Progress;
use berth_oci::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Bars on a terminal, lines otherwise.
    Auto,
    /// Bars.
    Tty,
    /// One line per blob.
    Plain,
    /// Nothing.
    Quiet,
}

/// Reports blob transfers on standard error.
#[derive(Debug)]
pub struct Reporter {
    bars: Option<MultiProgress>,
    live: Mutex<HashMap<Digest, ProgressBar>>,
    /// What a finished blob and a skipped one are called (`copied`, `already there`).
    words: (&'static str, &'static str),
}

fn short(d: &Digest) -> String {
    format!(
        "{}:{}",
        d.algorithm().as_str(),
        &d.hex()[..12.min(d.hex().len())]
    )
}

fn mb(n: u64) -> String {
    format!("{:.1} MB", n as f64 / 1e6)
}

impl Reporter {
    /// A reporter for `mode`, or `None` for quiet.
    pub fn new(mode: Mode) -> Option<Self> {
        Self::with_words(mode, "copied", "already there")
    }

    /// A reporter that calls a finished blob `done` and a skipped one `skipped`.
    pub fn with_words(mode: Mode, done: &'static str, skipped: &'static str) -> Option<Self> {
        let bars = match mode {
            Mode::Quiet => return None,
            Mode::Tty => true,
            Mode::Plain => false,
            Mode::Auto => std::io::stderr().is_terminal(),
        };
        Some(Reporter {
            bars: bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            live: Mutex::new(HashMap::new()),
            words: (done, skipped),
        })
    }
}

impl Progress for Reporter {
    fn blob_started(&self, digest: &Digest, size: u64, skipped: bool) {
        if skipped {
            let line = format!("{}: {} ({})", short(digest), self.words.1, mb(size));
            match &self.bars {
                Some(mp) => drop(mp.println(line)),
                None => eprintln!("{line}"),
            }
            return;
        }
        let bar = match &self.bars {
            Some(mp) => {
                let bar = mp.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(short(digest));
                bar
            }
            None => {
                let bar = ProgressBar::hidden();
                bar.set_length(size);
                bar
            }
        };
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.clone(), bar);
    }

    fn blob_advanced(&self, digest: &Digest, bytes: u64) {
        if let Some(bar) = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
        {
            bar.inc(bytes);
        }
    }

    fn blob_done(&self, digest: &Digest) {
        let bar = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        let total = bar
            .as_ref()
            .and_then(ProgressBar::length)
            .unwrap_or_default();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let line = format!("{}: {} {}", short(digest), self.words.0, mb(total));
        match &self.bars {
            Some(mp) => drop(mp.println(line)),
            None => eprintln!("{line}"),
        }
    }
}
