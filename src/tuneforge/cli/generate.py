"""``tuneforge generate``: continue a prompt, chat, or run a file of prompts with a causal-LM run or model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tuneforge.errors import TuneforgeError


def add_parser(subparsers) -> None:
    """``generate`` and its arguments."""
    p = subparsers.add_parser("generate", help="generate text with a causal-LM run or model (streamed)",
                              description="Continue a prompt, answer it as a chat (--chat), or run a file of "
                                          "prompts.")
    p.add_argument("model", help="causal_lm/sft run directory, registered model (smollm2-135m) or HF folder")
    p.add_argument("prompt", nargs="?", help="text to continue (with --chat: the user message)")
    p.add_argument("--chat", action="store_true",
                   help="format with the model's chat template; without a prompt, an interactive conversation")
    p.add_argument("--max-new-tokens", type=int, default=128, help="tokens to generate at most (default 128)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (with --temperature)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0 = all)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeats")
    p.add_argument("--stop", action="append", metavar="TEXT", help="stop before this text (repeatable)")
    p.add_argument("--seed", type=int, help="seed for sampling")
    p.add_argument("--file", help="prompts: a .txt file (one per line) or CSV/JSONL/Excel with a 'prompt' column")
    p.add_argument("--out", help="JSONL output for --file (default: next to it)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--encoding", help="text encoding of --file (utf-8, gb18030, big5, utf-16...); default: a "
                                      "byte-order mark, UTF-8, or detected (and named on the console)")
    p.add_argument("--sheet", help="Excel --file: the sheet to read, by name or number from 1 (default: the first)")
    p.set_defaults(handler=generate)

    p = subparsers.add_parser("paraphrase", help="paraphrases of a training file's texts with a local causal LM "
                                                 "(for data.paraphrase_column)",
                              description="Rewrite every text of a table with a chat-tuned causal LM (a run, "
                                          "smollm2-135m, or an HF folder); the output is the table plus a "
                                          "paraphrase column, empty where the paraphrase failed a quality filter.")
    p.add_argument("model", help="causal_lm/sft run directory, registered model (smollm2-135m) or HF folder")
    p.add_argument("--file", required=True, help="CSV/TSV/JSONL/Parquet/Excel table with the texts")
    p.add_argument("--out", required=True, help="output table: .csv (UTF-8 with BOM), .jsonl or .xlsx")
    p.add_argument("--text-column", default="text", help="column of the texts (default: text)")
    p.add_argument("--column", default="paraphrase", help="name of the new column (default: paraphrase)")
    p.add_argument("--prompt", help="instruction with {text}; default: an English or Chinese one, by the text")
    p.add_argument("--max-new-tokens", type=int, default=96, help="tokens per paraphrase at most (default 96)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7; 0 = greedy)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--encoding", help="text encoding of --file; default: a byte-order mark, UTF-8, or detected")
    p.add_argument("--sheet", help="Excel --file: the sheet to read, by name or number from 1 (default: the first)")
    p.set_defaults(handler=paraphrase)


def paraphrase(args: argparse.Namespace) -> int:
    """``tuneforge paraphrase MODEL --file TABLE --out TABLE``."""
    from tuneforge.tasks.classification import check_output
    from tuneforge.tasks.language_models.generator import GenerationSettings
    from tuneforge.tasks.language_models.paraphrase import paraphrase_file

    source, out = Path(args.file), Path(args.out)
    check_output(out, source, args.force, suffixes=(".csv", ".jsonl", ".xlsx"))
    if args.prompt is not None and "{text}" not in args.prompt:
        raise TuneforgeError("--prompt must contain {text}, where each text goes")
    settings = GenerationSettings(args.max_new_tokens, args.temperature, top_p=0.9, seed=args.seed)
    settings.check()
    result = paraphrase_file(_language_model(args.model), source, out, args.text_column, args.column, settings,
                             args.prompt, encoding=args.encoding, sheet=args.sheet)
    print(f"wrote {result.written:,} rows to {result.out}: {result.kept:,} with a paraphrase that passed the filter; "
          f"train with data.paraphrase_column={args.column}")
    return 0


def generate(args: argparse.Namespace) -> int:
    """``tuneforge generate MODEL [PROMPT]``: streamed to the terminal, or one JSONL line per prompt of --file."""
    from tuneforge.tasks.classification import check_output
    from tuneforge.tasks.language_models.generator import GenerationSettings

    model = _language_model(args.model)
    settings = GenerationSettings(args.max_new_tokens, args.temperature, args.top_p, args.top_k,
                                  args.repetition_penalty, args.stop or [], args.seed)
    settings.check()
    if args.file:
        source = Path(args.file)
        out = Path(args.out) if args.out else source.with_suffix(".generations.jsonl")
        check_output(out, source, args.force, suffixes=(".jsonl",))
        prompts = _read_prompts(source, args.encoding, args.sheet)  # before any generation: bad input stops here
        return _generate_file(model, settings, prompts, out, args.chat)
    if args.prompt is None and not args.chat:
        raise TuneforgeError("give a prompt, --file PROMPTS, or --chat for a conversation")
    if args.prompt is None:
        return _chat_loop(model, settings)
    prompt = [{"role": "user", "content": args.prompt}] if args.chat else args.prompt
    if not args.chat:
        print(args.prompt, end="", flush=True)
    result = model.generate(prompt, settings, on_text=_print_piece)
    print()
    print(f"[{result.new_tokens} tokens, finish: {result.finish_reason}]", file=sys.stderr)
    return 0


def _language_model(name: str):
    from tuneforge.errors import RunError
    from tuneforge.tasks.language_models.generator import LanguageModel

    try:
        return LanguageModel.from_run(name)
    except RunError:
        if Path(name, "model", "tuneforge.json").is_file() or Path(name, "tuneforge.json").is_file():
            raise  # a tuneforge run of another task: say so
        if not Path(name).exists() and Path(name).parent != Path(".") and Path(name).parent.is_dir():
            raise  # a mistyped run path (runs/typo), not a hub id to try online
        return LanguageModel.from_pretrained(name)


def _print_piece(text: str) -> None:
    print(text, end="", flush=True)


def _chat_loop(model, settings) -> int:
    print("chat with the model; an empty line or Ctrl-D ends it", file=sys.stderr)
    messages: list[dict[str, str]] = []
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        reply = model.generate(messages, settings, on_text=_print_piece)
        print()
        messages.append({"role": "assistant", "content": reply.text})
    return 0


def _generate_file(model, settings, prompts: list[str], out: Path, chat: bool) -> int:
    """One generation per prompt (lines of a .txt file, or the `prompt` field of table rows), as JSON Lines."""
    import json

    from tqdm.auto import tqdm

    partial = out.with_name(out.name + ".partial")  # an existing --out survives a crash part-way
    with partial.open("w", encoding="utf-8") as handle:
        for prompt in tqdm(prompts, desc="generating", unit="prompt"):
            result = model.generate([{"role": "user", "content": prompt}] if chat else prompt, settings)
            record = {"prompt": prompt, "completion": result.text, "finish_reason": result.finish_reason,
                      "prompt_tokens": result.prompt_tokens, "completion_tokens": result.new_tokens}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    partial.replace(out)
    print(f"wrote {len(prompts):,} generations to {out}")
    return 0


def _read_prompts(source: Path, encoding: str | None, sheet: str | None) -> list[str]:
    from tuneforge.data.formats import read_text_file
    from tuneforge.data.readers import read_examples

    if source.suffix.lower() == ".txt":
        if sheet is not None:
            raise TuneforgeError(f"--sheet picks a sheet of an Excel workbook; {source} is a text file")
        lines = read_text_file(source, encoding).text.splitlines()  # one clear error for bytes that do not decode
        prompts = [line for line in lines if line.strip()]
    else:
        result = read_examples(source, "prompt", None, encoding=encoding, sheet=sheet)
        if result.problems:
            raise TuneforgeError(f"{result.problems[0]} ({len(result.problems)} bad rows in all)")
        prompts = [example.text for example in result.examples]
    if not prompts:
        raise TuneforgeError(f"{source}: no prompts in the file")
    return prompts
