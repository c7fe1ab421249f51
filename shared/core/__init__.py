"""The pure core: names and keys, and every transition a job can make, as functions of their arguments.

Nothing here performs I/O or imports an SDK, an adapter or a use case (enforced by `make lint`).
"""
