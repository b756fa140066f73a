//! Op codes passed to the elementwise kernels; `elementwise.cu` defines the
//! same numbers (`UOP_*`, `BOP_*`), and a unit test checks they agree.

/// Unary op codes (`UOP_*`).
pub mod unary {
    pub const NEG: i32 = 0;
    pub const EXP: i32 = 1;
    pub const LOG: i32 = 2;
    pub const SQRT: i32 = 3;
    pub const RECIP: i32 = 4;
    pub const ABS: i32 = 5;
    pub const SIGMOID: i32 = 6;
    pub const SILU: i32 = 7;
    pub const GELU_TANH: i32 = 8;
    pub const GELU_ERF: i32 = 9;
    pub const RELU: i32 = 10;
    pub const TANH: i32 = 11;
    pub const POWF: i32 = 12;
    pub const AFFINE: i32 = 13;
    /// Every code with its `.cu` name, for the agreement test.
    pub const ALL: &[(&str, i32)] = &[
        ("UOP_NEG", NEG),
        ("UOP_EXP", EXP),
        ("UOP_LOG", LOG),
        ("UOP_SQRT", SQRT),
        ("UOP_RECIP", RECIP),
        ("UOP_ABS", ABS),
        ("UOP_SIGMOID", SIGMOID),
        ("UOP_SILU", SILU),
        ("UOP_GELU_TANH", GELU_TANH),
        ("UOP_GELU_ERF", GELU_ERF),
        ("UOP_RELU", RELU),
        ("UOP_TANH", TANH),
        ("UOP_POWF", POWF),
        ("UOP_AFFINE", AFFINE),
    ];
}

/// Comparison codes (`CMP_*`).
pub mod compare {
    pub const EQ: i32 = 0;
    pub const NE: i32 = 1;
    pub const LT: i32 = 2;
    pub const LE: i32 = 3;
    pub const GT: i32 = 4;
    pub const GE: i32 = 5;
    /// Every code with its `.cu` name, for the agreement test.
    pub const ALL: &[(&str, i32)] = &[
        ("CMP_EQ", EQ),
        ("CMP_NE", NE),
        ("CMP_LT", LT),
        ("CMP_LE", LE),
        ("CMP_GT", GT),
        ("CMP_GE", GE),
    ];
}

/// Binary op codes (`BOP_*`).
pub mod binary {
    pub const ADD: i32 = 0;
    pub const SUB: i32 = 1;
    pub const MUL: i32 = 2;
    pub const DIV: i32 = 3;
    pub const MAXIMUM: i32 = 4;
    pub const MINIMUM: i32 = 5;
    /// Every code with its `.cu` name, for the agreement test.
    pub const ALL: &[(&str, i32)] = &[
        ("BOP_ADD", ADD),
        ("BOP_SUB", SUB),
        ("BOP_MUL", MUL),
        ("BOP_DIV", DIV),
        ("BOP_MAXIMUM", MAXIMUM),
        ("BOP_MINIMUM", MINIMUM),
    ];
}
