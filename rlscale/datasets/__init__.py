"""Minari datasets: parallel collection, writing, listing, validation, Ray Data streaming.

Nothing here imports ``rlscale.platform``: what collection needs from the runtime (a Ray
connection, an environment maker, a policy) is handed to it as arguments.
"""
