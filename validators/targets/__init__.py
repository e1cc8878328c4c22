"""Targets: where a converted model runs (this machine, or linux/aarch64 under qemu user-mode emulation)."""

from parity.validators.targets.aarch64 import Aarch64Env, aarch64_status, setup_aarch64
from parity.validators.targets.local import run_onnx_in

__all__ = ["Aarch64Env", "aarch64_status", "run_onnx_in", "setup_aarch64"]
