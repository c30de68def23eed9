//! Losses and regularisers (being written).
