"""Phase 0 repairs, each planned read-only and applied on request: ``backup`` (and ``restore``),
``prune``, ``merge``, chained by ``run``; ``locks`` serialise applies per host; ``render`` shows
plans and outcomes. Each step's remote script (``*.sh``) sits beside the module that parses it."""
