//! cross_entropy kernels (filled in by the foundation work).
