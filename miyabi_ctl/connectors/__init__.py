"""How to reach one host: ``base`` (Host, RunResult), ``local``, ``ssh`` with ``ssh_config``,
``target`` (the ``ssh:`` value) and ``hostkeys`` (known_hosts as OpenSSH reads it)."""
