"""Observability: Prometheus metrics, database-derived gauges, alerts and the dashboard's reads.

``metrics`` holds what a process records about its own work (each worker exposes it on its
``--metrics-port``); ``fleet`` computes, at scrape time, the figures only the database knows
(queue depth, oldest runnable job, live workers), which ``ingestd serve`` exposes on ``/metrics``.
"""
