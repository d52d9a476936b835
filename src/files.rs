//! The files a user owns. Writing: atomically, with the permissions the user's umask gives
//! (never a temporary file's 0600), and never over an existing file unless asked to.
//! Reading: parse errors placed by line and column, on one line.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path exists and overwriting was not asked for.
    #[error("{} exists; pass --force to overwrite it", .0.display())]
    Exists(PathBuf),
    /// The folder could not be created.
    #[error("cannot create {}: {cause}", .dir.display())]
    CreateDir { dir: PathBuf, cause: std::io::Error },
    /// The file could not be written.
    #[error("cannot write {}: {cause}", .path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Fails, naming the first path that exists, unless `force`: called before long work whose
/// outputs would otherwise be refused only at the end.
pub fn refuse_existing<P: AsRef<Path>>(paths: &[P], force: bool) -> Result<(), FileError> {
    match paths.iter().map(AsRef::as_ref).find(|p| p.exists()) {
        Some(p) if !force => Err(FileError::Exists(p.to_path_buf())),
        _ => Ok(()),
    }
}

/// The folder a file of `path` goes into ("." for a bare name), created if missing.
fn parent_dir(path: &Path) -> Result<&Path, FileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|cause| FileError::CreateDir {
        dir: dir.to_path_buf(),
        cause,
    })?;
    Ok(dir)
}

/// Writes `contents` to `path` atomically (a temporary file in the same folder, renamed into
/// place), creating the folder, with mode 0666 less the umask, as `open(2)` would give a new
/// file. An existing file is refused unless `force`.
pub fn write_atomic(path: &Path, contents: &[u8], force: bool) -> Result<(), FileError> {
    refuse_existing(&[path], force)?;
    let dir = parent_dir(path)?;
    let err = |cause| FileError::Write {
        path: path.to_path_buf(),
        cause,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".archproof-")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(contents).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// A CSV file that grows a row at a time, each row flushed as it is written, so that a run
/// stopped half way leaves the rows it finished.
pub struct CsvLog {
    path: PathBuf,
    writer: csv::Writer<std::fs::File>,
}

impl CsvLog {
    /// Creates `path` (refusing an existing file unless `force`) and writes the header.
    pub fn create<S: AsRef<[u8]>>(
        path: &Path,
        header: &[S],
        force: bool,
    ) -> Result<Self, FileError> {
        refuse_existing(&[path], force)?;
        parent_dir(path)?;
        let file = std::fs::File::create(path).map_err(|cause| FileError::Write {
            path: path.to_path_buf(),
            cause,
        })?;
        let mut log = CsvLog {
            path: path.to_path_buf(),
            writer: csv::Writer::from_writer(file),
        };
        log.row(header)?;
        Ok(log)
    }

    /// Appends one row and flushes it to the file.
    pub fn row<S: AsRef<[u8]>>(&mut self, fields: &[S]) -> Result<(), FileError> {
        let path = &self.path;
        let err = |cause| FileError::Write {
            path: path.clone(),
            cause,
        };
        self.writer
            .write_record(fields)
            .map_err(|e| err(std::io::Error::other(e)))?;
        self.writer.flush().map_err(err)
    }
}

/// `line L, column C: message` of a TOML error in `text`: the place and the reason on one
/// line (the error's own text is a multi-line snippet).
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_errors_name_line_and_column() {
        let text = "a = 1\nb = = 2\nc = 3\n";
        let e = toml::from_str::<toml::Table>(text).unwrap_err();
        let m = toml_error(text, &e);
        assert!(m.starts_with("line 2, column "), "{m}");
        assert!(!m.contains('\n'), "{m}");
    }

    /// The mode of a written file is what the umask gives a new file (0644 under the usual
    /// 022), not a temporary file's 0600; the figure writer and the CSV log agree.
    #[test]
    fn files_get_the_umasks_mode_and_existing_ones_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        std::fs::write(&probe, b"").unwrap();
        let want = probe.metadata().unwrap().permissions().mode() & 0o777;
        let p = dir.path().join("sub/out.json");
        write_atomic(&p, b"{}", false).unwrap();
        assert_eq!(p.metadata().unwrap().permissions().mode() & 0o777, want);
        assert!(matches!(
            write_atomic(&p, b"[]", false),
            Err(FileError::Exists(_))
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
        write_atomic(&p, b"[]", true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"[]");
        let c = dir.path().join("rows.csv");
        let mut log = CsvLog::create(&c, &["a", "b"], false).unwrap();
        log.row(&["1", "2"]).unwrap();
        assert_eq!(std::fs::read_to_string(&c).unwrap(), "a,b\n1,2\n");
        assert_eq!(c.metadata().unwrap().permissions().mode() & 0o777, want);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
