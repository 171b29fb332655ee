"""The Mixpanel source: the raw event export, day by day, stored in UTC (docs/mixpanel.md).

It shares the generic layers with the Amplitude source (``pipeline.http``, ``pipeline.limits``,
``pipeline.lake``, ``pipeline.warehouse``, ``pipeline.partition_swap``) and adds only what is
Mixpanel's own: its settings, its days and time-zone rules (``days``), the export's checks
(``export``), the normalization of its JSONL (``normalize``), its tables (``migrations``,
``load``, ``checks``) and its place in the shared machinery (``source``).
"""
