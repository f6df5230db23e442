"""The read-only look at one host: one script per look (``probe.sh``), its parser, and the rules
that tell an agent session from a process that only mentions one (``agents``)."""
