//! rms_norm kernels (filled in by the foundation work).
