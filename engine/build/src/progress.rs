//! Build progress: the `STEP n/m` lines (plain), one JSON object per event (json), or a live
//! view of the running stages on a terminal (auto), and the per-stage prefixes of RUN output when
//! stages run in parallel.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How `kiln build` reports progress (`--progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// A live view when stderr is a terminal, plain otherwise.
    #[default]
    Auto,
    /// `STEP n/m: …` lines with cache marks and durations.
    Plain,
    /// One JSON object per line on stdout.
    Json,
}

impl std::str::FromStr for ProgressMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" | "tty" => Ok(ProgressMode::Auto),
            "plain" => Ok(ProgressMode::Plain),
            "json" | "rawjson" => Ok(ProgressMode::Json),
            other => Err(format!("--progress={other}: use auto, plain or json")),
        }
    }
}

/// Which output stream of a RUN a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One step being reported: its stage (index and label) and its build-wide number.
#[derive(Clone, Debug)]
pub(crate) struct StepRef {
    pub stage: u32,
    pub stage_label: String,
    pub step: usize,
}

struct Live {
    multi: MultiProgress,
    bars: Mutex<HashMap<u32, (ProgressBar, String)>>,
}

enum Kind {
    Quiet,
    Plain,
    Json,
    Live(Live),
}

/// The build's progress sink, shared by the threads running stages.
pub(crate) struct Reporter {
    kind: Kind,
    prefix_output: AtomicBool,
    partial: Mutex<HashMap<(u32, usize, Stream), Vec<u8>>>,
    print: Mutex<()>,
    plugin_nanos: AtomicU64,
    started: Instant,
}

fn json_line(v: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

impl Reporter {
    /// A reporter for `mode` (nothing at all when `quiet`).
    pub fn new(mode: ProgressMode, quiet: bool) -> Reporter {
        let kind = if quiet {
            Kind::Quiet
        } else {
            match mode {
                ProgressMode::Plain => Kind::Plain,
                ProgressMode::Json => Kind::Json,
                ProgressMode::Auto if std::io::stderr().is_terminal() => Kind::Live(Live {
                    multi: MultiProgress::new(),
                    bars: Mutex::new(HashMap::new()),
                }),
                ProgressMode::Auto => Kind::Plain,
            }
        };
        Reporter {
            kind,
            prefix_output: AtomicBool::new(false),
            partial: Mutex::new(HashMap::new()),
            print: Mutex::new(()),
            plugin_nanos: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Prefix each RUN output line with its stage (stages run in parallel).
    pub fn set_parallel(&self, on: bool) {
        self.prefix_output.store(on, Ordering::Relaxed);
    }

    /// Whether plain lines (and the registry's own pull progress) go to the terminal.
    pub fn is_plain(&self) -> bool {
        matches!(self.kind, Kind::Plain)
    }

    /// `[stage] ` when stages run in parallel, else nothing.
    fn stage_prefix(&self, s: &StepRef) -> String {
        if self.prefix_output.load(Ordering::Relaxed) {
            format!("[{}] ", s.stage_label)
        } else {
            String::new()
        }
    }

    fn plain(&self, line: &str) {
        let _g = self.print.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// A step starts; `line` is its plain `[i/n] STEP a/b: …` line.
    pub fn started(&self, s: &StepRef, total: usize, line: &str, instruction: &str) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain => self.plain(line),
            Kind::Json => json_line(serde_json::json!({
                "event": "step",
                "stage": s.stage,
                "stage_name": s.stage_label,
                "step": s.step,
                "total": total,
                "instruction": instruction,
                "status": "started",
            })),
            Kind::Live(live) => {
                let mut bars = live.bars.lock().unwrap_or_else(|e| e.into_inner());
                let bar = match bars.remove(&s.stage) {
                    Some((b, _)) => b,
                    None => {
                        let b = live.multi.add(ProgressBar::new_spinner());
                        b.set_style(
                            ProgressStyle::with_template("{spinner:.blue} {msg} {elapsed:.dim}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        b.enable_steady_tick(Duration::from_millis(120));
                        b
                    }
                };
                bar.reset_elapsed();
                bar.set_message(line.to_string());
                bars.insert(s.stage, (bar, line.to_string()));
            }
        }
    }

    /// The step was answered from the cache.
    pub fn cached(&self, s: &StepRef) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain => self.plain(&format!("{}--> Using cache", self.stage_prefix(s))),
            Kind::Json => json_line(serde_json::json!({
                "event": "step",
                "stage": s.stage,
                "stage_name": s.stage_label,
                "step": s.step,
                "status": "cached",
            })),
            Kind::Live(live) => {
                let bars = live.bars.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, line)) = bars.get(&s.stage) {
                    let _ = live.multi.println(format!("CACHED {line}"));
                }
            }
        }
    }

    /// The step finished after `took` (cached steps too).
    pub fn done(&self, s: &StepRef, took: Duration, cached: bool) {
        self.flush_partial(s);
        let ms = took.as_secs_f64() * 1000.0;
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain => {
                if !cached {
                    self.plain(&format!(
                        "{}--> done in {:.3}s",
                        self.stage_prefix(s),
                        took.as_secs_f64()
                    ));
                }
            }
            Kind::Json => json_line(serde_json::json!({
                "event": "step",
                "stage": s.stage,
                "stage_name": s.stage_label,
                "step": s.step,
                "status": "done",
                "cached": cached,
                "duration_ms": ms,
            })),
            Kind::Live(live) => {
                let bars = live.bars.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, line)) = bars.get(&s.stage)
                    && !cached
                {
                    let _ = live
                        .multi
                        .println(format!("DONE {:.1}s {line}", took.as_secs_f64()));
                }
            }
        }
    }

    /// The step failed with `message`.
    pub fn error(&self, s: &StepRef, took: Duration, message: &str) {
        self.flush_partial(s);
        match &self.kind {
            Kind::Quiet | Kind::Plain => {}
            Kind::Json => json_line(serde_json::json!({
                "event": "step",
                "stage": s.stage,
                "stage_name": s.stage_label,
                "step": s.step,
                "status": "error",
                "duration_ms": took.as_secs_f64() * 1000.0,
                "message": message,
            })),
            Kind::Live(live) => {
                let mut bars = live.bars.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((bar, line)) = bars.remove(&s.stage) {
                    bar.finish_and_clear();
                    let _ = live.multi.println(format!("ERROR {line}"));
                }
            }
        }
    }

    /// A stage finished: its live line goes away.
    pub fn stage_finished(&self, stage: u32) {
        if let Kind::Live(live) = &self.kind {
            let mut bars = live.bars.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((bar, _)) = bars.remove(&stage) {
                bar.finish_and_clear();
                live.multi.remove(&bar);
            }
        }
    }

    /// Output of a RUN: whole lines are reported, a trailing partial line waits for more.
    pub fn output(&self, s: &StepRef, stream: Stream, bytes: &[u8]) {
        if matches!(self.kind, Kind::Quiet) {
            return;
        }
        if matches!(self.kind, Kind::Plain) && !self.prefix_output.load(Ordering::Relaxed) {
            let _g = self.print.lock().unwrap_or_else(|e| e.into_inner());
            let _ = match stream {
                Stream::Stdout => {
                    let mut o = std::io::stdout().lock();
                    o.write_all(bytes).and_then(|_| o.flush())
                }
                Stream::Stderr => std::io::stderr().lock().write_all(bytes),
            };
            return;
        }
        let mut lines = Vec::new();
        {
            let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
            let buf = partial.entry((s.stage, s.step, stream)).or_default();
            buf.extend_from_slice(bytes);
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                lines.push(String::from_utf8_lossy(&line[..nl]).into_owned());
            }
        }
        for l in lines {
            self.line(s, stream, &l);
        }
    }

    fn flush_partial(&self, s: &StepRef) {
        let rest: Vec<(Stream, Vec<u8>)> = {
            let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
            [Stream::Stdout, Stream::Stderr]
                .into_iter()
                .filter_map(|st| partial.remove(&(s.stage, s.step, st)).map(|b| (st, b)))
                .filter(|(_, b)| !b.is_empty())
                .collect()
        };
        for (st, b) in rest {
            self.line(s, st, &String::from_utf8_lossy(&b));
        }
    }

    fn line(&self, s: &StepRef, stream: Stream, line: &str) {
        match &self.kind {
            Kind::Quiet => {}
            Kind::Plain => {
                let _g = self.print.lock().unwrap_or_else(|e| e.into_inner());
                let text = format!("[{}] {line}\n", s.stage_label);
                let _ = match stream {
                    Stream::Stdout => {
                        let mut o = std::io::stdout().lock();
                        o.write_all(text.as_bytes()).and_then(|_| o.flush())
                    }
                    Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
                };
            }
            Kind::Json => json_line(serde_json::json!({
                "event": "output",
                "stage": s.stage,
                "stage_name": s.stage_label,
                "step": s.step,
                "stream": stream.name(),
                "line": line,
            })),
            Kind::Live(live) => {
                let bars = live.bars.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((bar, head)) = bars.get(&s.stage) {
                    let short: String = line.chars().take(100).collect();
                    bar.set_message(format!("{head}\n  > {short}"));
                }
            }
        }
    }

    /// A warning (from the frontend, say).
    pub fn warning(&self, message: &str) {
        match &self.kind {
            Kind::Json => json_line(serde_json::json!({ "event": "warning", "message": message })),
            Kind::Live(live) => {
                let _ = live.multi.println(message);
            }
            _ => eprintln!("{message}"),
        }
    }

    /// Time spent in a plugin call (`what` names the plugin and the call).
    pub fn plugin_call(&self, what: &str, took: Duration) {
        self.plugin_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        tracing::debug!("plugin {what} took {took:?}");
        if let Kind::Json = self.kind {
            json_line(serde_json::json!({
                "event": "plugin",
                "call": what,
                "duration_ms": took.as_secs_f64() * 1000.0,
            }));
        }
    }

    /// Total time spent in plugin calls so far.
    pub fn plugin_time(&self) -> Duration {
        Duration::from_nanos(self.plugin_nanos.load(Ordering::Relaxed))
    }

    /// The build is over: a summary (json) and the live view goes away.
    pub fn finish(&self, image: Option<&str>, steps_run: usize, steps_cached: usize) {
        let plugin = self.plugin_time();
        tracing::debug!(
            "build took {:?}, plugin calls {:?}",
            self.started.elapsed(),
            plugin
        );
        match &self.kind {
            Kind::Json => json_line(serde_json::json!({
                "event": "summary",
                "image": image,
                "steps_run": steps_run,
                "steps_cached": steps_cached,
                "plugin_ms": plugin.as_secs_f64() * 1000.0,
                "duration_ms": self.started.elapsed().as_secs_f64() * 1000.0,
            })),
            Kind::Live(live) => {
                let mut bars = live.bars.lock().unwrap_or_else(|e| e.into_inner());
                for (_, (bar, _)) in bars.drain() {
                    bar.finish_and_clear();
                }
                let _ = live.multi.clear();
            }
            _ => {}
        }
    }
}
