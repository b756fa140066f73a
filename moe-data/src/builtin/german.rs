//! `german`: short German-like prose from a small grammar with gendered
//! articles, adjective endings by case, umlauts and ß; a different
//! vocabulary and morphology from `english` on similar topics.

use super::rng::{capitalize, Rng};

/// (gender, noun): 0 masculine, 1 feminine, 2 neuter.
const NOUN: &[(u8, &str)] = &[
    (0, "Hund"),
    (1, "Katze"),
    (0, "Lehrer"),
    (0, "Bauer"),
    (0, "Fluss"),
    (0, "Garten"),
    (2, "Haus"),
    (1, "Straße"),
    (0, "Vogel"),
    (2, "Fenster"),
    (0, "Brief"),
    (0, "Markt"),
    (2, "Boot"),
    (0, "Wald"),
    (2, "Kind"),
    (1, "Ärztin"),
    (0, "Zug"),
    (1, "Brücke"),
    (1, "Lampe"),
    (2, "Buch"),
];
const ADJ: &[&str] = &[
    "alt",
    "jung",
    "still",
    "hell",
    "klein",
    "groß",
    "glücklich",
    "müde",
    "grün",
    "rot",
    "klug",
    "vorsichtig",
    "seltsam",
    "warm",
    "kalt",
    "fleißig",
];
const NAMES: &[&str] = &[
    "Jürgen", "Anke", "Lukas", "Sophie", "Matthias", "Greta", "Jonas", "Lena", "Uwe", "Heike",
];
const PLACE: &[(u8, &str)] = &[
    (2, "Dorf"),
    (1, "Stadt"),
    (0, "Hafen"),
    (1, "Schule"),
    (0, "Bahnhof"),
    (1, "Bibliothek"),
    (2, "Tal"),
    (2, "Museum"),
    (1, "Bäckerei"),
    (1, "Burg"),
];
const VERB: &[&str] = &[
    "wartete",
    "arbeitete",
    "lachte",
    "ruhte",
    "sprach",
    "sprang",
    "blieb",
    "wohnte",
    "spielte",
];
const VERB_T: &[&str] = &[
    "fand",
    "malte",
    "trug",
    "beobachtete",
    "öffnete",
    "putzte",
    "besuchte",
    "reparierte",
    "kaufte",
];
const PREP_DAT: &[&str] = &["neben", "hinter", "unter", "vor", "in", "mit", "bei"];
const TIME: &[&str] = &[
    "Am Morgen",
    "Später",
    "Nach dem Essen",
    "In der Nacht",
    "Am Montag",
    "Im Frühling",
    "Jeden Abend",
];
const THEMA: &[(u8, &str)] = &[
    (2, "Wetter"),
    (1, "Ernte"),
    (2, "Fest"),
    (1, "Reise"),
    (1, "Musik"),
    (1, "Karte"),
];

fn nom(g: u8, adj: &str, n: &str) -> String {
    format!("{} {adj}e {n}", ["der", "die", "das"][g as usize])
}
fn acc(g: u8, adj: &str, n: &str) -> String {
    let (art, end) = [("den", "en"), ("die", "e"), ("das", "e")][g as usize];
    format!("{art} {adj}{end} {n}")
}
fn dat(g: u8, adj: &str, n: &str) -> String {
    format!("{} {adj}en {n}", ["dem", "der", "dem"][g as usize])
}

fn sentence(r: &mut Rng, name: &str, place: (u8, &str), thema: (u8, &str)) -> String {
    let (g, n) = *r.pick(NOUN);
    let (g2, n2) = *r.pick(NOUN);
    let (a, a2) = (*r.pick(ADJ), *r.pick(ADJ));
    match r.range(0, 6) {
        0 => format!(
            "{} {} {} {}.",
            capitalize(&nom(g, a, n)),
            r.pick(VERB),
            r.pick(PREP_DAT),
            dat(g2, a2, n2)
        ),
        1 => format!(
            "{name} {} {} in {}.",
            r.pick(VERB_T),
            acc(g, a, n),
            dat(place.0, a2, place.1)
        ),
        2 => format!(
            "{} {} {name} {} {}.",
            r.pick(TIME),
            r.pick(VERB),
            r.pick(PREP_DAT),
            dat(place.0, a, place.1)
        ),
        3 => format!(
            "„{} ist dieses Jahr {a}“, sagte {name}.",
            capitalize(&nom(thema.0, a2, thema.1))
        ),
        4 => format!("Alle sprachen über {}.", acc(thema.0, a, thema.1)),
        5 => format!("{name} war {a}, weil {} {} war.", nom(g, a2, n), r.pick(ADJ)),
        _ => format!("Dann {} {name} {}.", r.pick(VERB_T), acc(g2, a, n2)),
    }
}

/// One document.
pub fn document(r: &mut Rng) -> String {
    let name = *r.pick(NAMES);
    let place = *r.pick(PLACE);
    let thema = *r.pick(THEMA);
    let mut out = String::new();
    let paragraphs = r.range(1, 3);
    for p in 0..paragraphs {
        if p > 0 {
            out.push_str("\n\n");
        }
        let n = r.range(2, 6);
        let s: Vec<String> = (0..n).map(|_| sentence(r, name, place, thema)).collect();
        out.push_str(&s.join(" "));
    }
    out
}
