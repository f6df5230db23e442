"""Remote programs: the shell library every script starts with, and the one way to run them."""

from miyabi_ctl.remote.runner import COMMAND, Script, key_values, records, run_script

__all__ = ["COMMAND", "Script", "key_values", "records", "run_script"]
