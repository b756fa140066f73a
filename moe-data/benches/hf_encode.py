"""The Python side of the `moe prepare` throughput comparison: reads the
same JSONL files, encodes the `text` field with the Hugging Face
`tokenizers` library (Rust core, its own thread pool) using the same
tokenizer.json, in batches, and prints MB/s and tokens/s.

usage: python hf_encode.py TOKENIZER.json FILE.jsonl...
"""
import json
import sys
import time

import tokenizers


def main():
    tok = tokenizers.Tokenizer.from_file(sys.argv[1])
    start = time.perf_counter()
    n_bytes = n_tokens = n_docs = 0
    batch = []

    def flush():
        nonlocal n_tokens
        for enc in tok.encode_batch_fast(batch, add_special_tokens=False):
            n_tokens += len(enc.ids)
        batch.clear()

    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as f:
            for line in f:
                text = json.loads(line)["text"]
                if not text.strip():
                    continue
                n_bytes += len(text.encode("utf-8"))
                n_docs += 1
                batch.append(text)
                if len(batch) == 4096:
                    flush()
    flush()
    secs = time.perf_counter() - start
    print(f"python tokenizers {tokenizers.__version__}: {n_docs} documents, {n_bytes / 1e6:.1f} MB, "
          f"{n_tokens} tokens in {secs:.2f}s: {n_bytes / 1e6 / secs:.2f} MB/s, {n_tokens / secs:.0f} tokens/s")


if __name__ == "__main__":
    main()
