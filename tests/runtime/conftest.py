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
