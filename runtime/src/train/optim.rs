//! Optimisers and learning-rate schedules (being written).
