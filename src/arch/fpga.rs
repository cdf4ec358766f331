//! FPGA devices and engine templates (placeholder until the FPGA model lands).

use super::ArchError;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct Fpga {
    pub name: String,
    pub path: PathBuf,
}

pub fn load_str(
    _text: &str,
    path: &Path,
    _overrides: &[(String, String)],
) -> Result<Fpga, ArchError> {
    Err(ArchError::Key {
        path: path.to_path_buf(),
        key: "accelerator.kind".into(),
        message: "FPGA templates are not supported yet".into(),
    })
}
