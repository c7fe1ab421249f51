"""Use cases, one module per trigger: intake (blob), poll (timer), complete (queue), queries (HTTP).

Each loads the job, asks the pure core what comes next, writes it, and carries out the action the
core returned. They see the outside world only through the ports in shared/ports.py.
"""
