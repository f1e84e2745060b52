"""Every test in tests/learning trains an agent to a goal and takes from seconds to minutes on a
loaded machine: all of them are marked slow (`make test-fast` runs `pytest -m "not slow"`)."""

from pathlib import Path

import pytest

_LEARNING = Path(__file__).parent


def pytest_collection_modifyitems(items):
    # a hook in this conftest sees the whole session's items, hence the folder test
    for item in items:
        if _LEARNING in item.path.parents:
            item.add_marker(pytest.mark.slow)
