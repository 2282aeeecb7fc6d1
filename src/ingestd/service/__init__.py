"""The service layer: the operations an application performs (keys, documents, jobs, events).

The HTTP routes (``ingestd.api``), the Python API (``ingestd.Client``) and the CLI all call these
functions, so each operation has one implementation and its SQL lives in one named query.
"""
