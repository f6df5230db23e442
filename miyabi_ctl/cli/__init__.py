"""The command line: ``app`` and one module per command group. Thin: parse, call, render."""
