"""Mutated schedules never crash the front end: only exit 0/1, no traceback, spans inside the file.
Bytes that are not UTF-8 get exit 2 and a message naming the line; 1 MB files and thousands of
repeated blocks are diagnosed, not crashed on. (The long run is scripts/fuzz_frontend.py.)"""

import contextlib
import io
import random
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from growlang.cli import check_source, main
from growlang.compiler import compile_text
from growlang.diagnostics import render_text, source_lines

ROOT = Path(__file__).parents[2]
SEEDS = [p.read_text() for p in sorted((ROOT / "schedules").glob("*.grow"))]
PIECES = ["=", ";", ":", "{", "}", "(", ")", ",", "grow", "by", "from", "via", "stage", "1e999", "99999999999999999999B",
          "-0", "0x", "é", "\u202e", "\x00", "\n", '"', "#", "1m", "4x", "pool", "len", "depth", "k", "ffn=0.5x",
          "\u2028", "\x0c", "\r\n", "1e400", "1" * 500, "rewarm(" * 50]
# Encoded surrogates, lone continuation bytes, truncated and over-long sequences: never valid UTF-8.
NOT_UTF8 = [b"\xed\xa0\x80", b"\xff", b"\x80", b"\xc0\xaf", b"\xe2\x82", b"\xf4\x90\x80\x80"]


def assert_spans_inside(compiled, text: str) -> None:
    lines = source_lines(text)
    for d in compiled.diagnostics:
        s = d.span
        assert 1 <= s.line <= len(lines) and 1 <= s.col <= len(lines[s.line - 1]) + 1, d
        assert 1 <= s.end_line <= len(lines) and 1 <= s.end_col <= len(lines[s.end_line - 1]) + 1, d
        assert (s.end_line, s.end_col) >= (s.line, s.col), d
        assert "Token(" not in d.message and "$END" not in d.message and "EQUAL" not in d.message
        assert len(d.message) < 2000 and len(d.hint) < 2000


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            text = text[:pos] + text[pos + draw(st.integers(1, 8)):]
        elif kind == 1:
            text = text[:pos] + draw(st.sampled_from(PIECES)) + text[pos:]
        elif kind == 2:
            text = text[:pos] + draw(st.text(max_size=6)) + text[pos:]
        else:
            text = text[:pos] + draw(st.binary(max_size=6)).decode("latin-1") + text[pos:]
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_give_diagnostics_not_crashes(text: str) -> None:
    compiled = compile_text(text, ROOT / "schedules" / "fuzz.grow")
    assert_spans_inside(compiled, text)
    render_text(list(compiled.diagnostics), text, "fuzz.grow")
    assert compiled.ok == (compiled.plan is not None)


@st.composite
def not_utf8(draw):
    data = draw(st.sampled_from(SEEDS)).encode()
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.sampled_from(NOT_UTF8)) + data[pos:]
    return data


def _not_decodable(data: bytes) -> bool:
    # Two inserted fragments can meet and form a valid sequence (b"\xe2" + b"\x82\x80" is "₀").
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(not_utf8().filter(_not_decodable))
def test_non_utf8_bytes_name_the_line(data: bytes) -> None:
    try:
        data.decode("utf-8")
        raise AssertionError("the strategy must give bytes that are not UTF-8")
    except UnicodeDecodeError as exc:
        start = exc.start
    line = data.count(b"\n", 0, start) + 1
    code, compiled, text, message = check_source(data, "fuzz.grow")
    assert code == 2 and compiled is None and text is None
    assert f"byte 0x{data[start]:02x} at line {line}," in message and "not UTF-8" in message


def test_non_utf8_file_through_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "latin1.grow"
    path.write_bytes("# caf\u00e9\nstage 1: depth=2 width=128 len=64 steps=10 # na\u00efve\n".encode("latin-1"))
    r = subprocess.run([sys.executable, "-m", "growlang", "check", str(path)], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == ""
    assert "byte 0xe9 at line 1, column 6 is not UTF-8" in r.stderr


def test_one_megabyte_valid_file() -> None:
    body = SEEDS[0] + "\n"
    pad = "# " + "padding " * 12 + "\n"
    big = body + pad * ((2**20 - len(body)) // len(pad) + 1)
    assert len(big.encode()) >= 2**20
    code, compiled, text, _ = check_source(big.encode(), "big.grow")
    assert code == 0 and compiled.plan is not None


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_one_megabyte_file(text: str) -> None:
    big = (text + "\n") * (2**20 // (len(text) + 1) + 1)
    assert len(big) >= 2**20
    stderr = io.StringIO()
    compiled = compile_text(big)
    assert_spans_inside(compiled, big)
    with contextlib.redirect_stderr(stderr):
        rendered = render_text(list(compiled.diagnostics), big, "big.grow")
    assert len(rendered) < 400 * max(1, len(compiled.diagnostics)) + 1000  # long lines are windowed


@st.composite
def repeated(draw):
    unit = draw(st.sampled_from(["model bert { vocab=10 }\n", "data { mask=0.2 }\n", "train { batch=8 }\n",
                                 "stage 1: depth=1 width=64 len=8 steps=1\n", "stage s: steps=1 ; grow depth by stack\n",
                                 "train { lr_on_grow=rewarm(rewarm(1)) }\n", "model bert { vocab=10 } " * 5 + "\n"]))
    head = draw(st.sampled_from(["", "stage 0: depth=1 width=64 len=8 steps=1\n"]))
    return head + unit * draw(st.integers(2, 1500))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(repeated())
def test_deeply_repeated_blocks(text: str) -> None:
    compiled = compile_text(text)
    assert_spans_inside(compiled, text)
    assert not compiled.ok  # a repeated block, a stage defined twice, or a nested call
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(io.StringIO()):
        code, *_ = check_source(text.encode(), "repeated.grow")
    assert code == 1


def test_cli_main_never_raises_on_garbage(tmp_path: Path) -> None:
    rng = random.Random(0)
    for i in range(20):
        path = tmp_path / f"{i}.grow"
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200))))
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["check", str(path)])
        assert code in (1, 2) and "internal error" not in err.getvalue()
