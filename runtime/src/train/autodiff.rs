//! Reverse-mode automatic differentiation over the graph IR (being written).
