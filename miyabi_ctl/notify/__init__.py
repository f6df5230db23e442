"""Notifications: fleet.yaml's ``notify:`` targets (Apprise URLs) hear what changed.

Every command that looks at hosts or runs calls ``report_changes`` once with what it saw
(``look``): ``seen`` (what was looked at), ``diff`` (what changed since the ``record`` in the
state directory, what each target still has to hear), ``message`` (the words), ``send`` (Apprise,
imported only when there is something to send), ``service`` (the one call). docs/cron.md says
the rules.
"""

from miyabi_ctl.notify.service import look, report_changes, send_test, waiting_changes

__all__ = ["look", "report_changes", "send_test", "waiting_changes"]
