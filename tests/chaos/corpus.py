"""The chaos corpus: distinct documents in mixed formats (text formats generated per index, plus
the committed binary samples: PDF, DOCX, PPTX, XLSX), and the poisonous documents with the
terminal state and error code each must end with."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.factories import TOPICS, WORDS, markdown_document

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# The OpenAI mock refuses any input containing this (a content-filter refusal of one input).
POISON_MARKER = "chaos-poison-7f3a"


@dataclass(frozen=True)
class Poison:
    filename: str
    content: bytes
    state: str
    code: str


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _text(index: int, rng: random.Random) -> tuple[str, str]:
    title, sentence = TOPICS[index % len(TOPICS)]
    body = "\n\n".join(f"{sentence} ({_words(rng, 50)})." for _ in range(3))
    return f"notes-{index:05d}.txt", f"{title} notes {index}\n\n{body}\n"


def _html(index: int, rng: random.Random) -> tuple[str, str]:
    title, sentence = TOPICS[index % len(TOPICS)]
    items = "".join(f"<li>{_words(rng, 6)}</li>" for _ in range(4))
    page = (
        f"<html><head><title>{title} page {index}</title></head><body><h1>{title} page {index}"
        f"</h1><p>{sentence}. {_words(rng, 60)}.</p><h2>Details</h2><ul>{items}</ul>"
        f"<p>{_words(rng, 40)}.</p></body></html>"
    )
    return f"page-{index:05d}.html", page


def _csv(index: int, rng: random.Random) -> tuple[str, str]:
    rows = ["id,name,quantity,comment"]
    rows += [
        f"{index}-{r},{rng.choice(WORDS)},{rng.randint(1, 999)},{_words(rng, 5)}" for r in range(12)
    ]
    return f"table-{index:05d}.csv", "\n".join(rows) + "\n"


def _json(index: int, rng: random.Random) -> tuple[str, str]:
    title, sentence = TOPICS[index % len(TOPICS)]
    record = {
        "title": f"{title} record {index}",
        "summary": f"{sentence}. {_words(rng, 30)}",
        "entries": [{"key": rng.choice(WORDS), "note": _words(rng, 8)} for _ in range(5)],
    }
    return f"record-{index:05d}.json", json.dumps(record, indent=2)


def _markdown(index: int, rng: random.Random) -> tuple[str, str]:
    return f"report-{index:05d}.md", markdown_document(index, paragraphs=2, seed=9)


GENERATORS = (_markdown, _text, _html, _csv, _json)


def poisons() -> list[Poison]:
    """Three documents that must fail, each in its own way, and nothing else with them."""
    rng = random.Random(5)
    corrupt_pdf = b"%PDF-1.7\n" + bytes(rng.randrange(256) for _ in range(3000)) + b"\n%%EOF\n"
    filtered = markdown_document(99_999, paragraphs=12, seed=9).replace(
        "## Section 2", f"## Section 2\n\nThis paragraph carries {POISON_MARKER}."
    )
    return [
        Poison("poison-corrupt.pdf", corrupt_pdf, "failed_parse", "parse.remote_failed"),
        Poison("poison-blank.txt", b" \n\n \t \n", "failed_parse", "parse.empty"),
        # Several chunks, one refused: the others are embedded (and paid for), the document fails.
        Poison(
            "poison-filtered.md", filtered.encode(), "failed_embedding", "embed.invalid_request"
        ),
    ]


def write_chaos_corpus(folder: Path, count: int) -> list[Path]:
    """``count`` good documents (binary samples first, then generated text formats) and the
    poisonous ones, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for sample in sorted(
        p for p in SAMPLES.iterdir() if p.is_file() and not p.name.startswith(".")
    )[: count // 10]:
        paths.append(Path(shutil.copy(sample, folder / sample.name)))
    index = 0
    while len(paths) < count:
        rng = random.Random(index)
        name, text = GENERATORS[index % len(GENERATORS)](index, rng)
        path = folder / name
        path.write_text(text)
        paths.append(path)
        index += 1
    for poison in poisons():
        path = folder / poison.filename
        path.write_bytes(poison.content)
        paths.append(path)
    return paths
