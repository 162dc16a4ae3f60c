"""Build bench/imdb_train_movies.tsv.gz: the IMDb movie of every IMDB training review.

The Large Movie Review Dataset (Maas et al. 2011) ships, beside each split's pos/ and neg/ review
files, `urls_pos.txt` and `urls_neg.txt`: line k is the IMDb page of the movie that review k
(file `k_RATING.txt`) was written about. Train and test hold disjoint movies, up to 30 reviews each,
so a validation split drawn at random from train shares its movies with the training part while
test never does; `data.val_groups = "movie"` keeps each movie's reviews on one side instead.

The file maps each review's text, by its SHA-256 (first 16 hex digits), to the movie's IMDb id, so
it matches the texts whatever order a copy of the dataset holds them in (the Hugging Face hub's or
a local parquet file's). Usage, with an extracted `aclImdb` folder:

    python scripts/imdb_movies.py path/to/aclImdb bench/imdb_train_movies.tsv.gz
"""
from __future__ import annotations

import gzip
import hashlib
import re
import sys
from pathlib import Path


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def main(acl: Path, out: Path) -> None:
    rows: dict[str, str] = {}
    for label in ("neg", "pos"):
        urls = (acl / "train" / f"urls_{label}.txt").read_text().split()
        for f in (acl / "train" / label).glob("*.txt"):
            review_id = int(f.name.split("_")[0])
            movie = re.search(r"/title/(tt\d+)/", urls[review_id]).group(1)
            rows.setdefault(text_key(f.read_text(encoding="utf-8")), movie)  # a duplicated text keeps one movie
    body = "".join(f"{k}\t{m}\n" for k, m in sorted(rows.items()))
    out.write_bytes(gzip.compress(("text_sha256_16\tmovie\n" + body).encode(), mtime=0))
    print(f"{len(rows)} texts, {len(set(rows.values()))} movies -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
