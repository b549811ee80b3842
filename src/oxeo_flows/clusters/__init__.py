"""Cluster factories for `oxeo_flows.runners`.

Factories live in importable modules (never in ``__main__``) so that Prefect, which pickles the
flow run context with every task submission, pickles them by reference.
"""
