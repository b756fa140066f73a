//! index kernels (filled in by the foundation work).
