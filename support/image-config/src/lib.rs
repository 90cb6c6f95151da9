//! The Redox image configuration this project ships, `filesystem.toml`, as far
//! as booting it needs: the files it writes into the image ([`ImageFile`]) and,
//! among them, the init units that start the stack ([`init_unit`]).
//!
//! The Redox installer reads the whole format; this crate reads the `[[files]]`
//! tables and leaves the rest (`include`, `[general]`, `[packages]`) alone, so
//! that the test guest can be given the image's own files and units.

pub mod init_unit;

use std::fmt;

use serde::Deserialize;

/// One `[[files]]` table: a file the image holds at `path`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ImageFile {
    /// Absolute path in the image.
    pub path: String,
    /// The file's contents.
    #[serde(default)]
    pub data: String,
    /// Written after the packages are installed (over what a package put there).
    #[serde(default)]
    pub postinstall: bool,
}

#[derive(Deserialize)]
struct FilesOnly {
    #[serde(default)]
    files: Vec<ImageFile>,
}

/// Why a configuration or a unit could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The files `filesystem.toml`'s text writes, in the order it lists them.
pub fn files(config: &str) -> Result<Vec<ImageFile>, ConfigError> {
    let parsed: FilesOnly =
        toml::from_str(config).map_err(|e| ConfigError(format!("filesystem.toml: {e}")))?;
    for file in &parsed.files {
        if !file.path.starts_with('/') || file.path.split('/').any(|part| part == "..") {
            return Err(ConfigError(format!(
                "filesystem.toml: {:?} is not an absolute path inside the image",
                file.path
            )));
        }
    }
    Ok(parsed.files)
}

/// The file at `path` among `files`.
pub fn file<'a>(files: &'a [ImageFile], path: &str) -> Option<&'a ImageFile> {
    files.iter().find(|file| file.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_read_and_the_other_tables_left_alone() {
        let config = r#"
include = ["minimal.toml"]
[general]
filesystem_size = 512
[packages]
mmio-scheme = {}
[[files]]
path = "/etc/a"
data = "A"
[[files]]
path = "/usr/lib/pcid.d/x.toml"
postinstall = true
data = "X"
"#;
        let files = files(config).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(file(&files, "/etc/a").unwrap().data, "A");
        assert!(file(&files, "/usr/lib/pcid.d/x.toml").unwrap().postinstall);
        assert!(file(&files, "/etc/b").is_none());
    }

    #[test]
    fn a_file_outside_the_image_or_a_broken_config_is_an_error() {
        for path in ["etc/a", "/etc/../../a"] {
            let config = format!("[[files]]\npath = {path:?}\ndata = \"\"\n");
            assert!(files(&config).is_err(), "{path}");
        }
        assert!(files("[[files]]\ndata = 1\n").is_err());
    }
}
