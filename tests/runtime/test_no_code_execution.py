"""No code runs from a file we read: checkpoints are safetensors + JSON, and no source loads pickles."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "runtime").rglob("*.py")) + sorted((ROOT / "growlang").rglob("*.py"))
# path -> why a use is safe; nothing here may unpickle data that came from a file
ALLOWED = {
    "runtime/distributed.py": "pickle round-trips an in-memory exception to test it can reach the other ranks",
}
BANNED = {
    "imports pickle": re.compile(r"^\s*(import|from)\s+(c?pickle|dill|joblib|marshal|shelve)\b", re.M),
    "calls eval/exec": re.compile(r"(?<![\w.])(eval|exec)\s*\("),
    "numpy allow_pickle": re.compile(r"allow_pickle\s*=\s*True"),
    "trust_remote_code": re.compile(r"trust_remote_code\s*=\s*True"),
}


def torch_loads_without_weights_only(text: str) -> list[str]:
    bad = []
    for m in re.finditer(r"torch\.load\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):  # the call's arguments, up to the matching parenthesis
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        if not re.search(r"weights_only\s*=\s*True", text[m.end():i]):
            bad.append(text[m.start():i])
    return bad


def test_sources_do_not_execute_code_from_files():
    assert len(SOURCES) > 20
    problems = []
    for path in SOURCES:
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        for what, pattern in BANNED.items():
            if pattern.search(text) and rel not in ALLOWED:
                problems.append(f"{rel}: {what}")
        problems += [f"{rel}: {call} without weights_only=True" for call in torch_loads_without_weights_only(text)]
    assert problems == []


def test_the_scanner_catches_what_it_should():
    assert torch_loads_without_weights_only("x = torch.load(p, map_location=f(y))") != []
    assert torch_loads_without_weights_only("x = torch.load(p, map_location='cpu', weights_only=True)") == []
    assert BANNED["imports pickle"].search("import pickle\n") and BANNED["calls eval/exec"].search("eval(s)")
    assert not BANNED["calls eval/exec"].search("model.eval()")
