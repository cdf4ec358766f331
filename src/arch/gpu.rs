//! GPU devices (placeholder until the GPU model lands).

use super::ArchError;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Gpu {
    pub name: String,
    pub path: PathBuf,
}

pub fn load_str(
    _text: &str,
    path: &Path,
    _overrides: &[(String, String)],
) -> Result<Gpu, ArchError> {
    Err(ArchError::Key {
        path: path.to_path_buf(),
        key: "accelerator.kind".into(),
        message: "GPU devices are not supported yet".into(),
    })
}
