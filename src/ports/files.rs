//! The operator's own files, for the tools workflows add to the CLI (`tugboat cur summarize`
//! reads reports on local disk): a port, so that the tool lives in its workflow's folder, which
//! does no I/O of its own.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Dir,
    /// A file of this many bytes.
    File(u64),
}

pub trait LocalFiles: Send + Sync {
    /// What `path` is; an error when it does not exist or cannot be read.
    fn entry(&self, path: &Path) -> io::Result<Entry>;
    /// The entries of folder `dir`, in name order.
    fn list(&self, dir: &Path) -> io::Result<Vec<(PathBuf, Entry)>>;
    /// A whole (small) file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// A file to stream.
    fn open(&self, path: &Path) -> io::Result<Box<dyn BufRead + Send>>;
    /// The one name of a file named in two ways (a link, `a/../b`), to count it once.
    fn canonical(&self, path: &Path) -> PathBuf;
}

/// The local disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

/// How far ahead of the parser a file is read.
const READ_BUFFER: usize = 256 * 1024;

impl LocalFiles for Disk {
    fn entry(&self, path: &Path) -> io::Result<Entry> {
        let meta = std::fs::metadata(path)?;
        Ok(if meta.is_dir() {
            Entry::Dir
        } else {
            Entry::File(meta.len())
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<(PathBuf, Entry)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let path = e.path();
            let entry = if e.file_type()?.is_dir() {
                Entry::Dir
            } else {
                Entry::File(e.metadata().map(|m| m.len()).unwrap_or(0))
            };
            out.push((path, entry));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
        let file = std::fs::File::open(path)?;
        Ok(Box::new(BufReader::with_capacity(READ_BUFFER, file)))
    }

    fn canonical(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_a_folder_in_name_order_and_tells_files_from_folders() {
        let dir = std::env::temp_dir().join(format!("tugboat-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("b")).unwrap();
        std::fs::write(dir.join("c.csv"), b"abc").unwrap();
        std::fs::write(dir.join("a.csv"), b"x").unwrap();
        let listed = Disk.list(&dir).unwrap();
        let names: Vec<_> = listed
            .iter()
            .map(|(p, e)| (p.file_name().unwrap().to_str().unwrap().to_owned(), *e))
            .collect();
        assert_eq!(
            names,
            [
                ("a.csv".to_owned(), Entry::File(1)),
                ("b".to_owned(), Entry::Dir),
                ("c.csv".to_owned(), Entry::File(3))
            ]
        );
        assert_eq!(Disk.entry(&dir.join("c.csv")).unwrap(), Entry::File(3));
        assert!(Disk.entry(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
