//! `code`: small Python-like modules: functions with consistent argument
//! and variable names, loops, conditions, arithmetic, docstrings and
//! occasional classes. Indentation, symbols and identifiers make its
//! statistics very unlike the prose domains.

use super::rng::Rng;

const VERB: &[&str] = &[
    "compute", "update", "load", "parse", "merge", "count", "scale", "filter", "build", "check",
];
const NOUN: &[&str] = &[
    "total", "items", "scores", "buffer", "weights", "index", "values", "matrix", "count", "table",
];
const ARG: &[&str] = &[
    "x", "y", "n", "size", "step", "data", "limit", "factor", "offset", "rate",
];
const VAR: &[&str] = &[
    "result", "acc", "value", "tmp", "best", "out", "left", "right", "pos", "level",
];
const OP: &[&str] = &["+", "-", "*", "//", "%"];
const CMP: &[&str] = &[">", "<", ">=", "<=", "==", "!="];
const CLASS: &[&str] = &["Counter", "Buffer", "Parser", "Matrix", "Queue", "Tracker"];

fn expr(r: &mut Rng, names: &[&str]) -> String {
    match r.range(0, 3) {
        0 => format!("{} {} {}", r.pick(names), r.pick(OP), r.range(1, 9)),
        1 => format!("{} {} {}", r.pick(names), r.pick(OP), r.pick(names)),
        2 => format!("len({}) {} {}", r.pick(names), r.pick(OP), r.range(1, 4)),
        _ => format!(
            "({} {} {}) * {}",
            r.pick(names),
            r.pick(OP),
            r.range(1, 9),
            r.pick(names)
        ),
    }
}

fn block(r: &mut Rng, names: &mut Vec<&'static str>, indent: usize, depth: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for _ in 0..r.range(1, 4) {
        match r.range(0, 4) {
            0 | 1 => {
                let v = *r.pick(VAR);
                let e = expr(r, names);
                out.push_str(&format!("{pad}{v} = {e}\n"));
                if !names.contains(&v) {
                    names.push(v);
                }
            }
            2 if depth < 2 => {
                let a = *r.pick(names);
                out.push_str(&format!("{pad}for i in range({}):\n", r.range(2, 16)));
                out.push_str(&format!("{pad}    {a} += i\n"));
                block(r, names, indent + 4, depth + 1, out);
            }
            3 if depth < 2 => {
                let a = *r.pick(names);
                out.push_str(&format!("{pad}if {a} {} {}:\n", r.pick(CMP), r.range(0, 100)));
                out.push_str(&format!("{pad}    return {a}\n"));
            }
            _ => out.push_str(&format!("{pad}print({})\n", r.pick(names))),
        }
    }
}

fn function(r: &mut Rng, indent: usize, method: bool) -> String {
    let pad = " ".repeat(indent);
    let (v, n) = (*r.pick(VERB), *r.pick(NOUN));
    let n_args = r.range(1, 3);
    let mut names: Vec<&'static str> = Vec::new();
    while names.len() < n_args {
        let a = *r.pick(ARG);
        if !names.contains(&a) {
            names.push(a);
        }
    }
    let args = if method {
        format!("self, {}", names.join(", "))
    } else {
        names.join(", ")
    };
    let mut out = format!("{pad}def {v}_{n}({args}):\n");
    out.push_str(&format!(
        "{pad}    \"\"\"{} the {n} from {}.\"\"\"\n",
        super::rng::capitalize(v),
        names[0]
    ));
    block(r, &mut names, indent + 4, 0, &mut out);
    out.push_str(&format!("{pad}    return {}\n", r.pick(&names)));
    out
}

/// One document: a module of functions, sometimes a class.
pub fn document(r: &mut Rng) -> String {
    let mut parts = Vec::new();
    if r.chance(0.4) {
        parts.push(format!("import {}", r.pick(&["math", "os", "sys", "json", "random"])));
    }
    for _ in 0..r.range(1, 3) {
        if r.chance(0.25) {
            let mut c = format!("class {}:\n", r.pick(CLASS));
            c.push_str("    def __init__(self, size):\n        self.size = size\n        self.items = []\n\n");
            c.push_str(&function(r, 4, true));
            parts.push(c.trim_end().to_string());
        } else {
            parts.push(function(r, 0, false).trim_end().to_string());
        }
    }
    parts.join("\n\n\n")
}
