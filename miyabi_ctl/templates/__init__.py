"""Agent command templates: rendered to variable references, never values (``render``); refused
when a program they start would parse a value again as code (``reparse``)."""

from miyabi_ctl.templates.render import (
    OPTIONAL,
    PLACEHOLDERS,
    TemplateError,
    agent_command,
    render_template,
)
from miyabi_ctl.templates.reparse import reparsing_problem

__all__ = ["OPTIONAL", "PLACEHOLDERS", "TemplateError", "agent_command", "render_template",
           "reparsing_problem"]
