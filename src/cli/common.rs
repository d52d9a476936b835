//! Helpers shared by the subcommands: resolving a model argument, writing files safely,
//! formatting numbers.

use std::path::Path;

use anyhow::{bail, Context, Result};
use archproof::ir::{io, Graph, Shape};

/// Resolves a model argument: a zoo name, `nb201:<cell>` (or `nb201-c8n1:<cell>` on another
/// skeleton), an IR `.json` file, or an `.onnx` model (imported into the IR with its weights).
pub fn load_model(spec: &str, input: Option<&str>, classes: Option<usize>) -> Result<Graph> {
    let input = input
        .map(Shape::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let path = Path::new(spec);
    let onnx = spec.ends_with(".onnx");
    if spec.ends_with(".json") || onnx || (path.exists() && !spec.starts_with("nb201")) {
        if input.is_some() || classes.is_some() {
            bail!("--input and --classes apply to zoo models, not to a saved graph ({spec})");
        }
        if onnx {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let name = path
                .file_stem()
                .map_or("model".into(), |s| s.to_string_lossy());
            return archproof::onnx::import(&bytes, &name)
                .with_context(|| format!("{}: cannot import the ONNX model", path.display()));
        }
        return Ok(io::read_graph(path)?);
    }
    if classes == Some(0) {
        bail!("--classes must be at least 1");
    }
    Ok(archproof::models::build(spec, input, classes)?)
}

/// Writes `contents` to `path` atomically with the umask's mode, refusing to replace an
/// existing file unless `force` ([`archproof::files::write_atomic`]).
pub fn write_file(path: &Path, contents: &[u8], force: bool) -> Result<()> {
    Ok(archproof::files::write_atomic(path, contents, force)?)
}

/// Fails, naming the first path that exists, unless `force`: called before long work whose
/// outputs would otherwise be refused only at the end.
pub fn refuse_existing(paths: &[std::path::PathBuf], force: bool) -> Result<()> {
    Ok(archproof::files::refuse_existing(paths, force)?)
}

/// `25557032` -> `25,557,032`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `4089184256` -> `4.09 G`.
pub fn si(n: u64) -> String {
    let x = n as f64;
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.2} K", x / 1e3)
    } else {
        format!("{n}")
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Words joined as a shell would read them back: arguments with spaces or shell characters
/// single-quoted.
pub fn shell_words<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|a| {
            let a = a.as_ref();
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
            if plain {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command line of this process as a user would type it (`archproof ...`), for run pages.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("archproof {}", shell_words(&args))
}

pub use archproof::verify::accuracy::argmax;

/// Writes a run page description (`run.json`) into `dir`.
pub fn write_page(dir: &Path, page: &archproof::report::RunPage) -> Result<()> {
    page.write(dir).map_err(anyhow::Error::msg)
}

/// The flags of every command that writes results and runs long enough to show progress.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputFlags {
    /// Replace outputs that exist.
    #[arg(long)]
    pub force: bool,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress (a bar on a terminal, plain lines off one).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Where a study is stored, for the commands that run one: the run folder's own SQLite file,
/// or a store that many worker processes share.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreFlags {
    /// A study store that worker processes share: postgresql://USER:PASSWORD@HOST/DATABASE,
    /// or sqlite:PATH (processes of one machine) [default: OUT/study.sqlite]. Every process
    /// given the same --storage and --study joins the study and claims its trials.
    #[arg(long)]
    pub storage: Option<String>,
    /// The study's name in --storage (letters, digits, '-', '_', '.') [default: default].
    #[arg(long, requires = "storage")]
    pub study: Option<String>,
    /// Seconds between a worker's heartbeats.
    #[arg(long, default_value_t = 5.0)]
    pub heartbeat: f64,
    /// Seconds without a heartbeat after which another worker takes over a running trial
    /// (at once, on the same machine, when the worker's process is gone).
    #[arg(long, default_value_t = 60.0)]
    pub heartbeat_grace: f64,
    /// Trials this process evaluates at once [default: the batch size, at most the threads].
    #[arg(long)]
    pub parallel_trials: Option<usize>,
}

impl StoreFlags {
    /// The storage and study name: --storage, or OUT/study.sqlite; `None` with neither.
    /// The flag says whether --storage was given (a shared study, joined rather than created).
    pub fn target(
        &self,
        out: Option<&std::path::Path>,
    ) -> anyhow::Result<Option<(archproof::search::Storage, String, bool)>> {
        use archproof::search::store::DEFAULT_STUDY;
        let name = self.study.clone().unwrap_or_else(|| DEFAULT_STUDY.into());
        archproof::search::store::check_study_name(&name)?;
        Ok(match (&self.storage, out) {
            (Some(url), _) => Some((url.parse()?, name, true)),
            (None, Some(out)) => Some((
                archproof::search::Storage::Sqlite(out.join("study.sqlite")),
                name,
                false,
            )),
            (None, None) => None,
        })
    }

    /// Heartbeat settings of this process's workers.
    pub fn options(&self) -> archproof::search::WorkerOptions {
        archproof::search::WorkerOptions {
            heartbeat: self.heartbeat,
            grace: self.heartbeat_grace,
            slots: self.parallel_trials,
        }
    }
}

impl OutputFlags {
    /// Whether progress stays hidden: asked for, or stdout carries JSON.
    pub fn no_progress(&self) -> bool {
        self.quiet || self.json
    }

    /// Whether to print human-readable lines as work goes on.
    pub fn talk(&self) -> bool {
        !self.no_progress()
    }
}
