//! Datasets in the IDX format (MNIST, Fashion-MNIST) (being written).
