import pytest

try:
    from test_trainer_plans import tiny_env
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer_plans import tiny_env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A synthetic corpus per test module, with its own tokenizer/token cache (see tiny_env)."""
    with tiny_env(tmp_path_factory) as path:
        yield path


@pytest.fixture
def terminal_signals():
    """SIGINT, SIGTERM and SIGHUP as a terminal gives them to a foreground job, restored afterwards.
    A background job starts with SIGINT ignored and nohup ignores SIGHUP; runtime/signals.py
    rightly leaves an ignored signal alone, so a test that sends one sets them first."""
    import signal

    wanted = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL, signal.SIGHUP: signal.SIG_DFL}
    old = {s: signal.signal(s, handler) for s, handler in wanted.items()}
    yield
    for s, handler in old.items():
        signal.signal(s, handler)
