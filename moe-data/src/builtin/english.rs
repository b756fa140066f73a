//! `english`: short English-like stories and reports from a small grammar.
//! Each document has a protagonist, a place and a topic that recur across
//! its sentences, so a model can learn both word order and within-document
//! copying.

use super::rng::{capitalize, Rng};

const NAMES: &[&str] = &[
    "Anna", "Ben", "Clara", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack", "Laura", "Mark", "Nina",
    "Oscar", "Paula", "Sam",
];
const ADJ: &[&str] = &[
    "old", "young", "quiet", "bright", "small", "large", "happy", "tired", "green", "red", "clever", "careful",
    "strange", "warm", "cold", "busy",
];
const NOUN: &[&str] = &[
    "dog", "cat", "teacher", "farmer", "river", "garden", "house", "road", "bird", "window", "letter", "market",
    "boat", "forest", "child", "doctor", "train", "bridge", "lamp", "book",
];
const PLACE: &[&str] = &[
    "village", "city", "harbor", "school", "station", "library", "valley", "museum", "bakery", "castle",
];
const VERB_PAST: &[&str] = &[
    "walked", "looked", "waited", "worked", "listened", "smiled", "rested", "talked", "jumped", "stayed",
];
const VERB_T: &[&str] = &[
    "found", "painted", "carried", "watched", "opened", "cleaned", "followed", "visited", "repaired", "bought",
];
const PREP: &[&str] = &[
    "near", "behind", "beside", "under", "across", "inside", "around", "toward",
];
const TIME: &[&str] = &[
    "In the morning",
    "Later that day",
    "After lunch",
    "At night",
    "On Monday",
    "In the spring",
    "Every evening",
    "Before the storm",
];
const TOPIC: &[&str] = &[
    "weather",
    "harvest",
    "festival",
    "journey",
    "music",
    "market prices",
    "new bridge",
    "old map",
];
const SAY: &[&str] = &["said", "asked", "whispered", "replied", "shouted"];
const COUNT: &[&str] = &[
    "two", "three", "four", "five", "seven", "ten", "twelve", "many", "several", "a few",
];

fn plural(n: &str) -> String {
    match n {
        "child" => "children".into(),
        "bus" => "buses".into(),
        _ if n.ends_with('y') && !n.ends_with("ay") => format!("{}ies", &n[..n.len() - 1]),
        _ => format!("{n}s"),
    }
}

fn sentence(r: &mut Rng, name: &str, place: &str, topic: &str) -> String {
    let (a, n, n2) = (r.pick(ADJ), r.pick(NOUN), r.pick(NOUN));
    match r.range(0, 7) {
        0 => format!("The {a} {n} {} {} the {n2}.", r.pick(VERB_PAST), r.pick(PREP)),
        1 => format!("{name} {} a {a} {n} in the {place}.", r.pick(VERB_T)),
        2 => format!(
            "{}, {name} {} {} the {place}.",
            r.pick(TIME),
            r.pick(VERB_PAST),
            r.pick(PREP)
        ),
        3 => format!("\"The {topic} is {a} this year,\" {} {name}.", r.pick(SAY)),
        4 => format!(
            "{} {} {} {} the {n2}.",
            capitalize(r.pick::<&str>(COUNT)),
            plural(n),
            r.pick(VERB_PAST),
            r.pick(PREP)
        ),
        5 => format!("Everyone in the {place} talked about the {topic}."),
        6 => format!("{name} was {a} because the {n} was {}.", r.pick(ADJ)),
        _ => format!(
            "{} the {a} {n} and the {} {n2}.",
            capitalize(r.pick::<&str>(VERB_T)),
            r.pick(ADJ)
        ),
    }
}

/// One document.
pub fn document(r: &mut Rng) -> String {
    let name = *r.pick(NAMES);
    let place = *r.pick(PLACE);
    let topic = *r.pick(TOPIC);
    let mut out = if r.chance(0.3) {
        format!("The {} of the {place}\n\n", capitalize(topic))
    } else {
        String::new()
    };
    let paragraphs = r.range(1, 3);
    for p in 0..paragraphs {
        if p > 0 {
            out.push_str("\n\n");
        }
        let n = r.range(2, 6);
        let sentences: Vec<String> = (0..n).map(|_| sentence(r, name, place, topic)).collect();
        out.push_str(&sentences.join(" "));
    }
    out
}
