"""Generates the README's configuration and metrics references from the code.

    python tools/gen_docs.py --write README.md   # regenerate in place (make docs)
    python tools/gen_docs.py --check README.md   # exit 1 when stale (a test runs this)
"""

from __future__ import annotations

import argparse
import re
import sys

from gpulse import catalog, config

MARKERS = {
    "config": ("<!-- BEGIN GENERATED CONFIG -->", "<!-- END GENERATED CONFIG -->"),
    "metrics": ("<!-- BEGIN GENERATED METRICS -->", "<!-- END GENERATED METRICS -->"),
}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def config_reference() -> str:
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for s in config.SETTINGS:
        flags = " or ".join(f"`--{f}`" for f in (s.flag, *s.aliases))
        env = " or ".join(f"`{e}`" for e in s.envs)
        rows.append(f"| {flags} | {env} | `{config.describe_default(s)}` | {_cell(s.help)} |")
    return "\n".join(rows)


def metrics_reference() -> str:
    rows = ["| metric | type | labels | meaning | source |", "|---|---|---|---|---|"]
    for m in catalog.CATALOG:
        stability = " (experimental)" if m.stability != "stable" else ""
        labels = ", ".join(f"`{label}`" for label in m.labels) or "—"
        rows.append(f"| `{m.name}` | {m.type} | {labels} | {_cell(m.help)}{stability} | {_cell(m.source)} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    for key, body in (("config", config_reference()), ("metrics", metrics_reference())):
        begin, end = MARKERS[key]
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
        if not pattern.search(readme):
            raise SystemExit(f"README is missing the markers {begin} ... {end}")
        replacement = f"{begin}\n{body}\n{end}"
        readme = pattern.sub(lambda _, text=replacement: text, readme)
    return readme


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tools/gen_docs.py")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="README")
    mode.add_argument("--check", metavar="README")
    args = p.parse_args(argv)
    path = args.write or args.check
    with open(path, encoding="utf-8") as fh:
        current = fh.read()
    wanted = render(current)
    if args.write:
        if wanted != current:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(wanted)
        return 0
    if wanted != current:
        print(f"{path}: generated sections are stale; run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
