"""Writes the inputs of the tokenizer check: texts.jsonl (edge cases to
encode) and corpus.jsonl (what the tokenizer is trained on)."""
import json

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing spaces   ",
    "Line one\nLine two\r\nLine three\n\n\nafter blank lines",
    "Tabs\tand\tmixed \t whitespace",
    "Der Hund läuft über die Straße; Größe, Übermaß, Ärger, Öl, ß.",
    "Zürich café naïve résumé coöperate",
    "def compute_total(x, y):\n    \"\"\"Sum.\"\"\"\n    return x + y  # comment\n",
    "for i in range(10):\n\tif i % 2 == 0:\n\t\tprint(i)",
    "Numbers: 3.14159, 1,000,000, 2025-01-31, 0x1F, 1e-9",
    "Emoji 🦀🚀 and symbols ©®™ ∑∫√ ≤≥",
    "中文文本测试，日本語のテキスト、한국어 텍스트",
    "Русский текст и ελληνικά",
    "Special token inside text: <|endoftext|> stays one token",
    "<|endoftext|><|endoftext|>",
    "URLs: https://example.com/a/b?c=d&e=f#g and emails a.b@c.de",
    "Mixed CASE words: iPhone HTML5 camelCase snake_case kebab-case",
    "'quotes' \"double\" `backticks` «guillemets» „German“",
    "",
    " ",
    "a",
    "repeated repeated repeated repeated repeated",
    "x" * 300,
]


def corpus():
    for i in range(400):
        yield f"Document {i}: the quick brown fox number {i * 7 % 101} jumps over {i % 13} lazy dogs near the river."
        yield f"Der Hund Nummer {i} läuft über die Straße und trifft {i % 5} Katzen in Zürich."
        yield f"def f_{i}(x, y):\n    return x * {i} + y  # Größe\n"


def write(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write("texts.jsonl", TEXTS)
    write("corpus.jsonl", corpus())
