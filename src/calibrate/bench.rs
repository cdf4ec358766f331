//! `coex calibrate --emit-bench gpu`: a self-contained PyTorch script that measures
//! kernels and writes a measurement CSV in the tidy format.

/// The script (CUDA events, warm-up, repeats, medians; eager and CUDA-graph modes).
pub const PYTORCH_GPU: &str = include_str!("bench_gpu.py");
