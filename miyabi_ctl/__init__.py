"""miyabi-ctl: see, check, repair and dispatch work across a fleet of agent machines."""

__version__ = "0.1.0"
