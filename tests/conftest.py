"""Hypothesis profiles: "ci" (default: fast, derandomized) and "thorough" (local fuzzing).

Select with ``python -m pytest --hypothesis-profile=thorough``.  Every failure
prints the falsifying example and a ``@reproduce_failure`` blob.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=20,
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci")
