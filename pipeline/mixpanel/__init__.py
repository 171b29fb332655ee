"""The Mixpanel source: the raw event export, day by day, stored in UTC (docs/mixpanel.md).

It shares the generic layers with the Amplitude source (``pipeline.http``, ``pipeline.limits``,
``pipeline.lake``, ``pipeline.warehouse``) and adds only what is Mixpanel's own: its settings,
its days and time-zone rules (``days``), the export's checks (``export``), the normalization of
its JSONL (``normalize``) and its tables (``warehouse``, ``checks``).
"""
