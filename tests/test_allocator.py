"""pyarrow's allocator settings come with the package, so every install gets them."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.children import agent_env

PROBE = (
    "import json, os, edge_agent, pyarrow as pa\n"
    "print(json.dumps({k: os.environ.get(k) for k in edge_agent.MIMALLOC_DEFAULTS} | "
    "{'pool': pa.default_memory_pool().backend_name}))"
)


def _probe(**env: str) -> dict[str, str]:
    base = {k: v for k, v in agent_env(**env).items() if not k.startswith("MIMALLOC_")}
    base.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=base, capture_output=True,
                         text=True, check=True).stdout
    return dict(json.loads(out))


def test_mimalloc_commits_lazily_and_returns_freed_pages_at_once() -> None:
    assert _probe() == {"MIMALLOC_ARENA_EAGER_COMMIT": "0", "MIMALLOC_PURGE_DELAY": "0",
                        "pool": "mimalloc"}


def test_the_operators_environment_wins() -> None:
    got = _probe(MIMALLOC_PURGE_DELAY="10", ARROW_DEFAULT_MEMORY_POOL="system")
    assert got == {"MIMALLOC_ARENA_EAGER_COMMIT": "0", "MIMALLOC_PURGE_DELAY": "10",
                   "pool": "system"}
