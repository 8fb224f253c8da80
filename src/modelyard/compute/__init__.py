"""Compute: the machinery that runs job attempts and endpoint replicas.

The per-attempt supervisor (:mod:`~modelyard.compute.supervisor`), the source archive
(:mod:`~modelyard.compute.archive`), per-job Python environments
(:mod:`~modelyard.compute.environments`), the warm fork server
(:mod:`~modelyard.compute.warm`) and the backends chosen by URL scheme
(:mod:`~modelyard.compute.backends`: ``local``, ``ray``, with the Ray driver process and
its node-side workers). Domains (``jobs``, ``endpoints``) use it; it imports no domain
(checked by ``tests/architecture/test_import_direction.py``).
"""
