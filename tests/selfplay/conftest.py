"""Self-play tests run tiny networks: one torch thread, as for the agent tests."""

from tests.agents.conftest import one_torch_thread  # noqa: F401  (autouse fixture, shared)
