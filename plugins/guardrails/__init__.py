"""Built-in guardrails (``pii``, ``secrets``, ``deny``, ``limits``, ``json_schema``)
and the plugin that runs every route's guardrails, built-in or third-party."""
