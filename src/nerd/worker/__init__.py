"""The worker: receives a queue's tasks, runs them, and reports how they went.

``nerd.worker.loop.run_worker`` is the entry point (``nerd worker work`` and
``python -m nerd.worker`` call it); this package imports nothing so that the CLI stays
fast to start.
"""
