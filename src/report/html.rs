//! The HTML report: a page per finished run and an index, readable offline.
//!
//! Every command that writes a run directory also writes `run.json` there: a [`RunPage`] with
//! the run's settings, result tables, figures and the files worth opening (proof logs, IR JSON
//! of designs). [`write_site`] finds every `run.json` under a directory and writes `run.html`
//! beside each and one `index.html` over all of them. Pages use inline CSS and no script, and
//! every link is relative, so the folder can be copied anywhere and opened in any browser.

use super::{io_err, ReportError};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The name of the page description in a run directory.
pub const RUN_FILE: &str = "run.json";
/// The name of a run's page in the report.
pub const PAGE_FILE: &str = "run.html";

/// A table of results.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Table {
    /// Shown above the table.
    pub caption: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

/// A figure of the run, by the path of its SVG relative to the run directory (a PNG of the
/// same name lies beside it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FigureRef {
    /// The SVG, relative to the run directory.
    pub file: String,
    /// Shown under the figure.
    pub caption: String,
}

/// A file (or folder) of the run worth opening: a proof log, a design's IR JSON, a CSV.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileLink {
    /// Relative to the run directory.
    pub file: String,
    /// What it is.
    pub label: String,
}

/// What the report shows of one run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunPage {
    /// The page title.
    pub title: String,
    /// The command line that produced the run.
    pub command: String,
    /// Sentences on what the run found.
    pub summary: Vec<String>,
    /// Settings as (name, value).
    pub settings: Vec<(String, String)>,
    /// Result tables.
    pub tables: Vec<Table>,
    /// Figures.
    pub figures: Vec<FigureRef>,
    /// Files worth opening.
    pub files: Vec<FileLink>,
}

impl Table {
    /// A table with a caption and column names.
    pub fn new(caption: impl Into<String>, header: &[&str]) -> Table {
        Table {
            caption: caption.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
}

impl RunPage {
    /// A page with a title and the command that produced it.
    pub fn new(title: impl Into<String>, command: impl Into<String>) -> RunPage {
        RunPage {
            title: title.into(),
            command: command.into(),
            ..RunPage::default()
        }
    }

    /// Adds a setting.
    pub fn setting(&mut self, name: &str, value: impl ToString) {
        self.settings.push((name.to_string(), value.to_string()));
    }

    /// Adds a figure by its SVG file name in the run directory.
    pub fn figure(&mut self, file: &str, caption: impl Into<String>) {
        self.figures.push(FigureRef {
            file: file.to_string(),
            caption: caption.into(),
        });
    }

    /// Adds a file link.
    pub fn file(&mut self, file: &str, label: impl Into<String>) {
        self.files.push(FileLink {
            file: file.to_string(),
            label: label.into(),
        });
    }

    /// Writes the page description as `run.json` in `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(self).expect("a page serialises");
        let path = dir.join(RUN_FILE);
        std::fs::write(&path, text).map_err(io_err(&path))
    }

    /// Reads a `run.json`.
    pub fn read(path: &Path) -> Result<RunPage, ReportError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        serde_json::from_str(&text).map_err(|e| ReportError::Invalid {
            path: path.to_path_buf(),
            msg: format!("not a run description: {e}"),
        })
    }
}

/// One run of a written report.
#[derive(Clone, Debug, Serialize)]
pub struct SiteRun {
    /// The run directory, relative to the report's root ("." for the root itself).
    pub dir: String,
    /// Its title.
    pub title: String,
    /// Its page, relative to the report's root.
    pub page: String,
    /// Its figures' SVGs, relative to the report's root.
    pub figures: Vec<String>,
}

/// What [`write_site`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Site {
    /// The index page.
    pub index: PathBuf,
    /// The runs, in path order.
    pub runs: Vec<SiteRun>,
    /// Files a run named that were not there (listed on its page as missing).
    pub missing: Vec<String>,
}

/// Every directory under `root` (itself included) that holds a `run.json`, relative to `root`,
/// sorted; `skip` (the output folder, when it lies inside) is not searched.
pub fn find_runs(root: &Path, skip: Option<&Path>) -> Result<Vec<PathBuf>, ReportError> {
    fn walk(
        dir: &Path,
        rel: &Path,
        skip: Option<&Path>,
        out: &mut Vec<PathBuf>,
    ) -> Result<(), ReportError> {
        if dir.join(RUN_FILE).is_file() {
            out.push(rel.to_path_buf());
        }
        let entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
        let mut subdirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        for sub in subdirs {
            if skip.is_some_and(|s| same_path(s, &sub)) {
                continue;
            }
            let name = sub.file_name().map(PathBuf::from).unwrap_or_default();
            walk(&sub, &rel.join(name), skip, out)?;
        }
        Ok(())
    }
    if !root.is_dir() {
        return Err(ReportError::Invalid {
            path: root.to_path_buf(),
            msg: "no such directory".into(),
        });
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), skip, &mut out)?;
    Ok(out)
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Copies a file or a folder (recursively).
fn copy_all(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_all(&e.path(), &to.join(e.file_name()))?;
        }
        Ok(())
    } else {
        if let Some(p) = to.parent() {
            std::fs::create_dir_all(p)?;
        }
        std::fs::copy(from, to).map(|_| ())
    }
}

/// HTML-escapes text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A relative path as a URL path (forward slashes, each segment percent-encoded where needed).
fn href(rel: &Path) -> String {
    rel.components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .chars()
                .map(|ch| match ch {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' | '~' => ch.to_string(),
                    _ => {
                        let mut b = [0u8; 4];
                        ch.encode_utf8(&mut b)
                            .bytes()
                            .map(|x| format!("%{x:02X}"))
                            .collect()
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Verdana,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ccc}\
.wide{overflow-x:auto;max-width:100%}table{border-collapse:collapse;margin:.6em 0}\
td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left;overflow-wrap:anywhere;max-width:40em}\
th{background:#f0f0f0}code,pre{background:#f6f6f6;padding:.1em .3em}pre{padding:.6em;overflow-x:auto}\
figure{display:block;margin:1em 0}figure img{border:1px solid #ddd;width:100%;max-width:1000px;height:auto}\
.thumbs figure{display:inline-block;width:48%;margin:.5em 1% .5em 0;vertical-align:top}\
figcaption{font-size:.9em;color:#444}.missing{color:#b00}.runs a{font-weight:bold}";

fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(title)
    )
}

fn table_html(t: &Table) -> String {
    let mut s = String::new();
    if !t.caption.is_empty() {
        let _ = writeln!(s, "<h3>{}</h3>", escape(&t.caption));
    }
    // Wide tables scroll inside their box instead of running off the page.
    s.push_str("<div class=\"wide\"><table><tr>");
    for h in &t.header {
        let _ = write!(s, "<th>{}</th>", escape(h));
    }
    s.push_str("</tr>\n");
    for r in &t.rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", escape(c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table></div>\n");
    s
}

/// The HTML of one run's page, `index` the link back; `present` says whether a run-relative file exists.
fn run_html(page: &RunPage, index: &str, present: &dyn Fn(&str) -> bool) -> String {
    let mut s = page_head(&page.title);
    let _ = writeln!(
        s,
        "<p><a href=\"{index}\">&larr; all runs</a></p><h1>{}</h1>",
        escape(&page.title)
    );
    if !page.command.is_empty() {
        let _ = writeln!(s, "<pre>{}</pre>", escape(&page.command));
    }
    for line in &page.summary {
        let _ = writeln!(s, "<p>{}</p>", escape(line));
    }
    if !page.settings.is_empty() {
        let mut t = Table::new("Settings", &["setting", "value"]);
        for (k, v) in &page.settings {
            t.row(vec![k.clone(), v.clone()]);
        }
        s.push_str("<h2>Settings</h2>\n");
        t.caption.clear();
        s.push_str(&table_html(&t));
    }
    if !page.tables.is_empty() {
        s.push_str("<h2>Results</h2>\n");
        for t in &page.tables {
            s.push_str(&table_html(t));
        }
    }
    if !page.figures.is_empty() {
        s.push_str("<h2>Figures</h2>\n");
        for f in &page.figures {
            let svg = href(Path::new(&f.file));
            let png = href(&Path::new(&f.file).with_extension("png"));
            if present(&f.file) {
                let _ = writeln!(
                    s,
                    "<figure><a href=\"{svg}\"><img src=\"{svg}\" alt=\"{}\"></a>\
                     <figcaption>{} (<a href=\"{svg}\">SVG</a>, <a href=\"{png}\">PNG</a>)</figcaption></figure>",
                    escape(&f.caption),
                    escape(&f.caption)
                );
            } else {
                let _ = writeln!(
                    s,
                    "<p class=\"missing\">missing figure: {}</p>",
                    escape(&f.file)
                );
            }
        }
    }
    if !page.files.is_empty() {
        s.push_str("<h2>Files</h2>\n<ul>\n");
        for f in &page.files {
            if present(&f.file) {
                let _ = writeln!(
                    s,
                    "<li><a href=\"{}\">{}</a>: {}</li>",
                    href(Path::new(&f.file)),
                    escape(&f.file),
                    escape(&f.label)
                );
            } else {
                let _ = writeln!(
                    s,
                    "<li class=\"missing\">{} (missing): {}</li>",
                    escape(&f.file),
                    escape(&f.label)
                );
            }
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</body></html>\n");
    s
}

/// Writes the report of every run under `runs` into `out`: `run.html` per run (with its
/// figures and files copied over when `out` is another folder) and `index.html`.
pub fn write_site(runs: &Path, out: &Path, title: &str) -> Result<Site, ReportError> {
    let in_place = out.exists() && same_path(runs, out);
    let dirs = find_runs(runs, if in_place { None } else { Some(out) })?;
    if dirs.is_empty() {
        return Err(ReportError::NoRuns(runs.to_path_buf()));
    }
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let mut site = Site {
        index: out.join("index.html"),
        runs: Vec::new(),
        missing: Vec::new(),
    };
    let mut index = page_head(title);
    let _ = writeln!(index, "<h1>{}</h1>", escape(title));
    let mut pages = Vec::new();
    for rel in &dirs {
        let src = runs.join(rel);
        let page = RunPage::read(&src.join(RUN_FILE))?;
        let dst = out.join(rel);
        std::fs::create_dir_all(&dst).map_err(io_err(&dst))?;
        let mut wanted: Vec<String> = page.files.iter().map(|f| f.file.clone()).collect();
        for f in &page.figures {
            wanted.push(f.file.clone());
            wanted.push(
                Path::new(&f.file)
                    .with_extension("png")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        for file in &wanted {
            let from = src.join(file);
            if !from.exists() {
                site.missing
                    .push(rel.join(file).to_string_lossy().into_owned());
            } else if !in_place {
                copy_all(&from, &dst.join(file)).map_err(io_err(&from))?;
            }
        }
        let present = |f: &str| src.join(f).exists();
        // The link back to the index climbs out of the run's folder.
        let up = "../".repeat(rel.components().count());
        let html = run_html(&page, &format!("{up}index.html"), &present);
        std::fs::write(dst.join(PAGE_FILE), html).map_err(io_err(&dst))?;
        // The figures the index shows: (caption, link from the index), present ones only.
        let shown: Vec<(String, String)> = page
            .figures
            .iter()
            .filter(|f| present(&f.file))
            .map(|f| (f.caption.clone(), href(&rel.join(&f.file))))
            .collect();
        site.runs.push(SiteRun {
            dir: if rel.as_os_str().is_empty() {
                ".".into()
            } else {
                rel.to_string_lossy().into_owned()
            },
            title: page.title.clone(),
            page: href(&rel.join(PAGE_FILE)),
            figures: shown.iter().map(|(_, svg)| svg.clone()).collect(),
        });
        pages.push((rel.clone(), page, shown));
    }
    // Two runs with one title are told apart by their folders.
    let name = |rel: &Path, page: &RunPage| {
        let same = pages
            .iter()
            .filter(|(_, p, _)| p.title == page.title)
            .count();
        if same > 1 {
            let dir = if rel.as_os_str().is_empty() {
                ".".to_string()
            } else {
                rel.to_string_lossy().into_owned()
            };
            format!("{} ({dir})", page.title)
        } else {
            page.title.clone()
        }
    };
    index.push_str("<h2>Runs</h2>\n<ul class=\"runs\">\n");
    for (rel, page, _) in &pages {
        let _ = writeln!(
            index,
            "<li><a href=\"{}\">{}</a>{}</li>",
            href(&rel.join(PAGE_FILE)),
            escape(&name(rel, page)),
            page.summary
                .first()
                .map(|s| format!(": {}", escape(s)))
                .unwrap_or_default()
        );
    }
    index.push_str("</ul>\n");
    for (rel, page, shown) in &pages {
        let _ = writeln!(
            index,
            "<h2><a href=\"{}\">{}</a></h2>",
            href(&rel.join(PAGE_FILE)),
            escape(&name(rel, page))
        );
        for t in page.tables.iter().take(1) {
            index.push_str(&table_html(t));
        }
        index.push_str("<div class=\"thumbs\">\n");
        for (caption, svg) in shown {
            let caption = escape(caption);
            let _ = writeln!(
                index,
                "<figure><a href=\"{svg}\"><img src=\"{svg}\" alt=\"{caption}\"></a>\
                 <figcaption>{caption}</figcaption></figure>"
            );
        }
        index.push_str("</div>\n");
    }
    index.push_str("</body></html>\n");
    std::fs::write(&site.index, index).map_err(io_err(&site.index))?;
    Ok(site)
}
