"""Loads a tokenizer.json trained by `moe tokenizer train` with transformers'
PreTrainedTokenizerFast (and the `tokenizers` library), encodes texts.jsonl,
and compares ids and decoded text with what moe-data's Rust encoder wrote
to rust_ids.jsonl. Writes result.json and prints OK / NOT OK."""
import json
import sys

import tokenizers
import transformers
from transformers import PreTrainedTokenizerFast


def main():
    texts = [json.loads(line)["text"] for line in open("texts.jsonl", encoding="utf-8")]
    rust = [json.loads(line) for line in open("rust_ids.jsonl", encoding="utf-8")]
    assert len(texts) == len(rust), "texts.jsonl and rust_ids.jsonl differ in length"
    hf = PreTrainedTokenizerFast(tokenizer_file="tokenizer.json", eos_token="<|endoftext|>")
    raw = tokenizers.Tokenizer.from_file("tokenizer.json")
    mismatches = []
    for i, (text, r) in enumerate(zip(texts, rust)):
        ids = hf.encode(text, add_special_tokens=False)
        raw_ids = raw.encode(text, add_special_tokens=False).ids
        decoded = hf.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if ids != r["ids"] or raw_ids != r["ids"] or decoded != r["decoded"] or decoded != text:
            mismatches.append({"index": i, "text": text, "rust": r["ids"], "transformers": ids})
    result = {
        "ok": not mismatches,
        "texts": len(texts),
        "tokens": sum(len(r["ids"]) for r in rust),
        "vocab_size": len(hf),
        "eos_token_id": hf.eos_token_id,
        "mismatches": mismatches,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": sys.version.split()[0],
    }
    with open("result.json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, ensure_ascii=False)
        f.write("\n")
    status = "OK" if result["ok"] else "NOT OK"
    print(f"{status}: {len(texts)} texts, {result['tokens']} tokens, {len(mismatches)} mismatches "
          f"(transformers {transformers.__version__}, tokenizers {tokenizers.__version__})")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
