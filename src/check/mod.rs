//! The reference tensor engine (placeholder until the executors land).
