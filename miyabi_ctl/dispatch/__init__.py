"""Dispatch: the backlog (``issue``, ``backlog`` file, ``github``) as a graph, ``placement`` of
ready issues on hosts with room, the ``store`` of assignments, ``launch`` of an agent in a
worktree, the running agent (``agent_run``: look, stop), ``worktree`` removal, the ``service``
that ties them, and ``render``."""
