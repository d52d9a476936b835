//! Progress of long commands, wherever stderr goes: a bar or spinner on a terminal; plain
//! lines off one (a log file, a pipe, CI), at most one every few seconds and at least one
//! every half minute while work goes on; nothing with `--quiet` or `--json`.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shortest time between two plain lines for a step forward.
const STEP_EVERY: Duration = Duration::from_secs(2);
/// The shortest time between two plain lines that only change the message.
const MESSAGE_EVERY: Duration = Duration::from_secs(10);
/// The longest time without a plain line while work goes on.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// A progress display; clones share it.
#[derive(Clone)]
pub struct Progress {
    bar: indicatif::ProgressBar,
    plain: Option<Arc<Mutex<Plain>>>,
}

struct Plain {
    /// What is counted ("instances", "trials").
    label: String,
    start: Instant,
    last_line: Instant,
    pos: u64,
    len: Option<u64>,
    msg: String,
    done: bool,
}

impl Plain {
    fn line(&mut self) {
        let t = self.start.elapsed().as_secs();
        let count = match self.len {
            Some(n) => format!("{}/{n}", self.pos),
            None if self.pos > 0 => self.pos.to_string(),
            None => String::new(),
        };
        let mut text = format!("[{:>3}m{:02}s] {}", t / 60, t % 60, self.label);
        if !count.is_empty() {
            text.push(' ');
            text.push_str(&count);
        }
        if !self.msg.is_empty() {
            text.push_str(": ");
            text.push_str(&self.msg);
        }
        eprintln!("{text}");
        self.last_line = Instant::now();
    }
}

impl Progress {
    /// A bar of `len` steps drawn with `template` on a terminal; `label` names the steps in
    /// plain lines. Hidden when `hidden` (--quiet, --json).
    pub fn bar(len: u64, hidden: bool, template: &str, label: &str) -> Self {
        Self::make(Some(len), hidden, template, label)
    }

    /// A spinner for work of unknown length.
    pub fn spinner(hidden: bool, template: &str, label: &str) -> Self {
        Self::make(None, hidden, template, label)
    }

    /// Nothing shown.
    pub fn hidden() -> Self {
        Progress {
            bar: indicatif::ProgressBar::hidden(),
            plain: None,
        }
    }

    fn make(len: Option<u64>, hidden: bool, template: &str, label: &str) -> Self {
        if hidden {
            return Self::hidden();
        }
        if std::io::stderr().is_terminal() {
            let bar = match len {
                Some(n) => indicatif::ProgressBar::new(n),
                None => indicatif::ProgressBar::new_spinner(),
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(template).expect("static template"),
            );
            if len.is_none() {
                bar.enable_steady_tick(Duration::from_millis(200));
            }
            return Progress { bar, plain: None };
        }
        let now = Instant::now();
        let plain = Arc::new(Mutex::new(Plain {
            label: label.to_string(),
            start: now,
            last_line: now,
            pos: 0,
            len,
            msg: String::new(),
            done: false,
        }));
        // The heartbeat: a line when nothing was said for a while, until the work is done.
        let weak = Arc::downgrade(&plain);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some(p) = weak.upgrade() else { return };
            let mut p = p.lock().expect("progress");
            if p.done {
                return;
            }
            if p.last_line.elapsed() >= HEARTBEAT {
                p.line();
            }
        });
        Progress {
            bar: indicatif::ProgressBar::hidden(),
            plain: Some(plain),
        }
    }

    fn plain(&self, f: impl FnOnce(&mut Plain) -> bool) {
        if let Some(p) = &self.plain {
            let mut p = p.lock().expect("progress");
            if f(&mut p) {
                p.line();
            }
        }
    }

    /// Steps forward by `n`.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.plain(|p| {
            p.pos += n;
            p.last_line.elapsed() >= STEP_EVERY || p.len == Some(p.pos)
        });
    }

    /// Sets the position.
    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
        self.plain(|p| {
            let moved = pos != p.pos;
            p.pos = pos;
            moved && p.last_line.elapsed() >= STEP_EVERY
        });
    }

    /// Sets the number of steps.
    pub fn set_length(&self, len: u64) {
        self.bar.set_length(len);
        self.plain(|p| {
            p.len = Some(len);
            false
        });
    }

    /// Sets the message shown after the count.
    pub fn set_message(&self, msg: impl Into<String>) {
        let msg = msg.into();
        self.bar.set_message(msg.clone());
        self.plain(|p| {
            p.msg = msg;
            p.last_line.elapsed() >= MESSAGE_EVERY
        });
    }

    /// Prints a line above the bar (or as a plain line).
    pub fn println(&self, line: impl AsRef<str>) {
        if self.plain.is_some() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line.as_ref());
        }
    }

    /// Removes the bar; off a terminal, says where the work ended (the count and the last
    /// message; the caller says whether it succeeded).
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
        self.plain(|p| {
            let said = p.done;
            p.done = true;
            !said && p.pos > 0
        });
    }
}
