"""HellaSwag's validation set in llm.c's evaluation layout (data/eval_format.py), for the trainer's
--hellaswag FILE. Needs internet (the rowanz/hellaswag jsonl on GitHub); the data build never calls it.
Each example: the context's tokens, and per ending the tokens of ' ' + ending (GPT-2 BPE, data/tokenizer.py),
the same rendering as llm.c's dev/data/hellaswag.py, so the files agree token for token.
  python3 data/hellaswag.py [--split val] [--out data/shards/hellaswag_val.bin] [--jsonl FILE]
"""
import argparse
import json
import os
import sys
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from eval_format import EvalFileError, write_evalfile  # noqa: E402
from tokenizer import Tokenizer  # noqa: E402

URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_{}.jsonl"


def download(split, path):
    url = URL.format(split)
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            data = r.read()
    except OSError as e:
        sys.exit(f"error: cannot download {url} ({e}); this needs internet: run it on a machine that has it "
                 f"and copy the .bin, or pass --jsonl with the file fetched elsewhere")
    with open(path + ".tmp", "wb") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def render(example, tok):
    """(label, context tokens, [ending tokens] x 4)."""
    ends = [tok.encode(" " + e) for e in example["endings"]]
    return int(example["label"]), tok.encode(example["ctx"]), ends


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="val", choices=["train", "val"])
    ap.add_argument("--jsonl", default="", help="an already downloaded hellaswag_<split>.jsonl")
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)
    out = a.out or os.path.join(HERE, "shards", f"hellaswag_{a.split}.bin")
    jsonl = a.jsonl or os.path.join(HERE, "cache", f"hellaswag_{a.split}.jsonl")
    if not os.path.exists(jsonl):
        os.makedirs(os.path.dirname(jsonl), exist_ok=True)
        download(a.split, jsonl)
    tok = Tokenizer()
    try:
        with open(jsonl, encoding="utf-8") as f:
            examples = [render(json.loads(line), tok) for line in f if line.strip()]
    except (OSError, ValueError, KeyError, TypeError) as e:   # unreadable, not JSON, not HellaSwag's fields
        sys.exit(f"error: --jsonl {jsonl}: {e}")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        write_evalfile(out, examples)
    except (OSError, EvalFileError) as e:
        sys.exit(f"error: --out {out}: {e}")
    print(f"{out}: {len(examples)} examples", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
