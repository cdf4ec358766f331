//! Element types and tensor descriptors carried on graph edges.

use serde::{Deserialize, Serialize};

/// Element type of a tensor. `Int32` exists only for token ids fed to embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Int8,
    Fp16,
    Bf16,
    Fp32,
    Int32,
}

impl DType {
    pub const USER_CHOICES: &'static str = "int8, fp16, bf16, fp32";

    pub fn bytes(self) -> u64 {
        match self {
            DType::Int8 => 1,
            DType::Fp16 | DType::Bf16 => 2,
            DType::Fp32 | DType::Int32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::Int8 => "int8",
            DType::Fp16 => "fp16",
            DType::Bf16 => "bf16",
            DType::Fp32 => "fp32",
            DType::Int32 => "int32",
        }
    }

    pub fn parse(s: &str) -> Option<DType> {
        match s.to_ascii_lowercase().as_str() {
            "int8" | "i8" => Some(DType::Int8),
            "fp16" | "f16" | "half" => Some(DType::Fp16),
            "bf16" => Some(DType::Bf16),
            "fp32" | "f32" | "float" => Some(DType::Fp32),
            "int32" | "i32" => Some(DType::Int32),
            _ => None,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Shape and element type of one tensor (row-major; images are NCHW, sequences `[B, S, D]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct TensorInfo {
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorInfo {
    pub fn new(shape: Vec<usize>, dtype: DType) -> Self {
        TensorInfo { shape, dtype }
    }

    pub fn elements(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    pub fn bytes(&self) -> u64 {
        self.elements() * self.dtype.bytes()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Last axis length (feature width of a sequence tensor).
    pub fn last(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }
}

/// `[1, 3, 224, 224]` printed as `1x3x224x224`.
pub fn shape_str(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}
