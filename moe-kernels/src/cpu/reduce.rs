//! reduce kernels (filled in by the foundation work).
