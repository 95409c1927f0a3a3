"""The OpenAI-compatible transport: one client (``client.py``: ``EndpointConfig``, ``OpenAIChatClient``,
``PredictorClient``; retries, timeouts and errors in one place) used by the teacher, the judge and pricing, and a
loopback server (``local_endpoint.py``) that serves in-process backends for tests and demos. The KServe predictor
that serves a trained model is ``serving/predictor.py``.
"""
