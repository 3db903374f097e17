"""ebmguide sets OpenMP's waiting policy to PASSIVE on import, unless the user chose one.

A user's ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` (libgomp's spin count, which `make demo` sets)
counts as a choice.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SHOW = "import os; {pre}import ebmguide; print(os.environ.get('OMP_WAIT_POLICY', '<unset>'))"


def _policy_after_import(pre: str, env_value: str | None, spin_count: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    if spin_count is not None:
        env["GOMP_SPINCOUNT"] = spin_count
    out = subprocess.run([sys.executable, "-c", SHOW.format(pre=pre)], env=env,
                         capture_output=True, text=True, check=True, timeout=300)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("pre", "env_value", "expected"),
    [
        ("", None, "PASSIVE"),              # the default for ebmguide's own processes
        ("", "ACTIVE", "ACTIVE"),           # a user's choice is kept
        ("import torch; ", None, "<unset>"),  # too late to matter: left alone
    ],
)
def test_wait_policy(pre: str, env_value: str | None, expected: str) -> None:
    assert _policy_after_import(pre, env_value) == expected


def test_a_spin_count_the_user_set_is_kept_without_a_policy() -> None:
    assert _policy_after_import("", None, spin_count="10000") == "<unset>"
