//! Transfer progress on stderr: indicatif bars on a terminal, buildah-style lines otherwise
//! (`Copying blob 5a3e1c… done`), nothing when quiet.

use crate::Progress;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

/// Progress output for one operation (a pull, push or import).
#[derive(Clone)]
pub(crate) struct Reporter {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Quiet,
    Lines(Arc<Mutex<()>>),
    Bars(indicatif::MultiProgress),
}

/// Progress of one blob.
pub(crate) struct Item {
    kind: ItemKind,
}

enum ItemKind {
    Quiet,
    Line { label: String, lock: Arc<Mutex<()>> },
    Bar(indicatif::ProgressBar),
}

impl Reporter {
    pub fn new(p: Progress) -> Reporter {
        let mode = match p {
            Progress::Quiet => Mode::Quiet,
            Progress::Lines => Mode::Lines(Arc::new(Mutex::new(()))),
            Progress::Auto if std::io::stderr().is_terminal() => Mode::Bars(
                indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr()),
            ),
            Progress::Auto => Mode::Lines(Arc::new(Mutex::new(()))),
        };
        Reporter { mode }
    }

    /// A message line (`Writing manifest to image destination`).
    pub fn line(&self, msg: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Lines(lock) => {
                let _g = lock.lock();
                eprintln!("{msg}");
            }
            Mode::Bars(m) => {
                let _ = m.println(msg);
            }
        }
    }

    /// Start reporting a blob transfer: `what` is `blob` or `config`, `size` its length if known.
    pub fn item(&self, what: &str, digest: &str, size: Option<u64>) -> Item {
        let short = digest.split_once(':').map(|(_, h)| h).unwrap_or(digest);
        let short = &short[..short.len().min(12)];
        let label = format!("Copying {what} {short}");
        let kind = match &self.mode {
            Mode::Quiet => ItemKind::Quiet,
            Mode::Lines(lock) => ItemKind::Line {
                label,
                lock: lock.clone(),
            },
            Mode::Bars(m) => {
                let bar = m.add(indicatif::ProgressBar::new(size.unwrap_or(0)));
                let style = indicatif::ProgressStyle::with_template(
                    "{msg:24} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_message(label);
                ItemKind::Bar(bar)
            }
        };
        Item { kind }
    }
}

/// A handle that advances an [`Item`]'s count from another place (a reader handed to the HTTP
/// client).
#[derive(Clone)]
pub(crate) struct Counter(Option<indicatif::ProgressBar>);

impl Counter {
    /// `n` more bytes moved.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
}

impl Item {
    /// A counter for this item.
    pub fn counter(&self) -> Counter {
        match &self.kind {
            ItemKind::Bar(b) => Counter(Some(b.clone())),
            _ => Counter(None),
        }
    }

    /// `n` more bytes moved.
    pub fn inc(&self, n: u64) {
        if let ItemKind::Bar(b) = &self.kind {
            b.inc(n);
        }
    }

    /// Restart counting (a retried transfer).
    pub fn reset(&self) {
        if let ItemKind::Bar(b) = &self.kind {
            b.set_position(0);
        }
    }

    /// Finish with `status` (`done`, `skipped: already exists`, `mounted`).
    pub fn finish(self, status: &str) {
        match self.kind {
            ItemKind::Quiet => {}
            ItemKind::Line { label, lock } => {
                let _g = lock.lock();
                eprintln!("{label} {status}");
            }
            ItemKind::Bar(b) => {
                let msg = b.message();
                b.finish_with_message(format!("{msg} {status}"));
            }
        }
    }

    /// Finish after a failure.
    pub fn fail(self) {
        if let ItemKind::Bar(b) = self.kind {
            b.abandon();
        }
    }
}
