//! Unit tests on models built in memory (the `tests/onnx.rs` suite reads real files).
