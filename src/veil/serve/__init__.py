"""XNN-d's trusted recognition service: an HTTP server holding the distilled RecNet and a gallery, and its client.

The server sees noised features only. Nothing here imports the client's noise encoder
(``veil.xnnd``) or the owner's keys (``tests/test_trust_boundaries.py`` reads the imports).
"""
