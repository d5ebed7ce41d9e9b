"""The real command: stdout, stderr, exit codes; check stays torch-free; shipped schedules pass."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOLDEN, ROOT, run_cli

SCHEDULES = sorted((ROOT / "schedules").glob("*.grow"))


@pytest.mark.parametrize("path", SCHEDULES, ids=[p.stem for p in SCHEDULES])
def test_every_shipped_schedule_passes_check(path: Path) -> None:
    from growlang.compiler import compile_file

    compiled = compile_file(path)
    assert compiled.ok and not compiled.diagnostics, [d.message for d in compiled.diagnostics]
    assert path.read_text().startswith("#") and "growlang run schedules/" in path.read_text()


def test_check_all_schedules_exit_0() -> None:
    r = run_cli("check", *[str(p.relative_to(ROOT)) for p in SCHEDULES])
    assert r.returncode == 0, r.stderr
    assert "saving" in r.stdout and r.stderr == ""


def test_check_error_goes_to_stderr_exit_1() -> None:
    r = run_cli("check", "tests/frontend/golden/invalid/unknown_stage_key.grow")
    assert r.returncode == 1
    assert r.stdout == ""
    assert "error[E101]: unknown key `lenght` in stage `1`" in r.stderr
    assert " --> tests/frontend/golden/invalid/unknown_stage_key.grow:1:18" in r.stderr
    assert "did you mean `len`?" in r.stderr and "Found 1 error (0 warnings)." in r.stderr
    assert "Traceback" not in r.stderr


def test_warning_exits_0() -> None:
    r = run_cli("check", "tests/frontend/golden/valid/spec-example.grow")
    assert r.returncode == 0
    assert "warning[W404]" in r.stderr and "Found 0 errors (1 warning)." in r.stderr


def test_json_format() -> None:
    r = run_cli("check", "--format", "json", "tests/frontend/golden/invalid/many_errors_together.grow",
                "schedules/base.grow")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert out["errors"] == 5 and out["warnings"] == 0
    bad, good = out["files"]
    assert bad["plan"] is None and good["plan"]["name"] == "base"
    assert bad["diagnostics"][0]["range"] == {"line": 1, "col": 20, "end_line": 1, "end_col": 21}


def test_unreadable_file_and_usage_exit_2() -> None:
    r = run_cli("check", "no/such/file.grow")
    assert r.returncode == 2 and "cannot read no/such/file.grow" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("check")
    assert r.returncode == 2
    r = run_cli("frobnicate")
    assert r.returncode == 2


def test_help_documents_exit_codes() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    assert "exit codes" in r.stdout and "usage error, unreadable file, or internal error" in r.stdout
    for command in ("check", "graph", "run", "grow", "plot"):
        assert command in r.stdout


def test_json_names_why_a_file_is_unreadable(tmp_path) -> None:
    bad = tmp_path / "bad.grow"
    bad.write_bytes(b"\xff\xfe")
    r = run_cli("check", "--format", "json", str(bad), str(tmp_path / "missing.grow"))
    out = json.loads(r.stdout)
    assert r.returncode == 2 and out["errors"] == 2
    assert "not UTF-8" in out["files"][0]["error"] and "No such file" in out["files"][1]["error"]


def test_version_and_run_help_exit_130() -> None:
    from importlib.metadata import version

    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"growlang {version('growlang')}"
    r = run_cli("run", "--help")
    assert r.returncode == 0 and "130  interrupted" in r.stdout


def test_bom_schedule_checks_like_the_same_text(tmp_path) -> None:
    text = "model bert { vocab=100 head_dim=16 }\nstage 1: depth=1 width=32 len=32 steps=10\n"
    (tmp_path / "plain.grow").write_text(text)
    (tmp_path / "bom.grow").write_bytes(b"\xef\xbb\xbf" + text.encode())
    plain, bom = run_cli("check", str(tmp_path / "plain.grow")), run_cli("check", str(tmp_path / "bom.grow"))
    assert bom.returncode == plain.returncode == 0
    assert bom.stdout.replace("bom.grow", "plain.grow") == plain.stdout


@pytest.mark.parametrize("fmt,marker", [("mermaid", "graph LR"), ("dot", "digraph")])
def test_graph(fmt: str, marker: str) -> None:
    r = run_cli("graph", "schedules/ablation.grow", "--format", fmt)
    assert r.returncode == 0 and marker in r.stdout and "depth by zero" in r.stdout


def test_run_rejects_an_invalid_schedule_without_importing_the_runtime() -> None:
    r = run_cli("run", "tests/frontend/golden/invalid/cycle.grow")
    assert r.returncode == 1 and "E303" in r.stderr


def test_check_does_not_import_torch() -> None:
    code = ("import sys; from growlang.cli import main; rc = main(['check', 'schedules/bert-base.grow', "
            "'schedules/ablation.grow', 'schedules/llama-1b.grow']); assert rc == 0, rc; "
            "bad = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; "
            "assert not bad, bad; print('clean')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("clean")


def test_parse_growth_request() -> None:
    from growlang.growth_request import parse_growth_request
    from growlang.diagnostics import Problems
    from growlang.plan import ModelSpec, Shape

    shape, ops = parse_growth_request("depth=12 width=768 ffn=3072", "depth by stack, width by interpolate")
    assert shape == {"depth": 12, "width": 768, "ffn": 3072}
    assert [(o.dim, o.op) for o in ops] == [("depth", "stack"), ("width", "interpolate")]
    shape, ops = parse_growth_request("depth=12 width=768", "", Shape(6, 384, 6, 1536, 128), ModelSpec("bert", 100, 64, 512))
    assert shape["heads"] == 12 and all(o.defaulted for o in ops)
    with pytest.raises(Problems) as exc:
        parse_growth_request("depth=3", "depth by stak")
    assert exc.value.diagnostics[0].code == "E104"


def test_growth_request_for_decoders() -> None:
    """`grow --to` takes kv_heads (group fixed: E211 otherwise); `len by pool` on a decoder is E110
    even though `grow` never grows len."""
    from growlang.diagnostics import Problems
    from growlang.growth_request import parse_growth_request
    from growlang.plan import ModelSpec, Shape

    llama, old = ModelSpec("llama", 300, 16, 64, type_vocab=0, tie=False), Shape(2, 64, 4, 128, 64, kv_heads=2)
    shape, _ = parse_growth_request("width=128 kv_heads=4", "width by stack", old, llama)
    assert (shape["heads"], shape["kv_heads"]) == (8, 4)
    with pytest.raises(Problems) as exc:
        parse_growth_request("width=128 kv_heads=2", "", old, llama)
    assert exc.value.diagnostics[0].code == "E211"
    with pytest.raises(Problems) as exc:
        parse_growth_request("depth=4", "len by pool", old, llama)
    assert [d.code for d in exc.value.diagnostics] == ["E110"]
