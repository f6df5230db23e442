"""The fleet's state: probe every host (``collect``), judge it (``health``), show it (``render``)."""
