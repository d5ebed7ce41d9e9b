"""`--nproc N`: the parent compiles the schedule once and its ranks receive that Plan."""

from __future__ import annotations

import json

from growlang import cli
from growlang.plan import Plan
from growlang.runtime import distributed
from growlang.runtime.distributed import PLAN_ENV

try:
    from test_trainer_plans import grow_all_plan
except ImportError:  # run from the repository root as a package path
    from tests.runtime.test_trainer_plans import grow_all_plan


def test_launcher_hands_its_plan_to_every_rank(monkeypatch):
    plan, envs = grow_all_plan(), []

    class Done:
        returncode = 0

        def __init__(self, argv, env, **popen_options):
            envs.append(env)

        def poll(self):
            return 0

    monkeypatch.setattr(distributed.subprocess, "Popen", Done)
    assert distributed.launch(2, ["run", "x.grow"], plan=plan) == 0
    assert len(envs) == 2 and all(Plan.from_dict(json.loads(e[PLAN_ENV])) == plan for e in envs)


def test_a_rank_reads_the_plan_instead_of_compiling(monkeypatch, tmp_path):
    import growlang.runtime.run as run

    plan, seen = grow_all_plan(), []
    monkeypatch.setattr(run, "run_plan", lambda p, **kw: seen.append(p) or 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(PLAN_ENV, json.dumps(plan.to_dict()))
    # The schedule file does not exist: compiling it would fail with exit 2.
    assert cli.main(["run", str(tmp_path / "missing.grow"), "--out", str(tmp_path / "o"), "--nproc", "2"]) == 0
    assert seen == [plan]
