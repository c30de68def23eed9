//! The training loop (being written).
