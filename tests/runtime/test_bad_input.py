"""Bad input to `growlang run`: exit 1, one `error:` line naming the file or field, no traceback,
nothing written to a fresh --out and nothing lost in an existing one.

Cases already covered elsewhere are not repeated: an --out that is a file, a missing corpus and a
tokenizer of the wrong size (test_run_e2e.py); a resume after a finished stage changed
(test_trainer.py); corpus/tokenizer parsing details (test_corpus.py, test_tokenizer.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest

from growlang.runtime.run import run_plan

try:
    from test_trainer_plans import grow_all_plan, on_corpus
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer_plans import grow_all_plan, on_corpus


@pytest.fixture(scope="module")
def stopped(corpus, tmp_path_factory):
    """A run of the grow-all plan stopped one step into `big`: plan.json, metrics, small-4."""
    out = tmp_path_factory.mktemp("stopped") / "out"
    plan = on_corpus(grow_all_plan(), corpus)
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=5) == 130
    return plan, out


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(capsys, *names: str) -> str:
    err = capsys.readouterr().err
    # the corpus' tokenizing progress may come first (a count only the tokens show is checked after it)
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("preparing "))
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in err, (name, err)
    return err


def fresh_run_refused(plan, tmp_path, capsys, *names: str) -> str:
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu") == 1
    assert not out.exists(), "a refused run must not leave an --out folder behind"
    return refused(capsys, *names)


def test_resume_into_another_schedules_out(stopped, tmp_path, capsys):
    plan, src = stopped
    out = tmp_path / "out"
    shutil.copytree(src, out)
    before = snapshot(out)
    other = dataclasses.replace(plan, name="other", source="/tmp/other.grow",
                                stages=(dataclasses.replace(plan.stages[0], name="tiny"),
                                        dataclasses.replace(plan.stages[1], parent="tiny")),
                                transitions=(dataclasses.replace(plan.transitions[0], src="tiny"),))
    assert run_plan(other, out, resume=True, device="cpu") == 1
    err = refused(capsys, "cannot resume", "/tmp/tiny.grow", "/tmp/other.grow", "stages small, big",
                  "stage small, which this schedule does not have")
    assert snapshot(out) == before


def test_resume_into_another_schedule_with_other_shapes(stopped, tmp_path, capsys):
    plan, src = stopped
    out = tmp_path / "out"
    shutil.copytree(src, out)
    before = snapshot(out)
    shape = dataclasses.replace(plan.stages[0].shape, ffn=128)
    other = dataclasses.replace(plan, name="other", source="/tmp/other.grow",
                                stages=(dataclasses.replace(plan.stages[0], shape=shape), plan.stages[1]))
    assert run_plan(other, out, resume=True, device="cpu") == 1
    refused(capsys, "started by schedule /tmp/tiny.grow", "not /tmp/other.grow", "stage small changed", "ffn")
    assert snapshot(out) == before


def test_resume_after_a_harmless_change_says_what_changed_and_continues(stopped, tmp_path, capsys):
    plan, src = stopped
    out = tmp_path / "out"
    shutil.copytree(src, out)
    big = dataclasses.replace(plan.stages[1], steps=6)
    changed = dataclasses.replace(plan, stages=(plan.stages[0], big))
    assert run_plan(changed, out, resume=True, device="cpu", stop_after_steps=1) == 130
    err = capsys.readouterr().err
    assert "note: the schedule changed since the run started (stage big: steps 4 -> 6)" in err
    assert "finished stages (small)" in err and "continues" in err and "resuming from small-4" in err


def test_tokenizer_folder_that_is_not_a_tokenizer(corpus, tmp_path, capsys):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_text("this is not json")
    plan = on_corpus(grow_all_plan(), corpus)
    plan = dataclasses.replace(plan, data=dataclasses.replace(plan.data, tokenizer=str(folder)))
    fresh_run_refused(plan, tmp_path, capsys, f"tokenizer folder {folder}", "readable tokenizer")


def test_corpus_with_invalid_utf8_names_file_and_offset(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\u00e9 au lait\n\nsecond paragraph".encode("latin-1"))
    fresh_run_refused(on_corpus(grow_all_plan(), bad), tmp_path, capsys, str(bad), "not valid UTF-8",
                      "byte offset 3")


def test_empty_corpus(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n")
    fresh_run_refused(on_corpus(grow_all_plan(), empty), tmp_path, capsys, str(empty), "is empty")


def test_corpus_too_small_for_one_batch(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("\n\n".join(f"the cat sat on mat number {i}." for i in range(12)))
    fresh_run_refused(on_corpus(grow_all_plan(), small), tmp_path, capsys, str(small),
                      "fewer than one batch needs", "batch")
