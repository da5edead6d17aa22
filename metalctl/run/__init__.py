"""The pipeline: drive every node through the stages, per node, resumably (not built yet).

What will live here (issue "metalctl run"): a rack file (BMC ranges, credential set
names, Ironic and site references, profile selection rules, kickstart template, audit
gate, failure budget) and a scheduler that advances each node as soon as its own
previous stage is done, with per-stage concurrency limits, a failure budget, and resume
from the store's lifecycle. This is the only package that imports stage packages, and
only through their public API.
"""
